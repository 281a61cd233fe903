"""Editing a story by instruction, over several turns: propose (the model rewrites the plan), apply, undo.

``audiostory edit`` is a thin shell over these functions::

    proposal = propose_edit(folder, "add a siren after the skid", model)   # reads only; nothing is written
    story = apply_edit(folder, proposal)                                   # one read-modify-write of the folder
    render_story(folder, model, runtime)                                   # renders only what the edit changed
    undo_edit(folder)                                                      # one read-modify-write, no rendering

``apply_edit`` and ``undo_edit`` each do all of their reading and writing of the story folder in one call, so a
folder lock can wrap them whole. The model sees the story, the current plan, every earlier instruction of the
history (as a conversation) and the new one; it rewrites the plan under the layout grammar, so its output always
has the plan's shape; an output that still does not parse or validate is retried once (sampled), then refused
with the story untouched.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import InputError, ModelError, PlanValidationError, StoryError, UsageError
from ..progress import ProgressFn, no_progress
from ..story.diff import EventChange, pair_events, story_changes
from ..story.folder import StoryFolder
from ..story.history import EditTurn, load_history, save_history
from ..story.lock import holds_story_lock
from ..story.plan import TIME_EPS, Event, Story

if TYPE_CHECKING:
    from ..model import AudioStoryModel
    from ..planner.layout import ParsedPlan, PlannedEvent

MAX_INSTRUCTION_CHARS = 4000
MAX_SEED = 2**31 - 1
ATTEMPTS = 2  # the constrained rewrite, then one sampled retry
RETRY_TEMPERATURE = 0.7
DURATION_DECIMALS = 1  # the plan layout writes one decimal: a duration that round-trips to it is unchanged


@dataclass(frozen=True)
class EditProposal:
    """A rewritten plan not yet applied: the story as read, the story after, and what changed."""

    instruction: str
    before: Story
    after: Story
    changes: list[EventChange]
    attempts: int = 1  # 2 when the first output did not parse

    @property
    def changed(self) -> bool:
        return self.before.to_dict() != self.after.to_dict()

    @property
    def to_render(self) -> list[int]:
        return [c.new.index for c in self.changes if c.render and c.new is not None]


@dataclass(frozen=True)
class UndoResult:
    story: Story  # the plan restored
    instruction: str  # of the turn undone
    restored: list[str]  # event files brought back from takes
    kept: list[str]  # renders of the undone plan that the restored plan does not name (left in events/)


def check_instruction(text: str) -> str:
    """The instruction as sent to the model: control characters become spaces; empty or too long is refused."""
    cleaned = " ".join("".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text).split())
    if not cleaned:
        raise UsageError('the instruction is empty; say what to change, e.g. "add a siren after the skid"')
    if len(cleaned) > MAX_INSTRUCTION_CHARS:
        raise UsageError(
            f"the instruction is {len(cleaned)} characters; at most {MAX_INSTRUCTION_CHARS} (split it into "
            "several edits: each is a turn the next one sees)"
        )
    return cleaned


def check_editable(folder: StoryFolder, story: Story) -> None:
    """An edit changes a rendered story; a plan that was never rendered is changed with ``plan edit``."""
    if not any(e.status == "rendered" and e.file for e in story.events):
        raise InputError(
            f"the story in {folder.root} was never rendered; render it first with `audiostory render "
            f"{folder.root}`, or change the plan by hand with `audiostory plan edit {folder.root}`"
        )


# -- 1. propose: the model rewrites the plan ----------------------------------------------------------------


def propose_edit(
    folder: StoryFolder,
    instruction: str,
    model: AudioStoryModel,
    *,
    progress: ProgressFn = no_progress,
    rewrite: Callable[[str, Story, list[str], int], ParsedPlan] | None = None,
) -> EditProposal:
    """Read the story and its history, let the model rewrite the plan, and build the edited story (unsaved).

    ``rewrite(instruction, story, history, attempt)`` defaults to the model's constrained rewrite; tests and
    evaluations may pass their own. Raises ``ModelError`` when two outputs do not give a valid plan.
    """
    instruction = check_instruction(instruction)
    story = folder.load()
    check_editable(folder, story)
    history = [turn.instruction for turn in load_history(folder)]
    run = rewrite or (lambda text, s, h, attempt: model_rewrite(model, text, s, h, attempt, progress))
    problems: list[str] = []
    for attempt in range(1, ATTEMPTS + 1):
        try:
            parsed = run(instruction, story, history, attempt)
            after, changes = edited_story(story, parsed.events)
        except (ModelError, PlanValidationError) as exc:  # PlanParseError is a ModelError
            problems.append(str(exc))
            continue
        return EditProposal(instruction=instruction, before=story, after=after, changes=changes, attempts=attempt)
    raise ModelError(
        f"the model's rewrite of the plan did not give a valid plan in {ATTEMPTS} tries ({problems[-1]}); the "
        f"story is unchanged: rephrase the instruction, or edit by hand with `audiostory plan edit {folder.root}`"
    )


def model_rewrite(
    model: AudioStoryModel,
    instruction: str,
    story: Story,
    history: list[str],
    attempt: int,
    progress: ProgressFn = no_progress,
) -> ParsedPlan:
    """The model's rewrite: greedy on the first attempt, sampled on the retry.

    A LoRA planner that was not trained on edit turns (the released checkpoint) rewrites with its adapter off:
    the instruction-tuned base model, constrained to the plan layout. ``tiny-random`` (random weights) is
    scripted by the rule-based ``demo_edit``, as its planning is scripted by ``demo_plan``.
    """
    from ..planner.editing import build_edit_instruction, demo_edit
    from ..planner.layout import PlannedEvent
    from ..planner.reasoner import SamplingOptions
    from ..planner.script import scripted_plan

    planned = [e for e in story.events if e.status != "source"]
    text = build_edit_instruction(story.prompt, story.total_duration, planned, history, instruction)
    sampling = SamplingOptions() if attempt == 1 else SamplingOptions(temperature=RETRY_TEMPERATURE, seed=attempt)
    planner = model.planner()
    processors: tuple[Any, ...] = ()
    if model.name == "tiny-random" or model.extra.get("random_weights"):
        current = [PlannedEvent(e.caption, e.story_detail, e.duration) for e in planned]
        edited = demo_edit(current, instruction)
        script = scripted_plan(planner.reasoner, story.reasoning, edited)
        sampling = replace(sampling, max_new_tokens=max(script.num_tokens + 8, sampling.max_new_tokens))
        processors = (script.processor(),)
    adapter = bool(model.extra.get("trained_edits", False))
    return planner.rewrite(text, sampling=sampling, progress=progress, processors=processors, adapter=adapter)


def edited_story(before: Story, planned: list[PlannedEvent]) -> tuple[Story, list[EventChange]]:
    """The story with the rewritten events; unchanged events keep their seeds, renders and takes.

    An event the model wrote back with the same caption and a duration equal at the layout's precision keeps
    its exact old duration, caption and detail, so its render hash, and its audio, stay the same.
    """
    if not planned:
        raise ModelError("the rewrite has no events")
    sources = [replace(e, takes=list(e.takes)) for e in before.events if e.status == "source"]
    old = [e for e in before.events if e.status != "source"]
    pairs, moved = pair_events([e.caption for e in old], [p.caption for p in planned])
    old_of = {j: i for i, j in pairs if i is not None and j is not None}
    gaps = _gaps_before(before, old)
    cursor = sources[-1].end if sources else (old[0].start - gaps[0] if old else 0.0)
    first = before.first_index + len(sources)
    used_seeds = {e.seed for e in before.events}
    events: list[Event] = []
    for j, new in enumerate(planned):
        i = old_of.get(j)
        if i is None:
            seed = _fresh_seed(used_seeds)
            event = Event(
                index=0,
                start=0.0,
                duration=float(new.duration),
                caption=new.caption.strip(),
                story_detail=new.story_detail.strip(),
                seed=seed,
            )
            gap = 0.0
        else:
            event = _carry(old[i], new)
            gap = gaps[i] if j not in moved else 0.0
        event.index = first + j
        event.start = round(cursor + gap, 6)
        cursor = event.end
        events.append(event)
    trailing = max(0.0, before.total_duration - before.events[-1].end)
    after = replace(before, events=[*sources, *events], total_duration=round(cursor + trailing, 6))
    after.validate()
    return after, story_changes(before, after, pairs, moved)


def _carry(old: Event, new: PlannedEvent) -> Event:
    same_caption = " ".join(old.caption.split()) == " ".join(new.caption.split())
    same_detail = " ".join(old.story_detail.split()) == " ".join(new.story_detail.split())
    same_duration = abs(round(old.duration, DURATION_DECIMALS) - new.duration) <= TIME_EPS
    return replace(
        old,
        takes=list(old.takes),
        caption=old.caption if same_caption else new.caption.strip(),
        story_detail=old.story_detail
        if same_detail or not new.story_detail.strip() and same_caption
        else new.story_detail.strip(),
        duration=old.duration if same_duration else float(new.duration),
    )


def _gaps_before(story: Story, planned: list[Event]) -> list[float]:
    """The silence before each planned event in ``story`` (before the first: from its source or 0)."""
    gaps = []
    previous = story.events[0].end if story.events and story.events[0].status == "source" else 0.0
    for event in planned:
        gaps.append(max(0.0, round(event.start - previous, 6)))
        previous = event.end
    return gaps


def _fresh_seed(used: set[int]) -> int:
    while (seed := secrets.randbelow(MAX_SEED)) in used:
        pass
    used.add(seed)
    return seed


def revise_proposal(proposal: EditProposal, after: Story) -> EditProposal:
    """The proposal with a hand-edited plan (``[e]dit``): the changes are worked out again."""
    before = proposal.before
    old = [e for e in before.events if e.status != "source"]
    new = [e for e in after.events if e.status != "source"]
    pairs, moved = pair_events([e.caption for e in old], [e.caption for e in new])
    after.validate()
    return replace(proposal, after=after, changes=story_changes(before, after, pairs, moved))


# -- 2. apply and undo: each one read-modify-write of the folder ----------------------------------------------


@holds_story_lock("edit")
def apply_edit(folder: StoryFolder, proposal: EditProposal) -> Story:
    """Save the edited plan as a new turn; renders it made stale become takes (so ``undo`` can bring them back).

    Order: the turn (with where each render goes) is written first, then story.json, then the renders move,
    so an interruption at any point leaves a valid story and an undoable history. Nothing is rendered here.
    """
    current = folder.load()
    if current.to_dict() != proposal.before.to_dict():
        raise StoryError(f"the story in {folder.root} changed while the edit was being proposed; run the edit again")
    after = replace(proposal.after, events=[replace(e, takes=list(e.takes)) for e in proposal.after.events])
    moves: list[tuple[str, str]] = []
    taken: set[str] = set()
    for event in after.events:
        if event.file and after.is_stale(event) and folder.resolve(event.file).exists():
            take = _free_take_name(folder, event.file, taken)
            moves.append((event.file, take))
            event.takes.append(take)
            event.file, event.status, event.render_hash = None, "planned", None
    after.validate()
    turns = load_history(folder)
    turn = EditTurn(
        instruction=proposal.instruction,
        time=datetime.now(UTC).isoformat(timespec="seconds"),
        before=current.to_dict(),
        after=after.to_dict(),
        moved=dict(moves),
    )
    save_history(folder, [*turns, turn])
    folder.save(after, keep_previous=True)
    for name, take in moves:
        folder.resolve(name).rename(folder.resolve(take))
    return after


@holds_story_lock("edit --undo")
def undo_edit(folder: StoryFolder) -> UndoResult:
    """Restore the plan before the last turn and its audio (renders the edit moved to takes come back)."""
    turns = load_history(folder)
    if not turns:
        raise InputError(
            f"{folder.root} has no edit to undo (`audiostory plan show {folder.root} --history` lists the edits)"
        )
    turn = turns[-1]
    current = folder.load()
    before = turn.before_story()
    named = {name for e in before.events for name in ([e.file] if e.file else []) + e.takes}
    restored: list[str] = []
    taken: set[str] = set()
    for event in before.events:
        take_name = turn.moved.get(event.file or "")
        if not take_name or not event.file or not folder.resolve(take_name).exists():
            continue
        target = folder.resolve(event.file)
        if target.exists():  # a render of the edited plan took this name: it becomes a take, never lost
            aside = _free_take_name(folder, event.file, taken | named)
            target.rename(folder.resolve(aside))
            event.takes.append(aside)
            named.add(aside)
        folder.resolve(take_name).rename(target)
        named.add(event.file)
        restored.append(event.file)
    # renders and takes of the undone plan, kept as takes of the event at the same place when there is one
    old = [e for e in before.events if e.status != "source"]
    new = [e for e in current.events if e.status != "source"]
    pairs, _ = pair_events([e.caption for e in old], [e.caption for e in new])
    kept: list[str] = []
    paired = {j: i for i, j in pairs if i is not None and j is not None}
    for j, event in enumerate(new):
        for name in ([event.file] if event.file else []) + event.takes:
            if name in named or name in turn.moved.values() or not folder.resolve(name).exists():
                continue
            if j in paired:
                old[paired[j]].takes.append(name)
                named.add(name)
            else:
                kept.append(name)
    folder.save(before, keep_previous=True)
    save_history(folder, turns[:-1])
    return UndoResult(story=before, instruction=turn.instruction, restored=restored, kept=kept)


def _free_take_name(folder: StoryFolder, file_name: str, taken: set[str]) -> str:
    """``events/02-dog-barks.s5.wav`` → the first free ``events/02-dog-barks.takeK.wav``."""
    stem = file_name.removesuffix(".wav").rsplit(".s", 1)[0]
    number = 1
    while f"{stem}.take{number}.wav" in taken or folder.resolve(f"{stem}.take{number}.wav").exists():
        number += 1
    name = f"{stem}.take{number}.wav"
    taken.add(name)
    return name
