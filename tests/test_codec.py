"""The codec interface: the spectral codec's round trip, and a spectral model folder through the strict loader."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from audiostory_cli.config import ModelDims, SpectralCodecDims, tiny_dims
from audiostory_cli.errors import AudioInputError, WeightsError
from audiostory_cli.generator.codec import OobleckCodec, SpectralCodec, model_codec

SR = 16_000


def tiny_spectral_dims(n_mels: int = 8, frames_per_latent: int = 2) -> ModelDims:
    """The demo's layout at test size: two mel frames per latent frame, as the demo stacks them."""
    dims = tiny_dims()
    codec = SpectralCodecDims(
        sampling_rate=SR,
        n_mels=n_mels,
        griffin_lim_iters=8,
        mean=-2.6,
        scale=4.6,
        frames_per_latent=frames_per_latent,
    )
    dit = replace(dims.dit, in_channels=codec.latent_channels, audio_seq_len=64)
    return replace(dims, vae=None, codec=codec, dit=dit)


def _test_signal(seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    tone = 0.3 * torch.sin(2 * torch.pi * 1000.0 * t) * (t < seconds / 2)
    noise = 0.05 * torch.randn(len(t), generator=torch.Generator().manual_seed(0)) * (t >= seconds / 2)
    return torch.stack([tone + noise, tone + noise])


def test_spectral_round_trip_keeps_length_spectrum_and_is_deterministic():
    codec = SpectralCodec(SpectralCodecDims(sampling_rate=SR, n_mels=64, griffin_lim_iters=16, mean=-2.6, scale=4.6))
    audio = _test_signal(1.0)[:, :15_900]  # not a whole number of hops
    latents = codec.encode(audio)
    assert latents.shape == (-(-15_900 // 256), 64) and latents.dtype == torch.float32
    back = codec.decode(latents, num_samples=15_900)
    assert back.shape == (2, 15_900) and torch.isfinite(back).all()
    assert torch.equal(back, codec.decode(latents, num_samples=15_900))  # fixed Griffin-Lim seed
    # what comes back has about the same mel spectrogram (spectral convergence; the mel-to-linear inverse and
    # Griffin-Lim's phase error cost ~0.2)
    mel, mel_again = ((z * 4.6 - 2.6).exp() for z in (latents, codec.encode(back)))
    assert float((mel_again - mel).norm() / mel.norm()) < 0.3
    # the tone stays a 1 kHz tone in the first half, the noise stays broadband in the second
    spectrum = np.abs(np.fft.rfft(back[0, 2000:6000].numpy()))
    assert abs(float(np.argmax(spectrum)) * SR / 4000 - 1000.0) < 10.0
    assert float(back[0, 9000:15000].std()) > 0.02


def test_spectral_batch_tail_and_prefix_skip():
    codec = SpectralCodec(SpectralCodecDims(sampling_rate=SR, n_mels=16, griffin_lim_iters=4))
    audio = _test_signal(1.0)[:, : 62 * 256]
    latents = codec.encode(audio)
    tail = codec.encode_tail(audio, 10)
    assert torch.allclose(tail, latents[-10:], atol=1e-4)  # aligned to the END, with enough left context
    assert not torch.allclose(codec.encode_tail(audio[:, :-100], 10), latents[-10:], atol=1e-2)
    batch = codec.decode(torch.stack([latents, latents]), num_samples=1000)
    assert batch.shape == (2, 2, 1000)
    skipped = codec.decode(latents, skip_frames=20, num_samples=5 * 256)
    assert skipped.shape == (2, 5 * 256)
    with pytest.raises(ValueError, match="num_samples"):
        codec.decode(latents, num_samples=len(latents) * 256 + 1)
    with pytest.raises(AudioInputError, match="does not fit"):
        codec.encode_tail(audio, 10_000)
    with pytest.raises(AudioInputError, match="NaN"):
        codec.encode(torch.full((1, 512), float("nan")))


def test_stacked_mel_frames_are_the_same_codec_on_a_shorter_sequence():
    flat = SpectralCodec(SpectralCodecDims(sampling_rate=SR, n_mels=16, griffin_lim_iters=4))
    stacked = SpectralCodec(SpectralCodecDims(sampling_rate=SR, n_mels=16, griffin_lim_iters=4, frames_per_latent=2))
    assert (stacked.latent_channels, stacked.geometry.hop_length) == (32, 512)
    audio = _test_signal(1.0)[:, :15_900]  # 62.1 mel frames: padded to 32 latent frames of two
    flat_latents, stacked_latents = flat.encode(audio), stacked.encode(audio)
    assert stacked_latents.shape == (32, 32)
    assert torch.equal(stacked_latents.reshape(-1, 16)[:63], flat_latents)  # row-major: frame-major channels
    assert torch.equal(stacked.decode(stacked_latents), flat.decode(stacked_latents.reshape(-1, 16)))
    cut = audio[:, : 30 * 512]
    assert torch.allclose(stacked.encode_tail(cut, 5), stacked.encode(cut)[-5:], atol=1e-4)
    with pytest.raises(ValueError, match="frames_per_latent"):
        SpectralCodecDims(frames_per_latent=0).check()


def test_silence_decodes_to_silence():
    codec = SpectralCodec(SpectralCodecDims(sampling_rate=SR, n_mels=16, griffin_lim_iters=4))
    latents = codec.encode(torch.zeros(1, 4096))
    assert float(codec.decode(latents).abs().max()) == 0.0


def test_spectral_dims_are_checked():
    with pytest.raises(ValueError, match="n_mels"):
        SpectralCodecDims(n_mels=0).check()
    with pytest.raises(ValueError, match="f_max"):
        SpectralCodecDims(f_max=9_000.0).check()
    with pytest.raises(ValueError, match="exactly one latent space"):
        replace(tiny_dims(), codec=SpectralCodecDims(n_mels=8))
    with pytest.raises(ValueError, match="in_channels"):
        replace(tiny_spectral_dims(), codec=SpectralCodecDims(n_mels=12))


def test_the_model_declares_its_codec():
    from audiostory_cli.model import build_model, tiny_random_model

    assert isinstance(tiny_random_model().codec, OobleckCodec)  # the official layout keeps Oobleck
    model = build_model(tiny_spectral_dims(), 300, device="cpu")
    assert model.vae is None and "vae" not in model.parts()
    assert isinstance(model.codec, SpectralCodec) and model.sample_rate == SR
    assert model.dims.window_seconds == pytest.approx(64 * 512 / SR)
    with pytest.raises(Exception, match="holds none"):
        model_codec(tiny_dims(), None)


@pytest.fixture()
def spectral_folder(tmp_path):
    from audiostory_cli.demo.recipe import init_model_folder
    from audiostory_cli.planner.tokens import build_tiny_tokenizer

    return init_model_folder(tmp_path / "spectral", build_tiny_tokenizer(), dims=tiny_spectral_dims(), seed=3)


def test_spectral_model_folder_round_trips_through_the_strict_loader(spectral_folder):
    from audiostory_cli.model import load_model_folder
    from audiostory_cli.runtime import make_runtime
    from audiostory_cli.weights.checkpoint import read_sidecar

    sidecar = json.loads((spectral_folder / "audiostory.json").read_text())
    assert sidecar["dims"]["vae"] is None and sidecar["dims"]["codec"]["n_mels"] == 8
    assert sidecar["dims"]["codec"]["frames_per_latent"] == 2
    assert "vae" not in sidecar["parts"] and not (spectral_folder / "vae.safetensors").exists()
    meta = read_sidecar(spectral_folder)
    want = tiny_spectral_dims()
    assert (meta.dims.codec, meta.dims.vae, meta.dims.dit) == (want.codec, None, want.dit)
    model = load_model_folder(spectral_folder, make_runtime("cpu"))
    assert model.dims.codec == tiny_spectral_dims().codec and model.vae is None
    audio = model.codec.decode(model.codec.encode(_test_signal(0.5)), num_samples=8000)
    assert audio.shape == (2, 8000)


def _edit_sidecar(folder, change):
    path = folder / "audiostory.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_the_strict_loader_refuses_inconsistent_codecs(spectral_folder, tmp_path):
    import shutil

    from audiostory_cli.model import load_model_folder
    from audiostory_cli.runtime import make_runtime

    runtime = make_runtime("cpu")
    unknown = shutil.copytree(spectral_folder, tmp_path / "unknown")
    _edit_sidecar(unknown, lambda d: d["dims"]["codec"].update(window="hann"))
    with pytest.raises(WeightsError, match="unknown SpectralCodecDims fields: window"):
        load_model_folder(unknown, runtime)
    both = shutil.copytree(spectral_folder, tmp_path / "both")
    _edit_sidecar(both, lambda d: d["dims"].update(vae=asdict(tiny_dims().vae)))
    with pytest.raises(WeightsError, match="exactly one latent space"):
        load_model_folder(both, runtime)
    stray = shutil.copytree(spectral_folder, tmp_path / "stray")
    _edit_sidecar(stray, lambda d: d["parts"].update(vae=d["parts"]["bridge"]))
    with pytest.raises(WeightsError, match="holds weights for vae"):
        load_model_folder(stray, runtime)


def test_a_spectral_model_plans_and_renders_exact_lengths(spectral_folder, tmp_path):
    from audiostory_cli.app.pipeline import PlanOptions, plan_story, render_story
    from audiostory_cli.audio.io import read_audio
    from audiostory_cli.model import load_model_folder
    from audiostory_cli.runtime import make_runtime
    from audiostory_cli.story.folder import StoryFolder

    runtime = make_runtime("cpu")
    model = load_model_folder(spectral_folder, runtime)
    model.extra["random_weights"] = True  # steer the random planner with the script, like tiny-random
    story = plan_story("rain, then a dog barks", PlanOptions(total_duration=3.0, seed=1, steps=1), model)
    assert story.sample_rate == SR
    target = StoryFolder(tmp_path / "story")
    target.save(story)
    render_story(target, model, runtime)
    for event in target.load().events:
        audio, rate = read_audio(target.resolve(event.file))
        assert rate == SR and audio.shape[1] >= round(event.duration * rate)


def test_a_spectral_model_continues_an_input_seamlessly(spectral_folder, tmp_path):
    import soundfile as sf

    from audiostory_cli.app.continuation import continue_story
    from audiostory_cli.app.export import ExportOptions, export_story
    from audiostory_cli.app.pipeline import render_story, source_conditioning
    from audiostory_cli.audio.input import read_input_audio
    from audiostory_cli.model import load_model_folder
    from audiostory_cli.runtime import make_runtime
    from audiostory_cli.story.folder import StoryFolder
    from tests.test_continue_api import fast, write_input

    runtime = make_runtime("cpu")
    model = load_model_folder(spectral_folder, runtime)
    model.extra["random_weights"] = True
    source = read_input_audio(write_input(tmp_path / "in.wav", SR, 3.0, 1))
    folder = StoryFolder(tmp_path / "story")
    folder.prepare_new(force=False)
    continue_story(source, "rain on the roof, then thunder", fast(2.0), model, folder, notify=lambda _m: None)
    prefix = source_conditioning(folder, folder.load(), model).prefix
    assert prefix is not None and prefix.shape[1] == 16  # the input tail: two stacked 8-band mel frames
    render_story(folder, model, runtime)
    export_story(folder, ExportOptions(loudness="none", sample_rate=SR, bit_depth=32, force=True))
    mix, rate = sf.read(str(folder.mix_path), always_2d=True, dtype="float32")
    assert rate == SR and mix.shape[0] == 5 * SR
    seam = 3 * SR - 2 * 256  # the input is delivered as it was up to the crossfade before the seam
    assert np.allclose(mix[:seam, 0], source.audio[0, :seam], atol=1e-5)


def test_long_latents_are_decoded_in_cross_faded_chunks(monkeypatch):
    import audiostory_cli.generator.codec as codec_module

    codec = SpectralCodec(SpectralCodecDims(sampling_rate=SR, n_mels=64, griffin_lim_iters=8, mean=-2.6, scale=4.6))
    t = torch.arange(3 * SR) / SR
    latents = codec.encode((0.3 * torch.sin(2 * torch.pi * 440.0 * t))[None])
    whole = codec.decode(latents)
    monkeypatch.setattr(codec_module, "DECODE_CHUNK_FRAMES", 40)  # 5 chunks instead of 1
    chunked = codec.decode(latents)
    assert chunked.shape == whole.shape and torch.isfinite(chunked).all()
    steps = chunked[0, 2000:-2000].diff().abs()
    assert float(steps.max()) < 1.5 * float(whole[0, 2000:-2000].diff().abs().max())  # no click at the joins
    skipped = codec.decode(latents, skip_frames=50, num_samples=4000)
    assert skipped.shape == (2, 4000)
    assert codec.decode(latents[:81]).shape == (2, 81 * 256)  # a last chunk of one frame, shorter than a fade
