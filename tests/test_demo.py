"""The demo recipe's pieces: dims within the package budget, corpus tokenizer, random init folder, VAE pretraining
(for Oobleck models), and the whole recipe at smoke-test size on the spectral codec."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.config import tiny_dims
from audiostory_cli.demo.recipe import (
    DEMO_CODEC,
    DEMO_SAMPLE_RATE,
    DemoRecipe,
    build_corpus_tokenizer,
    demo_dims,
    init_model_folder,
    manifest_texts,
    quick_recipe,
)
from audiostory_cli.errors import UsageError
from audiostory_cli.foley.corpus import write_manifests

runner = CliRunner()
PACKAGE_BUDGET_BYTES = 30_000_000


def test_demo_dims_fit_the_package_budget():
    from audiostory_cli.model import build_model

    dims = demo_dims(3000)
    model = build_model(dims, 3000)  # meta device: no memory
    sizes = {name: sum(p.numel() for p in part.parameters()) for name, part in model.parts().items()}
    fp32_parts = ("vae", "text_encoder", "audio_encoder")  # kept in fp32; the rest is stored in fp16
    total = sum(n * (4 if name in fp32_parts else 2) for name, n in sizes.items())
    assert total <= PACKAGE_BUDGET_BYTES, sizes
    assert dims.sample_rate == DEMO_SAMPLE_RATE and dims.window_seconds == pytest.approx(30.0, abs=0.1)
    assert dims.codec_kind == "spectral" and "vae" not in sizes  # the fixed codec: no VAE weights to ship


@pytest.fixture(scope="module")
def foley_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("foley")
    return write_manifests(root / "train", split="train", n_stories=2, n_clips=4, sr=44_100, clip_seconds=(0.5, 0.8))


def test_corpus_tokenizer_has_the_audiostory_layout(foley_data):
    from audiostory_cli.planner.tokens import resolve_special_token_ids

    texts = list(manifest_texts([foley_data.clips, foley_data.qa, foley_data.stories]))
    assert any("The total duration is" in t for t in texts)
    tokenizer = build_corpus_tokenizer(texts, bpe_vocab=400)
    ids = resolve_special_token_ids(tokenizer)
    assert ids is not None
    sample = texts[0]
    assert tokenizer.decode(tokenizer(sample)["input_ids"]) == sample
    again = build_corpus_tokenizer(texts, bpe_vocab=400)
    assert again(sample)["input_ids"] == tokenizer(sample)["input_ids"]  # deterministic


@pytest.mark.slow
def test_init_folder_then_vae_pretraining(foley_data, tmp_path):
    from audiostory_cli.model import load_model_folder
    from audiostory_cli.runtime import make_runtime
    from audiostory_cli.train.vae import VAETrainConfig, pretrain_vae

    tokenizer = build_corpus_tokenizer(list(manifest_texts([foley_data.clips])), bpe_vocab=300)
    init = init_model_folder(tmp_path / "init", tokenizer, dims=tiny_dims(), seed=1)
    assert (init / "t5_tokenizer" / "tokenizer.json").is_file()
    runtime = make_runtime("cpu")
    before = load_model_folder(init, runtime)
    assert before.dims.reasoner.vocab_size == len(tokenizer) == len(before.tokenizer)
    vae_biases = [p for n, p in before.vae.named_parameters() if n.endswith(".bias")]
    assert vae_biases and all(not p.any() for p in vae_biases)  # zero-initialised (see init_model_folder)
    with torch.no_grad():  # unit-variance init: audio keeps its size through the random VAE (not ~1000x smaller)
        noise = torch.randn(1, 2, 64 * before.dims.vae.hop_length, generator=torch.Generator().manual_seed(5)) * 0.05
        latent = before.vae.float().encode(noise).latent_dist.mean
        out = before.vae.decode(latent).sample
    assert 0.3 < float(latent.std()) < 3 and 0.01 < float(out.std()) < 0.25

    result = pretrain_vae(
        VAETrainConfig(
            model=init,
            clips=foley_data.clips,
            out=tmp_path / "vae",
            steps=2,
            batch_size=1,
            segment_seconds=0.1,
            check_clips=0,
            device="cpu",
        )
    )
    assert result.steps == 2 and result.first_loss > 0
    after = load_model_folder(result.out, runtime)
    vae_changed = any(
        not torch.equal(a, b)
        for a, b in zip(before.vae.state_dict().values(), after.vae.state_dict().values(), strict=True)
    )
    assert vae_changed
    for name in ("llm", "dit", "bridge"):
        for a, b in zip(
            getattr(before, name).state_dict().values(), getattr(after, name).state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), name
    sidecar = json.loads((result.out / "audiostory.json").read_text())
    assert "vae_pretraining" in json.dumps(sidecar)


def test_vae_config_is_validated(tmp_path):
    from audiostory_cli.train.vae import VAETrainConfig

    with pytest.raises(UsageError, match="--steps"):
        VAETrainConfig(model=tmp_path, clips=tmp_path / "c.jsonl", out=tmp_path / "o", steps=0).check()
    with pytest.raises(UsageError, match="--out"):
        VAETrainConfig(model=tmp_path, clips=tmp_path / "c.jsonl", out=tmp_path).check()
    with pytest.raises(UsageError, match="--log-floor"):
        VAETrainConfig(model=tmp_path, clips=tmp_path / "c.jsonl", out=tmp_path / "o", log_floor=0.0).check()


def test_vae_loss_options_are_validated(tmp_path):
    from audiostory_cli.train.vae import VAETrainConfig, parse_level_db

    def config(**kw):
        return VAETrainConfig(model=tmp_path, clips=tmp_path / "c.jsonl", out=tmp_path / "o", **kw)

    with pytest.raises(UsageError, match="nothing to reconstruct"):
        config(l1_weight=0.0, stft_weight=0.0, mel_weight=0.0).check()
    with pytest.raises(UsageError, match="must not be negative"):
        config(mel_weight=-1.0).check()
    with pytest.raises(UsageError, match="--level-db"):
        config(level_db=(-10.0, -20.0)).check()
    assert parse_level_db("-30,-12") == (-30.0, -12.0) and parse_level_db("off") is None
    with pytest.raises(UsageError, match="LOW,HIGH"):
        parse_level_db("loud")


def test_mel_loss_and_level_scaling():
    import numpy as np

    from audiostory_cli.train.vae import multi_resolution_mel_loss, set_levels

    torch.manual_seed(0)
    noise = 0.01 * torch.randn(3, 2, 8192)
    assert float(multi_resolution_mel_loss(noise, noise, 16_000)) == pytest.approx(0.0, abs=1e-6)
    # a quieter copy costs more than the same copy: the log-mel loss does not reward turning the level down
    assert float(multi_resolution_mel_loss(noise * 0.2, noise, 16_000)) > 0.3
    scaled = set_levels(5 * noise * torch.tensor([1.0, 0.2, 3.0])[:, None, None], np.random.default_rng(0), (-30, -12))
    levels = 20 * torch.log10(scaled.pow(2).mean(dim=(1, 2)).sqrt())
    assert bool(((levels > -30.01) & (levels < -11.99)).all())


@pytest.mark.slow
def test_vae_pretraining_reports_recognised_reconstructions(foley_data, tmp_path, monkeypatch):
    import audiostory_cli.foley.classifier as classifier
    from audiostory_cli.train.vae import VAETrainConfig, pretrain_vae

    small = classifier.train_classifier(n_per_class=2, seed=3)
    monkeypatch.setattr(classifier, "load_or_train", lambda **_: small)
    tokenizer = build_corpus_tokenizer(list(manifest_texts([foley_data.clips])), bpe_vocab=300)
    init = init_model_folder(tmp_path / "init", tokenizer, dims=tiny_dims(), seed=1)
    result = pretrain_vae(
        VAETrainConfig(
            model=init,
            clips=foley_data.clips,
            out=tmp_path / "vae",
            steps=1,
            batch_size=1,
            segment_seconds=0.1,
            mel_weight=1.0,
            level_db=(-30, -12),
            check_clips=5,
            device="cpu",
        )
    )
    recognised = result.summary["recognised"]
    assert recognised is not None and all(0.0 <= r <= 1.0 for r in recognised)
    sidecar = json.loads((result.out / "audiostory.json").read_text())
    recorded = sidecar["extra"]["vae_pretraining"]["recognised"]
    assert (recorded["originals"], recorded["reconstructions"]) == recognised

    base = [
        "train",
        "vae",
        "--model",
        str(init),
        "--clips",
        str(foley_data.clips),
        "--steps",
        "1",
        "--batch-size",
        "1",
        "--segment-seconds",
        "0.1",
        "--device",
        "cpu",
    ]
    cli = runner.invoke(
        app, [*base, "--out", str(tmp_path / "cli"), "--mel-weight", "1", "--level-db", "-30,-12", "--check-clips", "3"]
    )
    assert cli.exit_code == 0, cli.output
    assert "reconstructions recognised" in cli.output and cli.stdout.strip().endswith("cli")
    bad = runner.invoke(app, [*base, "--out", str(tmp_path / "bad"), "--level-db", "loud"])
    assert bad.exit_code != 0 and "LOW,HIGH" in bad.output and "Traceback" not in bad.output
    broken = foley_data.clips.parent / "broken.jsonl"
    broken.write_text(foley_data.clips.read_text().splitlines()[0] + "\n{oops\n")
    bad = runner.invoke(app, [*base[:4], "--clips", str(broken), *base[6:], "--out", str(tmp_path / "bad2")])
    assert bad.exit_code == 1 and "broken.jsonl:2: not valid JSON" in bad.output and "Traceback" not in bad.output


@pytest.mark.slow
def test_adversarial_vae_pretraining_changes_what_the_vae_learns(foley_data, tmp_path):
    from audiostory_cli.model import load_model_folder
    from audiostory_cli.runtime import make_runtime
    from audiostory_cli.train.vae import VAETrainConfig, pretrain_vae

    tokenizer = build_corpus_tokenizer(list(manifest_texts([foley_data.clips])), bpe_vocab=300)
    init = init_model_folder(tmp_path / "init", tokenizer, dims=tiny_dims(), seed=1)
    shared = dict(
        model=init,
        clips=foley_data.clips,
        steps=2,
        batch_size=1,
        segment_seconds=0.1,
        mel_weight=1.0,
        check_clips=0,
        device="cpu",
    )
    plain = pretrain_vae(VAETrainConfig(out=tmp_path / "plain", **shared))
    notes: list[str] = []
    adversarial = pretrain_vae(
        VAETrainConfig(out=tmp_path / "adv", adversarial_weight=1.0, adversarial_start=1, **shared), log=notes.append
    )
    assert plain.first_loss == adversarial.first_loss  # step 1 is reconstruction only (--adversarial-start 1)
    assert any("discriminator" in note and "feature matching" in note for note in notes)
    runtime = make_runtime("cpu")
    a, b = (load_model_folder(r.out, runtime).vae.state_dict() for r in (plain, adversarial))
    assert any(not torch.equal(a[k], b[k]) for k in a)  # step 2's adversarial terms reached the VAE
    assert not any("discriminator" in k for k in b)  # the discriminator is not part of the model folder
    recorded = json.loads((adversarial.out / "audiostory.json").read_text())["extra"]["vae_pretraining"]
    assert (recorded["adversarial_weight"], recorded["adversarial_start"]) == (1.0, 1)

    base = [
        "train",
        "vae",
        "--model",
        str(init),
        "--clips",
        str(foley_data.clips),
        "--steps",
        "2",
        "--out",
        str(tmp_path / "cli"),
        "--device",
        "cpu",
    ]
    bad = runner.invoke(app, [*base, "--adversarial-weight", "1", "--adversarial-start", "2"])
    assert bad.exit_code == 2 and "--adversarial-start 2 must be in 0..1" in bad.output
    assert "Traceback" not in bad.output and not (tmp_path / "cli").exists()


def test_stft_loss_is_zero_for_a_match_and_finite_against_silence():
    from audiostory_cli.train.vae import multi_resolution_stft_loss

    torch.manual_seed(0)
    quiet = 0.003 * torch.randn(2, 2, 4096)
    assert float(multi_resolution_stft_loss(quiet, quiet)) == pytest.approx(0.0, abs=1e-6)
    silent = torch.zeros_like(quiet, requires_grad=True)
    loss = multi_resolution_stft_loss(silent + 1e-8 * torch.randn_like(quiet), quiet)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(silent.grad).all()
    # the floor bounds what near-silent bins can contribute: a floor of 1e-2 weighs them far less than 1e-5
    low = multi_resolution_stft_loss(quiet * 0.5, quiet, log_floor=1e-5)
    high = multi_resolution_stft_loss(quiet * 0.5, quiet, log_floor=1e-2)
    assert float(high) < float(low)


def test_recipes_are_valid():
    DemoRecipe().check()
    quick_recipe().check()
    with pytest.raises(UsageError):
        DemoRecipe(stages=()).check()
    with pytest.raises(UsageError, match="caption_clauses"):
        DemoRecipe(caption_clauses=1.5).check()


def test_train_demo_and_vae_commands_have_help():
    for args in (["train", "demo", "--help"], ["train", "vae", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "--out" in result.output, result.output


def test_a_16khz_model_folder_plans_and_renders_exact_lengths(foley_data, tmp_path):
    """A model at the demo's rate and hop renders through the same pipeline (geometry from its own VAE)."""
    from dataclasses import replace

    from audiostory_cli.app.pipeline import PlanOptions, plan_story, render_story
    from audiostory_cli.audio.io import read_audio
    from audiostory_cli.model import load_model_folder
    from audiostory_cli.runtime import make_runtime
    from audiostory_cli.story.folder import StoryFolder

    dims = tiny_dims()
    dims = replace(
        dims,
        vae=replace(
            dims.vae, sampling_rate=DEMO_SAMPLE_RATE, downsampling_ratios=(2, 4, 8, 8), channel_multiples=(1, 2, 2, 2)
        ),
    )
    tokenizer = build_corpus_tokenizer(list(manifest_texts([foley_data.clips])), bpe_vocab=300)
    folder = init_model_folder(tmp_path / "m16k", tokenizer, dims=dims)
    runtime = make_runtime("cpu")
    model = load_model_folder(folder, runtime)
    model.extra["random_weights"] = True  # steer the random planner with the script, like tiny-random
    story = plan_story("rain, then a dog barks", PlanOptions(total_duration=3.0, seed=1, steps=1), model)
    assert story.sample_rate == DEMO_SAMPLE_RATE
    target = StoryFolder(tmp_path / "story")
    target.save(story)
    render_story(target, model, runtime)
    for event in target.load().events:
        audio, rate = read_audio(target.resolve(event.file))
        assert rate == DEMO_SAMPLE_RATE
        assert audio.shape[1] >= round(event.duration * rate)


