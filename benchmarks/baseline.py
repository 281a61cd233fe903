"""The official AudioStory inference structure (evaluate/inference.py ``main``), on our modules and the same weights.

What it reproduces (``evaluate/inference.py`` ``main`` of https://github.com/TencentARC/AudioStory;
docs/official-differences.md lists where ``audiostory tell`` differs):

1. one greedy ``generate`` that keeps the hidden states of ALL layers for every step (``output_hidden_states=True``;
   every placeholder of every event is its own decode step); the bridge states are the last layer's at the
   placeholder positions, so there is no separate bridge pass;
2. fusion (projectors + MHA) per event;
3. per event: T5("") encoded again (no cache), ``torch.manual_seed(0)`` noise (1, 645, 64) drawn on the CPU, 50
   Euler steps with CFG as a batch of 2 over the FULL 645-frame window whatever the event's length; the duration
   token is the event's duration (+3 s crossfade for all but the last), clamped to 30 s;
4. per event: one VAE decode of the full 645-frame window, trimmed to the duration;
5. resample to 32 kHz, join with 3 s linear crossfades, write one WAV.

Precision: fp16 everywhere on CUDA (the official ``DTYPE``, VAE and T5 included); fp32 on a CPU, where fp16 is
not a realistic choice. To keep the work comparable, decoding uses the same grammar (and, for random weights,
the same script) as our path, without the official 1.05 repetition penalty, so both plan the same text.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from transformers import GenerationConfig, LogitsProcessorList

from audiostory_cli.generator.sampler import euler_sample
from audiostory_cli.generator.text_encoder import T5_EOS_ID, T5_PAD_ID
from audiostory_cli.model import AudioStoryModel, quiet_libraries
from audiostory_cli.planner.api import demo_sampling
from audiostory_cli.planner.constraints import PlanConstraintProcessor
from audiostory_cli.planner.decoding import placeholder_positions
from audiostory_cli.planner.layout import parse_with_sources
from audiostory_cli.planner.prompt import build_instruction
from audiostory_cli.planner.reasoner import SamplingOptions

from .ours import StoryCase
from .timing import StageClock

OFFICIAL_FRAMES = 645  # the DiT canvas: ~29.95 s at 44.1 kHz / 2048
OFFICIAL_CROSSFADE = 3.0
OFFICIAL_MAX_DURATION = 30.0
OFFICIAL_OUTPUT_RATE = 32_000


def baseline_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.float32


def place_official(model: AudioStoryModel, device: torch.device) -> torch.dtype:
    """Every part in the official dtype on ``device`` (fp16 on CUDA: LLM, bridge, DiT, T5 and VAE alike)."""
    dtype = baseline_dtype(device)
    with quiet_libraries():
        for part in model.parts().values():
            part.to(device=device, dtype=dtype)
    return dtype


@dataclass(frozen=True)
class BaselineInfo:
    plan_tokens: int
    plan_text: str
    events: int
    dtype: str


def run_baseline(model: AudioStoryModel, case: StoryCase, clock: StageClock, workdir: Path) -> BaselineInfo:
    """One story the official way, into ``workdir`` (replaced); stages are marked on ``clock``."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    with torch.inference_mode():
        with clock.section("plan"):
            ids, hidden, prompt_length = _generate(model, case)
        with clock.section("bridge"):
            reasoning, events, fused = _bridge(model, case, ids, hidden, prompt_length)
        with clock.section("dit"):
            latents = [
                _render_event(model, fused[i], _clip_seconds(events, i), case, clock) for i in range(len(events))
            ]
        with clock.section("vae"):
            clips = [_decode_full_window(model, z, _clip_seconds(events, i)) for i, z in enumerate(latents)]
        with clock.section("export"):
            _join_and_write(clips, model.sample_rate, workdir / "generated_audio.wav")
    lines = [reasoning] + [f"{caption} | {seconds:.3f}" for caption, seconds in events]
    return BaselineInfo(
        plan_tokens=len(ids),
        plan_text="\n".join(lines),
        events=len(events),
        dtype=str(model.dit.dtype).removeprefix("torch."),
    )


def _generate(model: AudioStoryModel, case: StoryCase) -> tuple[list[int], torch.Tensor, int]:
    """One greedy ``generate`` keeping every layer's hidden states; returns the new ids and last-layer states."""
    planner = model.planner()
    reasoner = planner.reasoner
    sampling, processors = SamplingOptions(), []
    if model.name == "tiny-random" or model.extra.get("random_weights"):
        sampling, script = demo_sampling(planner, case.prompt, case.duration)
        processors.append(script)
    limits = sampling.limits()
    prompt_ids = reasoner.prompt_ids(build_instruction(case.prompt, case.duration))
    input_ids = torch.tensor([prompt_ids], device=reasoner.device)
    ids = reasoner.classes.ids
    config = GenerationConfig(  # type: ignore[no-untyped-call]
        max_new_tokens=limits.max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=ids.im_end,
        pad_token_id=ids.endoftext,
        return_dict_in_generate=True,
        output_hidden_states=True,
        use_cache=True,
    )
    out = model.llm.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        generation_config=config,
        logits_processor=LogitsProcessorList([*processors, PlanConstraintProcessor(reasoner.classes, limits)]),
    )
    # Official: torch.cat of the last layer over steps (all layers were kept on the device until here).
    hidden = torch.cat([step[-1][0] for step in out.hidden_states], dim=0)
    generated = [int(t) for t in out.sequences[0, input_ids.shape[1] :].tolist()]
    return generated, hidden, input_ids.shape[1]


