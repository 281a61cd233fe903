"""``audiostory eval --edits N``: how well a model edits a story by instruction, and what an edit costs.

For each of N synthetic edit turns of the foley world (``foley.edits``; the test split's held-out wording):

1. the story before the edit is rendered in a scratch folder, as ``tell`` would (its reference plan, not a
   planned one, so that only the edit is measured);
2. ``edit``: the model rewrites the plan (``editing.propose_edit``), the edit is applied and rendered exactly as
   the command does (``apply_edit`` then ``render_story``);
3. scores:

   * **exact edit**: the plan after has the true event count, every event the true class (by caption keywords,
     ``eval.caption_class``) in the true order, every duration within 5 % of the truth, the events the truth
     leaves alone keep their captions and the events it changes (a new class, louder…) change theirs;
   * **untouched byte-identical**: among events whose caption and duration the edit left alone, the share whose
     audio file is byte-for-byte the one rendered before the edit; reported twice: over the events whose render
     inputs are unchanged (the `regen` guarantee: the goal is 100 %), and over all of them (an event next to a
     change is re-rendered when its crossfade tail into the changed neighbour changes length);
   * **render cost**: seconds of audio the edit rendered over the seconds a re-telling renders (every event of
     the edited plan), and the same in events.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AudiostoryError, UsageError
from ..foley.corpus import SPLITS, FoleyEvent, FoleyStory, StoryOptions, make_story
from ..foley.edits import FoleyEditTurn, edit_turn
from ..progress import ProgressFn, no_progress

if TYPE_CHECKING:
    from ..model import AudioStoryModel
    from ..planner.layout import ParsedPlan
    from ..runtime import Runtime
    from ..story.plan import Story

MAX_EDITS = 10_000
DURATION_TOLERANCE = 0.05
_SALT = 0xED17
EDIT_STORY_OPTIONS = StoryOptions(max_events=4, min_total=8.0, max_total=20.0)


@dataclass(frozen=True)
class EditEvalOptions:
    edits: int = 20
    split: str = "test"
    seed: int = 0
    steps: int | None = None  # render steps; None: the default render settings (50)
    story_options: StoryOptions = EDIT_STORY_OPTIONS


def check_edit_eval_options(options: EditEvalOptions) -> None:
    if not 1 <= options.edits <= MAX_EDITS:
        raise UsageError(f"--edits {options.edits} is out of range; use 1 to {MAX_EDITS}")
    if options.split not in SPLITS:
        raise UsageError(f"--split {options.split!r} is unknown; use one of {', '.join(SPLITS)}")
    if not 0 <= options.seed < 2**31:
        raise UsageError(f"--seed {options.seed} is out of range; use 0 to {2**31 - 1}")
    if options.steps is not None and not 1 <= options.steps <= 1000:
        raise UsageError(f"--steps {options.steps} is out of range; use 1 to 1000")


@dataclass(frozen=True)
class EditResult:
    index: int
    operation: str
    instruction: str
    exact: bool
    error: str | None  # the edit failed (no valid plan): counts as not exact
    true_classes: tuple[str, ...]
    edited_classes: tuple[str | None, ...]
    true_durations: tuple[float, ...]
    edited_durations: tuple[float, ...]
    untouched_same_inputs: int  # untouched events whose render inputs did not change
    untouched_same_inputs_identical: int
    untouched: int  # events whose caption and duration the edit left alone
    untouched_identical: int
    rendered_seconds: float  # by the edit
    retell_seconds: float  # by a re-telling of the edited plan
    rendered_events: int
    retell_events: int


@dataclass(frozen=True)
class EditEvalReport:
    model: str
    options: EditEvalOptions
    results: tuple[EditResult, ...]

    def summary(self) -> dict[str, Any]:
        results = self.results
        same = sum(r.untouched_same_inputs for r in results)
        allu = sum(r.untouched for r in results)
        retell = sum(r.retell_seconds for r in results)
        retell_events = sum(r.retell_events for r in results)
        by_op: dict[str, list[bool]] = {}
        for r in results:
            by_op.setdefault(r.operation, []).append(r.exact)
        return {
            "edits": len(results),
            "exact_edit_share": sum(r.exact for r in results) / len(results) if results else None,
            "failed_edits": sum(r.error is not None for r in results),
            "untouched_identical_share_same_inputs": (
                sum(r.untouched_same_inputs_identical for r in results) / same if same else None
            ),
            "untouched_identical_share": sum(r.untouched_identical for r in results) / allu if allu else None,
            "render_cost_seconds": sum(r.rendered_seconds for r in results) / retell if retell else None,
            "render_cost_events": sum(r.rendered_events for r in results) / retell_events if retell_events else None,
            "exact_by_operation": {op: sum(v) / len(v) for op, v in sorted(by_op.items())},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "options": asdict(self.options),
            "summary": self.summary(),
            "results": [asdict(r) for r in self.results],
        }


def eval_turns(options: EditEvalOptions) -> list[FoleyEditTurn]:
    """The held-out edit turns (deterministic in split, count, seed and story options); one turn per story."""
    rng = np.random.default_rng([options.seed, _SALT])
    return [
        edit_turn(rng, make_story(rng, split=options.split, options=options.story_options), split=options.split)
        for _ in range(options.edits)
    ]


def evaluate_edits(
    model: AudioStoryModel,
    runtime: Runtime,
    options: EditEvalOptions,
    *,
    work_dir: Path | None = None,
    progress: ProgressFn = no_progress,
    rewrite: Callable[[str, Story, list[str], int], ParsedPlan] | None = None,
) -> EditEvalReport:
    """Render, edit and score every turn in a scratch folder (``rewrite`` replaces the model's, for tests)."""
    check_edit_eval_options(options)
    turns = eval_turns(options)
    results = []
    with tempfile.TemporaryDirectory(prefix="audiostory-eval-edits-", dir=work_dir) as scratch:
        for number, turn in enumerate(turns, start=1):
            results.append(_evaluate_turn(number, turn, model, runtime, options, Path(scratch), rewrite))
            progress("eval-edits", number, len(turns))
    return EditEvalReport(model=model.name, options=options, results=tuple(results))


def foley_plan(story: FoleyStory, model: AudioStoryModel, steps: int | None) -> Story:
    """The story's reference plan as a ``Story`` for ``model`` (captions, details, durations, seeds)."""
    from ..planner.prompt import build_instruction
    from ..story.plan import Event, RenderSettings, Story

    events, cursor = [], 0.0
    for index, event in enumerate(story.events, start=1):
        events.append(
            Event(
                index=index,
                start=round(cursor, 6),
                duration=event.duration,
                caption=event.caption,
                story_detail=event.story_detail,
                seed=event.seed % (2**31 - 1),
            )
        )
        cursor += event.duration
    return Story(
        prompt=story.instruction,
        total_duration=round(cursor, 6),
        events=events,
        model=model.name,
        model_revision=model.revision,
        instruction=build_instruction(story.instruction, story.total_duration),
        reasoning=story.storyline,
        settings=RenderSettings(steps=steps or 50),
        sample_rate=model.sample_rate,
    )


def _evaluate_turn(
    number: int,
    turn: FoleyEditTurn,
    model: AudioStoryModel,
    runtime: Runtime,
    options: EditEvalOptions,
    scratch: Path,
    rewrite: Callable[..., ParsedPlan] | None,
) -> EditResult:
    from ..app.editing import apply_edit, propose_edit
    from ..app.pipeline import render_story
    from ..story.folder import StoryFolder

    folder = StoryFolder(scratch / f"{number:05d}")
    # 1. the story before the edit, rendered
    folder.save(foley_plan(turn.story, model, options.steps))
    render_story(folder, model, runtime)
    before = folder.load()
    audio_before = {e.file: folder.resolve(e.file).read_bytes() for e in before.events if e.file}
    true_classes = tuple(e.class_name for e in turn.edited)
    true_durations = tuple(e.duration for e in turn.edited)
    # 2. the edit, as `audiostory edit --yes` does it
    try:
        proposal = propose_edit(folder, turn.instruction, model, rewrite=rewrite)
    except AudiostoryError as exc:
        return EditResult(
            index=number,
            operation=turn.operation,
            instruction=turn.instruction,
            exact=False,
            error=str(exc),
            true_classes=true_classes,
            edited_classes=(),
            true_durations=true_durations,
            edited_durations=(),
            untouched_same_inputs=0,
            untouched_same_inputs_identical=0,
            untouched=0,
            untouched_identical=0,
            rendered_seconds=0.0,
            retell_seconds=0.0,
            rendered_events=0,
            retell_events=0,
        )
    after = proposal.after
    to_render = [e for e in after.events if after.is_stale(e)]
    rendered_seconds = sum(after.render_length(e) for e in to_render)
    if proposal.changed:
        apply_edit(folder, proposal)
        render_story(folder, model, runtime)
    final = folder.load()
    # 3. scores
    same_inputs = same_identical = untouched = untouched_identical = 0
    for change in proposal.changes:
        if change.kind != "kept" or change.old is None or change.new is None:
            continue
        event = final.event(change.new.index)
        untouched += 1
        old_audio = audio_before.get(change.old.file or "")
        identical = bool(event.file and old_audio is not None and folder.resolve(event.file).read_bytes() == old_audio)
        untouched_identical += identical
        if not change.render:
            same_inputs += 1
            same_identical += identical
    return EditResult(
        index=number,
        operation=turn.operation,
        instruction=turn.instruction,
        exact=exact_edit(turn, final),
        error=None,
        true_classes=true_classes,
        edited_classes=tuple(_caption_class(e.caption) for e in final.events),
        true_durations=true_durations,
        edited_durations=tuple(e.duration for e in final.events),
        untouched_same_inputs=same_inputs,
        untouched_same_inputs_identical=same_identical,
        untouched=untouched,
        untouched_identical=untouched_identical,
        rendered_seconds=rendered_seconds,
        retell_seconds=sum(final.render_length(e) for e in final.events),
        rendered_events=len(to_render),
        retell_events=len(final.events),
    )


def _caption_class(caption: str) -> str | None:
    from .eval import caption_class

    return caption_class(caption)


def exact_edit(turn: FoleyEditTurn, edited: Story) -> bool:
    """Classes and order right, durations within 5 %, untouched captions kept and changed ones changed."""
    events = edited.events
    if len(events) != len(turn.edited):
        return False
    old_captions = {e.caption for e in turn.story.events}
    for truth, event in zip(turn.edited, events, strict=True):
        same_words = " ".join(event.caption.split()) == " ".join(truth.caption.split())
        if not same_words and _caption_class(event.caption) != truth.class_name:
            return False
        if not math.isclose(event.duration, truth.duration, rel_tol=DURATION_TOLERANCE):
            return False
        carried = _carried(truth, turn.story.events)
        if carried and not same_words:
            return False
        if (
            not carried
            and truth.caption not in old_captions
            and event.caption in old_captions
            and truth.class_name == _class_of_old(event.caption, turn.story.events)
        ):
            return False  # a louder/closer… edit that left the caption as it was
    return True


def _carried(truth: FoleyEvent, before: tuple[FoleyEvent, ...]) -> bool:
    return any(truth.caption == e.caption and truth.params == e.params for e in before)


def _class_of_old(caption: str, before: tuple[FoleyEvent, ...]) -> str | None:
    return next((e.class_name for e in before if e.caption == caption), None)
