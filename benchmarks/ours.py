"""Our path, exactly as ``audiostory tell --yes`` runs it: ``plan_story`` → ``render_story`` → ``export_story``.

Nothing is re-implemented here: the stages are timed through the library's progress callbacks (``StageClock``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from audiostory_cli.app.export import ExportOptions, export_story
from audiostory_cli.app.pipeline import PlanOptions, plan_story, render_story
from audiostory_cli.model import AudioStoryModel
from audiostory_cli.planner.layout import serialise_ids
from audiostory_cli.runtime import Runtime
from audiostory_cli.story import StoryFolder
from audiostory_cli.story.plan import Story

from .timing import StageClock

CLAUSES = (
    "rain drums on a tin roof",
    "thunder rolls in the distance",
    "a dog barks twice",
    "a car skids on wet asphalt",
    "a heavy door slams",
    "footsteps splash through puddles",
    "a siren wails past",
    "birds sing as the storm passes",
)
EXPORT_STAGES = {"read": "export", "master": "export", "write": "export"}


@dataclass(frozen=True)
class StoryCase:
    """What one benchmark story asks for."""

    duration: float
    events: int
    steps: int
    guidance: float = 4.0
    crossfade: float | None = None  # None: the model's join (3 s linear for audiostory-3b, as officially)
    seed: int = 1234
    preset: str = "broadcast"
    canvas: str | None = None  # None: the model's (fixed for the official checkpoint); "sized" is the opt-in

    @property
    def prompt(self) -> str:
        """One clause per event (random-weight models plan exactly these; trained ones plan what they like)."""
        return ", then ".join(CLAUSES[: self.events])


def default_events(duration: float) -> int:
    """About one event per 10 s (AudioStory's clips are up to ~27 s), 1 to 8."""
    return max(1, min(len(CLAUSES), round(duration / 10.0)))


@dataclass(frozen=True)
class RunInfo:
    plan_tokens: int  # tokens of the plan as serialised (reasoning + events with their placeholder blocks)
    plan_text: str
    events: int
    event_seconds: list[float]  # rendered length of each event (duration + crossfade tail)


def run_ours(
    model: AudioStoryModel,
    runtime: Runtime,
    case: StoryCase,
    clock: StageClock,
    workdir: Path,
    *,
    offload: bool = False,
) -> RunInfo:
    """Plan, render and export one story into ``workdir`` (replaced), timed by ``clock``."""
    if offload:
        model.llm.to(runtime.device)  # a previous run offloaded it; `tell` starts with it in place
    if workdir.exists():
        shutil.rmtree(workdir)
    options = PlanOptions(
        total_duration=case.duration,
        preset=case.preset,
        seed=case.seed,
        steps=case.steps,
        guidance=case.guidance,
        crossfade=case.crossfade,
        canvas=case.canvas,
    )
    # 1. plan
    with clock.section("plan"):
        story = plan_story(case.prompt, options, model, progress=clock)
    folder = StoryFolder(workdir)
    folder.prepare_new(force=True)
    folder.save(story, keep_previous=True)
    # 2.-4. bridge, DiT, VAE, event files
    with clock.section("render"):
        render_story(folder, model, runtime, progress=clock, offload=offload)
    # 5. mix, loudness, stems, cues
    with clock.section("export", relabel=EXPORT_STAGES):
        export_story(
            folder,
            ExportOptions(loudness=case.preset, stems=True, cues=("story", "reaper", "audacity", "edl"), force=True),
            clock,
        )
    return RunInfo(
        plan_tokens=plan_token_count(model, story),
        plan_text=plan_text(story),
        events=len(story.events),
        event_seconds=[round(story.render_length(e), 4) for e in story.events],
    )


def plan_token_count(model: AudioStoryModel, story: Story) -> int:
    bridge = model.dims.bridge
    return len(
        serialise_ids(
            model.tokenizer, story.reasoning, story.events, bridge.num_semantic_tokens, bridge.num_residual_tokens
        )
    )


def plan_text(story: Story) -> str:
    """The plan in one comparable string: reasoning, then caption and duration of each event."""
    lines = [story.reasoning] + [f"{e.caption} | {e.duration:.3f}" for e in story.events]
    return "\n".join(lines)