def _bridge(
    model: AudioStoryModel, case: StoryCase, ids: list[int], hidden: torch.Tensor, prompt_length: int
) -> tuple[str, list[tuple[str, float]], list[torch.Tensor]]:
    """Parse the output; per event, gather its placeholder states and fuse them alone (official: per event)."""
    reasoner = model.planner().reasoner
    bridge_dims = model.dims.bridge
    parsed, sources = parse_with_sources(
        ids,
        tokenizer=model.tokenizer,
        num_text_tokens=reasoner.ids.num_text_tokens,
        num_semantic=bridge_dims.num_semantic_tokens,
        num_residual=bridge_dims.num_residual_tokens,
        total_duration=case.duration,
    )
    blocks = placeholder_positions(ids, reasoner.ids, bridge_dims.num_semantic_tokens, bridge_dims.num_residual_tokens)
    fused = []
    for source in sources:
        sem, res = blocks[source]
        semantic = hidden[[prompt_length + p for p in sem]][None]
        residual = hidden[[prompt_length + p for p in res]][None]
        fused.append(model.bridge(semantic, residual)[0])
    events = [(e.caption, float(e.duration)) for e in parsed.events]
    return parsed.reasoning, events, fused


def _clip_seconds(events: list[tuple[str, float]], index: int) -> float:
    """Official clip length: the event's duration, plus the 3 s crossfade for all but the last event."""
    seconds = events[index][1]
    return seconds + OFFICIAL_CROSSFADE if index < len(events) - 1 else seconds


def _uncond_tokens(model: AudioStoryModel, num_tokens: int) -> torch.Tensor:
    """T5("") padded to S with mask [1, 0, ...]; ALL S outputs are used. Recomputed for every clip, as officially."""
    encoder = model.text_encoder
    device = encoder.get_input_embeddings().weight.device
    ids = torch.full((1, num_tokens), T5_PAD_ID, dtype=torch.long, device=device)
    ids[0, 0] = T5_EOS_ID
    mask = torch.zeros_like(ids)
    mask[0, 0] = 1
    return encoder(input_ids=ids, attention_mask=mask).last_hidden_state[0]


def _render_event(
    model: AudioStoryModel, tokens: torch.Tensor, seconds: float, case: StoryCase, clock: StageClock
) -> torch.Tensor:
    """One clip alone: CFG batch of 2 over the full 645-frame canvas, fixed seed-0 noise."""
    dit = model.dit
    device, channels = dit.device, dit.dims.in_channels
    uncond = _uncond_tokens(model, tokens.shape[0]).to(dit.dtype)
    context = torch.stack([uncond, tokens.to(dit.dtype)])
    durations = torch.full((2,), min(seconds, OFFICIAL_MAX_DURATION), device=device)
    torch.manual_seed(0)  # official: reset inside every call, noise drawn on the CPU
    noise = torch.randn(1, OFFICIAL_FRAMES, channels).to(device)

    def velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return dit.velocity(x, context, durations, torch.full((2,), sigma, device=device))

    def on_step(step: int, total: int) -> None:
        clock("dit", step, total)

    return euler_sample(velocity, noise, steps=case.steps, guidance=case.guidance, on_step=on_step)[0]


def _decode_full_window(model: AudioStoryModel, latents: torch.Tensor, seconds: float) -> np.ndarray:
    """The whole 645-frame canvas through the VAE in one call, then trimmed to the clip (official)."""
    vae = model.vae
    z = latents.to(device=vae.device, dtype=vae.dtype).T[None]  # (1, C, 645)
    audio = vae.decode(z).sample[0]
    samples = int(seconds * model.sample_rate)
    return audio[:, :samples].float().cpu().numpy()


def _join_and_write(clips: list[np.ndarray], rate: int, path: Path) -> None:
    """Resample every clip to 32 kHz, join with 3 s linear crossfades, write one WAV (official post-processing)."""
    import torchaudio.functional as AF

    resampled = [AF.resample(torch.from_numpy(c), rate, OFFICIAL_OUTPUT_RATE).numpy() for c in clips]
    fade = int(OFFICIAL_CROSSFADE * OFFICIAL_OUTPUT_RATE)
    out = resampled[0]
    for clip in resampled[1:]:
        n = min(fade, out.shape[1], clip.shape[1])
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        overlap = out[:, out.shape[1] - n :] * (1.0 - ramp) + clip[:, :n] * ramp
        out = np.concatenate([out[:, : out.shape[1] - n], overlap, clip[:, n:]], axis=1)
    sf.write(str(path), out.T, OFFICIAL_OUTPUT_RATE, subtype="FLOAT")