def test_the_demo_t5_tokenizer_fits_a_caption_in_the_semantic_tokens(tmp_path):
    """The T5 target is cut to S tokens: the demo's T5 tokenizer, learned on the foley texts, keeps a whole caption
    where the built-in 256-token one keeps its first ~25 characters (often not the sound's name)."""
    from audiostory_cli.demo.recipe import DEMO_T5_VOCAB
    from audiostory_cli.generator.text_encoder import T5_EOS_ID, T5_PAD_ID
    from audiostory_cli.train.t5_tokenizer import build_corpus_t5_tokenizer, build_tiny_t5_tokenizer

    data = write_manifests(
        tmp_path / "train", split="train", n_stories=4, n_clips=120, sr=16_000, clip_seconds=(0.5, 0.5)
    )
    tokenizer = build_corpus_t5_tokenizer(manifest_texts([data.clips, data.qa, data.stories]), DEMO_T5_VOCAB)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (T5_PAD_ID, T5_EOS_ID)
    assert len(tokenizer) <= demo_dims(3000).text_encoder.vocab_size
    captions = [json.loads(line)["caption"] for line in data.clips.read_text().splitlines()]
    s = demo_dims(3000).bridge.num_semantic_tokens
    fits = sum(len(tokenizer(c)["input_ids"]) <= s for c in captions) / len(captions)
    tiny = build_tiny_t5_tokenizer()
    fits_tiny = sum(len(tiny(c)["input_ids"]) <= s for c in captions) / len(captions)
    assert fits >= 0.9 and fits_tiny < 0.2, (fits, fits_tiny)
    again = build_corpus_t5_tokenizer(manifest_texts([data.clips, data.qa, data.stories]), DEMO_T5_VOCAB)
    assert again(captions[0])["input_ids"] == tokenizer(captions[0])["input_ids"]  # deterministic


