"""Render the latents of many events at once: batched over events, each on the model's canvas, each with its own
seeded noise, with optional clean latent prefixes (continuation) and long events chained window by window.

Per event: ``L = ceil(round(seconds × sr) / hop)`` new frames. The canvas (``config.CANVASES``) decides how many
frames the DiT denoises: ``fixed`` (the official inference, and what the released weights were trained on) always
denoises the whole ``audio_seq_len`` window and keeps the first frames; ``sized`` denoises only the window's own
frames (faster; what ``train`` trains; not validated on the released weights). Noise for every DiT window comes
from ``torch.Generator("cpu").manual_seed(seed)`` with shape (canvas frames, C), drawn on the CPU independently of
what else is in the batch and then moved to the device, so a given (tokens, seconds, seed, prefix) renders the
same latents alone or in any batch (bitwise across runs on one machine; within ~1e-5 across batch compositions,
since padded batches use masked attention and differently shaped matmuls).

Long events (more new frames than fit one DiT window) are outpainted: window k > 0 takes the last
``overlap_frames`` frames rendered so far as a fixed prefix (flow inpainting) and adds up to
``window − overlap_frames`` new frames. Window 0 uses the event seed, window k ``derive_seed(seed, k)``.
Round k renders window k of every event that has one, so short events and the first windows of long ones share
a batch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..config import CANVAS_FIXED, CANVASES
from ..errors import ModelError, UsageError
from ..progress import ProgressFn, no_progress
from ..runtime import Runtime
from .dit import AudioDiT
from .geometry import LatentGeometry
from .sampler import euler_sample

MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class EventCondition:
    """What one event needs from the planner.

    ``tokens`` (S, D): fused bridge tokens; ``seconds``: length of the NEW audio; ``seed``: its noise;
    ``prefix`` (P, C): clean latents the event must start from (the input's tail for ``continue``). With a prefix
    the returned latents are (P + L, C): the first P frames are the prefix itself; decode them all and drop the
    first P × hop samples for a seamless join.
    """

    tokens: torch.Tensor
    seconds: float
    seed: int
    prefix: torch.Tensor | None = None


@dataclass(frozen=True)
class WindowSpec:
    """One DiT pass of an event: ``prefix_frames`` fixed frames followed by ``new_frames`` generated ones."""

    prefix_frames: int
    new_frames: int

    @property
    def frames(self) -> int:
        return self.prefix_frames + self.new_frames


def default_overlap_frames(window: int) -> int:
    """Context carried into the next window of a long event: a fifth of the window (~6 s at full size)."""
    return max(1, window // 5)


def derive_seed(seed: int, window_index: int) -> int:
    """Seed of window ``window_index`` of a long event; window 0 uses ``seed`` itself."""
    if window_index == 0:
        return seed
    digest = hashlib.sha256(f"audiostory-window:{seed}:{window_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & MAX_SEED


def plan_windows(new_frames: int, prefix_frames: int, window: int, overlap: int) -> list[WindowSpec]:
    """Split ``new_frames`` after a ``prefix_frames`` prefix into DiT windows of at most ``window`` frames."""
    if new_frames < 1:
        raise ValueError(f"new_frames must be >= 1, got {new_frames}")
    if not 0 <= prefix_frames < window:
        raise ValueError(f"a prefix of {prefix_frames} frames leaves no room in a {window}-frame window")
    if not 1 <= overlap < window:
        raise ValueError(f"overlap_frames must be in [1, {window - 1}], got {overlap}")
    first = min(new_frames, window - prefix_frames)
    specs = [WindowSpec(prefix_frames, first)]
    remaining = new_frames - first
    while remaining > 0:
        step = min(remaining, window - overlap)
        specs.append(WindowSpec(overlap, step))
        remaining -= step
    return specs


@dataclass
class _Chain:
    """Mutable render state of one event."""

    event: EventCondition
    windows: list[WindowSpec]
    parts: list[torch.Tensor] = field(default_factory=list)  # prefix (if any) then new frames, CPU fp32
    new_done: int = 0


@dataclass(frozen=True)
class _Job:
    chain: _Chain
    round: int
    spec: WindowSpec
    prefix: torch.Tensor | None
    noise: torch.Tensor
    seconds: float


def render_latents(
    dit: AudioDiT,
    events: list[EventCondition],
    *,
    steps: int,
    guidance: float,
    uncond: torch.Tensor | None,
    runtime: Runtime,
    progress: ProgressFn = no_progress,
    geometry: LatentGeometry | None = None,
    overlap_frames: int | None = None,
    max_batch: int | None = None,
    canvas: str = CANVAS_FIXED,
) -> list[torch.Tensor]:
    """Latents (P_i + L_i, C) for every event, fp32 on the CPU, in the order given.

    ``uncond`` (S, D): T5("") tokens (``text_encoder.unconditional_tokens``), needed when ``guidance > 1``.
    ``canvas``: ``fixed`` denoises every window on the full ``audio_seq_len`` frames and trims; ``sized`` only
    on the frames the window needs (see the module docstring).
    ``max_batch`` caps events per DiT call (CFG doubles the rows); ``None`` puts each round in one call.
    Progress: ``progress("dit", step, total)`` over all DiT calls.
    """
    geometry = geometry or LatentGeometry()
    window = dit.dims.audio_seq_len
    overlap = default_overlap_frames(window) if overlap_frames is None else overlap_frames
    _check_options(steps, guidance, uncond, max_batch)
    if canvas not in CANVASES:
        raise UsageError(f"--canvas {canvas!r} must be one of {', '.join(CANVASES)}")
    canvas_frames = window if canvas == CANVAS_FIXED else None
    _check_events(dit, events, uncond, guidance)
    chains = [_Chain(e, plan_windows(geometry.frames(e.seconds), _prefix_len(e), window, overlap)) for e in events]
    for chain in chains:
        if chain.event.prefix is not None:
            chain.parts.append(chain.event.prefix.detach().float().cpu())
    rounds = max((len(c.windows) for c in chains), default=0)
    batch_cap = max_batch or max(len(chains), 1)
    total = steps * sum(math.ceil(sum(len(c.windows) > r for c in chains) / batch_cap) for r in range(rounds))
    done = 0

    def report(step: int, _steps: int) -> None:
        progress("dit", done + step, total)

    with torch.no_grad():
        for r in range(rounds):
            jobs = [_next_job(c, r, dit, geometry, canvas_frames) for c in chains if len(c.windows) > r]
            jobs.sort(key=lambda job: -job.spec.frames)
            for start in range(0, len(jobs), batch_cap):
                group = jobs[start : start + batch_cap]
                outputs = _sample_group(dit, group, steps, guidance, uncond, runtime, report)
                done += steps
                for job, out in zip(group, outputs, strict=True):
                    job.chain.parts.append(out[job.spec.prefix_frames :])
                    job.chain.new_done += job.spec.new_frames
    return [torch.cat(c.parts, dim=0) for c in chains]


def _prefix_len(event: EventCondition) -> int:
    return 0 if event.prefix is None else int(event.prefix.shape[0])


def _next_job(chain: _Chain, r: int, dit: AudioDiT, geometry: LatentGeometry, canvas_frames: int | None) -> _Job:
    spec = chain.windows[r]
    event = chain.event
    prefix = None
    if spec.prefix_frames:
        prefix = torch.cat(chain.parts, dim=0)[-spec.prefix_frames :]
    seed = derive_seed(event.seed, r)
    generator = torch.Generator("cpu").manual_seed(seed)
    frames = spec.frames if canvas_frames is None else canvas_frames
    noise = torch.randn((frames, dit.dims.in_channels), generator=generator, dtype=torch.float32)
    remaining = event.seconds - geometry.seconds(chain.new_done)
    seconds = geometry.seconds(spec.prefix_frames) + min(geometry.seconds(spec.new_frames), remaining)
    return _Job(chain, r, spec, prefix, noise, seconds)


def _sample_group(
    dit: AudioDiT,
    group: list[_Job],
    steps: int,
    guidance: float,
    uncond: torch.Tensor | None,
    runtime: Runtime,
    report: Callable[[int, int], None],
) -> list[torch.Tensor]:
    """One DiT batch: pad to the longest canvas (none to pad on the fixed canvas), mask the padding, inpaint the
    prefixes."""
    device = runtime.device
    size, length, channels = len(group), max(j.noise.shape[0] for j in group), dit.dims.in_channels
    noise = torch.zeros(size, length, channels)
    known = torch.zeros(size, length, channels)
    known_mask = torch.zeros(size, length, dtype=torch.bool)
    valid = torch.zeros(size, length, dtype=torch.bool)
    for row, job in enumerate(group):
        noise[row, : job.noise.shape[0]] = job.noise  # the fixed canvas: the whole window, trimmed after sampling
        valid[row, : job.noise.shape[0]] = True
        if job.prefix is not None:
            known[row, : job.spec.prefix_frames] = job.prefix
            known_mask[row, : job.spec.prefix_frames] = True
    context = torch.stack([j.chain.event.tokens.to(device) for j in group])
    durations = torch.tensor([j.seconds for j in group], dtype=torch.float32)
    cfg = guidance > 1.0
    if cfg:
        if uncond is None:
            raise ValueError("guidance > 1 needs the unconditional tokens")
        context = torch.cat([uncond.to(device=device, dtype=context.dtype).expand_as(context), context])
        durations = torch.cat([durations, durations])
    rows_valid = (torch.cat([valid, valid]) if cfg else valid).to(device)
    padded = not bool(valid.all())
    latent_mask = rows_valid if padded else None
    durations = durations.to(device)

    def velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
        if padded:
            x = x * rows_valid[..., None]
        sigmas = torch.full((x.shape[0],), sigma, device=device)
        return dit.velocity(x, context, durations, sigmas, latent_mask)

    has_prefix = bool(known_mask.any())
    out = euler_sample(
        velocity,
        noise.to(device),
        steps=steps,
        guidance=guidance,
        known=known.to(device) if has_prefix else None,
        known_mask=known_mask.to(device) if has_prefix else None,
        on_step=report,
    )
    out = out.cpu()
    return [out[row, : job.spec.frames] for row, job in enumerate(group)]


def _check_options(steps: int, guidance: float, uncond: torch.Tensor | None, max_batch: int | None) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise UsageError(f"--steps must be a whole number >= 1, got {steps!r}")
    if not math.isfinite(guidance) or guidance < 0:
        raise UsageError(f"--guidance must be a finite number >= 0 (1 or less disables CFG), got {guidance!r}")
    if guidance > 1.0 and uncond is None:
        raise ValueError("guidance > 1 needs the unconditional tokens (text_encoder.unconditional_tokens)")
    if max_batch is not None and max_batch < 1:
        raise UsageError(f"max_batch must be >= 1, got {max_batch}")


def _check_events(dit: AudioDiT, events: list[EventCondition], uncond: torch.Tensor | None, guidance: float) -> None:
    dims = dit.dims
    want_s = None if uncond is None or guidance <= 1.0 else int(uncond.shape[0])
    if uncond is not None and (uncond.ndim != 2 or uncond.shape[1] != dims.joint_attention_dim):
        raise ModelError(
            f"unconditional tokens are {tuple(uncond.shape)}, the DiT expects (S, {dims.joint_attention_dim}); "
            "the text encoder and the DiT come from different models"
        )
    for i, event in enumerate(events):
        where = f"event {i + 1}"
        tokens = event.tokens
        if tokens.ndim != 2 or tokens.shape[1] != dims.joint_attention_dim:
            raise ModelError(
                f"{where}: bridge tokens are {tuple(tokens.shape)}, the DiT expects (S, {dims.joint_attention_dim}); "
                "planner and DiT come from different models"
            )
        want_s = int(tokens.shape[0]) if want_s is None else want_s
        if tokens.shape[0] != want_s:
            raise ModelError(
                f"{where}: {tokens.shape[0]} bridge tokens, but the other events or the unconditional tokens have "
                f"{want_s}; all must share the model's semantic token count"
            )
        if not math.isfinite(event.seconds) or event.seconds <= 0:
            raise UsageError(f"{where}: duration must be a finite number of seconds > 0, got {event.seconds!r}")
        if not isinstance(event.seed, int) or not 0 <= event.seed <= MAX_SEED:
            raise UsageError(f"{where}: seed must be a whole number in [0, 2^63-1], got {event.seed!r}")
        prefix = event.prefix
        if prefix is not None:
            if prefix.ndim != 2 or prefix.shape[1] != dims.in_channels:
                raise ModelError(f"{where}: prefix latents are {tuple(prefix.shape)}, expected (P, {dims.in_channels})")
            if not 1 <= prefix.shape[0] < dims.audio_seq_len:
                raise UsageError(
                    f"{where}: a prefix of {prefix.shape[0]} frames does not fit the {dims.audio_seq_len}-frame "
                    "DiT window with room for new audio; use a shorter continuation tail"
                )