@pytest.mark.slow
def test_an_interrupted_demo_build_resumes_to_the_same_model(tmp_path):
    """--resume keeps the finished steps, redoes the unfinished one, and ends with the model of an unbroken run."""
    import shutil

    from audiostory_cli.demo.recipe import build_demo

    work = tmp_path / "work"
    build_demo(tmp_path / "first", work, quick_recipe(), device="cpu")
    shutil.rmtree(work / "stage-3")  # as if the build had stopped during the last stage
    (work / "stage-3").mkdir()
    (work / "stage-3" / "metrics.jsonl").write_text('{"step": 0, "loss/loss": 1.0}\n')
    notes: list[str] = []
    build_demo(tmp_path / "second", work, quick_recipe(), device="cpu", resume=True, log=notes.append)

    sidecar = json.loads((tmp_path / "first" / "audiostory.json").read_text())
    assert sidecar["dims"]["codec"] == asdict(DEMO_CODEC) and sidecar["dims"]["vae"] is None
    assert "vae" not in sidecar["parts"] and "vae_pretraining" not in sidecar["extra"]  # no VAE step
    t5 = json.loads((tmp_path / "first" / "t5_tokenizer" / "tokenizer.json").read_text())
    assert len(t5["model"]["vocab"]) > 256  # the corpus-learned T5 tokenizer, not the built-in tiny one
    kept = [n for n in notes if " kept from " in n]
    assert len(kept) == 6, notes  # data, init, planner, stages 1-warm, 1 and 2 (the codec needs no training)
    assert not any("stage 3 kept" in n for n in notes)
    first = sorted(p.name for p in (tmp_path / "first").glob("*.safetensors"))
    assert first and first == sorted(p.name for p in (tmp_path / "second").glob("*.safetensors"))
    for name in first:  # bitwise equal tensors (the header's metadata order is not deterministic in safetensors)
        a, b = load_file(tmp_path / "first" / name), load_file(tmp_path / "second" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.slow
def test_a_demo_build_with_edit_dialogues_teaches_the_planner_to_edit(tmp_path):
    from dataclasses import replace

    from audiostory_cli.demo.recipe import PLANNER_DATA_FILE, build_demo
    from audiostory_cli.train.manifest import load_story_texts

    recipe = replace(quick_recipe(), edit_dialogues=2)
    build_demo(tmp_path / "model", tmp_path / "work", recipe, device="cpu")
    texts = load_story_texts(tmp_path / "work" / "data" / PLANNER_DATA_FILE)
    assert sum(not t.edit for t in texts) == recipe.n_text_stories and sum(t.edit for t in texts) >= 2
    planner = json.loads((tmp_path / "work" / "planner" / "audiostory.json").read_text())["extra"]
    assert planner["trained_edits"] and planner["planner_pretraining"]["n_edits"] >= 2
    shipped = json.loads((tmp_path / "model" / "audiostory.json").read_text())["extra"]
    assert shipped["trained_edits"] and shipped["demo_recipe"]["edit_dialogues"] == 2
    with pytest.raises(UsageError, match="edit_dialogues"):
        replace(quick_recipe(), edit_dialogues=-1).check()


def test_resume_refuses_foley_data_of_another_recipe(tmp_path):
    from audiostory_cli.demo.recipe import build_demo

    data = tmp_path / "work" / "data"
    data.mkdir(parents=True)
    (data / "foley.json").write_text(
        json.dumps({"split": "train", "seed": 5, "sr": 16000, "n_clips": 19, "n_stories": 2})
    )
    with pytest.raises(UsageError, match="another recipe"):
        build_demo(tmp_path / "out", tmp_path / "work", quick_recipe(), device="cpu", resume=True)
    (data / "foley.json").write_text("{not json")
    with pytest.raises(UsageError, match="cannot read"):
        build_demo(tmp_path / "out", tmp_path / "work", quick_recipe(), device="cpu", resume=True)
