"""``audiostory eval``: plan and audio quality on held-out foley stories, against a direct text-to-audio baseline.

For each story of the chosen split (``foley.corpus.make_story``, deterministic from the seed):

1. plan: the model plans the story's instruction; planned captions are mapped to foley classes by the classes'
   caption keywords and compared with the reference events (count, order, classes, durations);
2. render + export: the plan is rendered and delivered exactly as ``tell`` does (``render_story`` then
   ``export_story``);
3. baseline: the whole instruction as one caption, one long render of the total duration, no planner;
4. audio: both mixes are sliced at the *reference* event times and every slice is classified by the independent
   foley classifier (trained on fresh bank draws, never on model outputs); plus the worst seam jump, loudness and
   true-peak compliance from the export QC, and whether the mix is exactly the asked length.

Scores are means over stories. Plan metrics compare paired positions; a story with the wrong event count scores
0 on exact match and count accuracy, and its missing or extra events count as wrong in per-event accuracy.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UsageError
from ..foley.bank import CLASS_NAMES, CLASSES
from ..foley.corpus import SPLITS, FoleyStory, StoryOptions, make_story
from ..foley.metrics import seam_discontinuity, sequence_accuracy
from ..progress import ProgressFn, no_progress

if TYPE_CHECKING:
    from ..foley.classifier import EventClassifier
    from ..model import AudioStoryModel
    from ..runtime import Runtime
    from ..story.plan import Story

# Captions are matched to classes by substring, more specific classes first ("door knocking" is knocking, not a
# door slam; "rain against a window" is rain, not breaking glass); words that only describe distance are dropped.
_CLASS_PRIORITY = ("knocking", "phone_ring", "rain", "glass_break", "tyre_skid", "siren")  # "fire engine siren"
_IGNORED_WORDS = ("microphone",)
MAX_STORIES = 10_000
LENGTH_TOLERANCE_FRAMES = 1
_EVAL_SEED_SALT = 0xE7A1


@dataclass(frozen=True)
class EvalOptions:
    split: str = "test"
    stories: int = 20
    seed: int = 0
    steps: int | None = None  # sampler steps; None: the default render settings (50)
    baseline: bool = True
    preset: str = "broadcast"
    story_options: StoryOptions = field(default_factory=lambda: StoryOptions(duration_hints=True))


def check_eval_options(options: EvalOptions) -> None:
    if options.split not in SPLITS:
        raise UsageError(f"--split {options.split!r} is unknown; use one of {', '.join(SPLITS)}")
    if not 1 <= options.stories <= MAX_STORIES:
        raise UsageError(f"--stories {options.stories} is out of range; use 1 to {MAX_STORIES}")
    if not 0 <= options.seed < 2**31:
        raise UsageError(f"--seed {options.seed} is out of range; use 0 to {2**31 - 1}")
    if options.steps is not None and not 1 <= options.steps <= 1000:
        raise UsageError(f"--steps {options.steps} is out of range; use 1 to 1000")
    options.story_options.check()


def story_options_up_to(max_duration: float) -> StoryOptions:
    """Story shapes of the corpus, with totals from 10 s up to ``max_duration`` seconds."""
    base = StoryOptions()
    floor = base.min_total  # the corpus's stories start at 10 s
    if not (math.isfinite(max_duration) and floor <= max_duration <= base.max_total):
        raise UsageError(f"--max-duration {max_duration:g} is out of range; use {floor:g} to {base.max_total:g} s")
    max_events = min(base.max_events, int(max_duration / base.min_event + 1e-9))  # every event fits
    return StoryOptions(
        max_events=max_events, min_total=min(base.min_total, max_duration), max_total=max_duration, duration_hints=True
    )  # as the demo model is trained


def caption_class(caption: str) -> str | None:
    """The foley class a caption names (by the classes' keywords), or ``None`` when it names none."""
    text = caption.lower()
    for word in _IGNORED_WORDS:
        text = text.replace(word, " ")
    order = [*_CLASS_PRIORITY, *(n for n in CLASS_NAMES if n not in _CLASS_PRIORITY)]
    for name in order:
        if any(keyword in text for keyword in CLASSES[name].keywords):
            return name
    return None


def relative_duration_error(planned: Sequence[float], reference: Sequence[float]) -> float:
    """Mean of ``|planned - reference| / reference`` over paired positions (``inf`` when nothing pairs)."""
    k = min(len(planned), len(reference))
    if k == 0:
        return math.inf
    p, r = np.asarray(planned[:k], float), np.asarray(reference[:k], float)
    return float(np.mean(np.abs(p - r) / r))


# -- results ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanResult:
    reference_classes: tuple[str, ...]
    planned_classes: tuple[str | None, ...]
    reference_durations: tuple[float, ...]
    planned_durations: tuple[float, ...]
    planned_captions: tuple[str, ...]

    @property
    def count_ok(self) -> bool:
        return len(self.planned_classes) == len(self.reference_classes)

    @property
    def sequence_ok(self) -> bool:
        return tuple(self.planned_classes) == tuple(self.reference_classes)

    @property
    def class_accuracy(self) -> float:
        return sequence_accuracy([c or "" for c in self.planned_classes], self.reference_classes)

    @property
    def duration_error(self) -> float:
        return relative_duration_error(self.planned_durations, self.reference_durations)


@dataclass(frozen=True)
class AudioResult:
    heard_classes: tuple[str, ...]  # classifier's verdict on each reference-time slice of the mix
    class_accuracy: float
    seam: float  # worst seam jump relative to the local step (foley.metrics.seam_discontinuity)
    loudness_ok: bool | None  # None: the preset has no integrated target
    true_peak_ok: bool
    length_error: float  # seconds, |mix length - asked length|
    length_exact: bool  # within one frame at the delivery rate


@dataclass(frozen=True)
class StoryResult:
    index: int
    instruction: str
    plan: PlanResult
    audio: AudioResult
    baseline: AudioResult | None


@dataclass(frozen=True)
class EvalReport:
    model: str
    options: EvalOptions
    stories: tuple[StoryResult, ...]

    def summary(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "plan": plan_summary([s.plan for s in self.stories]),
            "audio": {"planner": _audio_summary([(s.audio, s.plan.reference_classes) for s in self.stories])},
        }
        # The renderer's fidelity to its own plan, whether or not the plan is right: over the stories planned with
        # the reference's event count (so that the reference-time slices are the planned events), the share of
        # events heard as their planned class.
        faithful = [
            sequence_accuracy(s.audio.heard_classes, [c or "" for c in s.plan.planned_classes])
            for s in self.stories
            if s.plan.count_ok
        ]
        result["audio"]["planner"]["event_heard_as_planned"] = _mean(faithful) if faithful else None
        baselines = [(s.baseline, s.plan.reference_classes) for s in self.stories if s.baseline is not None]
        if baselines:
            result["audio"]["baseline"] = _audio_summary(baselines)
        return result

    def to_dict(self) -> dict[str, Any]:
        options = asdict(self.options)
        return {
            "model": self.model,
            "split": self.options.split,
            "stories": len(self.stories),
            "seed": self.options.seed,
            "steps": self.options.steps,
            "options": options,
            **self.summary(),
            "per_story": [_finite(asdict(s)) for s in self.stories],
        }


def _mean(values: Sequence[float | bool]) -> float | None:
    finite = [float(v) for v in values if math.isfinite(float(v))]
    if len(finite) < len(values):
        return math.inf if values else None
    return float(np.mean(finite)) if finite else None


def _audio_summary(scored: Sequence[tuple[AudioResult, tuple[str, ...]]]) -> dict[str, Any]:
    """Means over stories; ``class_order_exact``: the mix, sliced at the reference times, is heard as exactly the
    reference classes in their order (the story told, as a listener would check it)."""
    results = [r for r, _ in scored]
    loud = [r.loudness_ok for r in results if r.loudness_ok is not None]
    return {
        "event_class_accuracy": _mean([r.class_accuracy for r in results]),
        "class_order_exact": _mean([tuple(r.heard_classes) == tuple(ref) for r, ref in scored]),
        "seam_discontinuity_mean": _mean([r.seam for r in results]),
        "loudness_compliance": _mean(loud) if loud else None,
        "true_peak_compliance": _mean([r.true_peak_ok for r in results]),
        "length_exact": _mean([r.length_exact for r in results]),
        "length_error_max_s": float(max(r.length_error for r in results)),
    }


def _finite(value: Any) -> Any:
    """JSON has no infinity: non-finite floats become ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# -- running ------------------------------------------------------------------------------------------------


def eval_stories(options: EvalOptions) -> list[FoleyStory]:
    """The held-out stories evaluated for ``options`` (deterministic in split, count, seed and story options)."""
    rng = np.random.default_rng([options.seed, _EVAL_SEED_SALT])
    return [make_story(rng, split=options.split, options=options.story_options) for _ in range(options.stories)]


def evaluate(
    model: AudioStoryModel,
    runtime: Runtime,
    options: EvalOptions,
    *,
    classifier: EventClassifier | None = None,
    work_dir: Path | None = None,
    progress: ProgressFn = no_progress,
) -> EvalReport:
    """Plan, render and deliver every story (and its baseline) in a scratch folder, and score them."""
    from ..foley.classifier import load_or_train

    check_eval_options(options)
    from ..app.pipeline import check_preset

    check_preset(options.preset)
    stories = eval_stories(options)
    clf = classifier if classifier is not None else load_or_train(progress=progress)
    results = []
    with tempfile.TemporaryDirectory(prefix="audiostory-eval-", dir=work_dir) as scratch:
        for number, story in enumerate(stories, start=1):
            results.append(_evaluate_one(number, story, model, runtime, options, clf, Path(scratch)))
            progress("eval", number, len(stories))
    return EvalReport(model=model.name, options=options, stories=tuple(results))


def plan_and_score(
    number: int, story: FoleyStory, model: AudioStoryModel, options: EvalOptions
) -> tuple[Story, PlanResult]:
    """Plan the ``number``-th eval story (1-based) as ``eval`` does, and score the plan against the story."""
    from ..app.pipeline import PlanOptions, plan_story

    seed = (options.seed * 1_000_003 + number) % (2**31 - 1000)
    plan_options = PlanOptions(
        total_duration=story.total_duration, preset=options.preset, seed=seed, steps=options.steps
    )
    planned = plan_story(story.instruction, plan_options, model, instruction=story.instruction)
    plan = PlanResult(
        reference_classes=story.classes,
        planned_classes=tuple(caption_class(e.caption) for e in planned.events),
        reference_durations=tuple(e.duration for e in story.events),
        planned_durations=tuple(e.duration for e in planned.events),
        planned_captions=tuple(e.caption for e in planned.events),
    )
    return planned, plan


def plan_summary(plans: Sequence[PlanResult]) -> dict[str, float | None]:
    """``eval``'s plan metrics over ``plans``."""
    return {
        "event_count_accuracy": _mean([p.count_ok for p in plans]),
        "class_sequence_exact": _mean([p.sequence_ok for p in plans]),
        "event_class_accuracy": _mean([p.class_accuracy for p in plans]),
        "duration_relative_error": _mean([p.duration_error for p in plans]),
    }


def _evaluate_one(
    number: int,
    story: FoleyStory,
    model: AudioStoryModel,
    runtime: Runtime,
    options: EvalOptions,
    clf: EventClassifier,
    scratch: Path,
) -> StoryResult:
    from ..story.folder import StoryFolder

    # 1. plan the instruction as the corpus wrote it
    planned, plan = plan_and_score(number, story, model, options)
    # 2. render and deliver the plan
    audio = _render_and_score(StoryFolder(scratch / f"{number:05d}-planned"), planned, story, model, runtime, clf)
    # 3. the direct baseline: one caption, one render
    baseline = None
    if options.baseline:
        direct = _direct_story(planned, story)
        baseline = _render_and_score(StoryFolder(scratch / f"{number:05d}-direct"), direct, story, model, runtime, clf)
    return StoryResult(index=number, instruction=story.instruction, plan=plan, audio=audio, baseline=baseline)


def _direct_story(planned: Story, story: FoleyStory) -> Story:
    """The baseline plan: the whole instruction as the caption of one event that fills the story."""
    from dataclasses import replace

    from ..story.plan import Event

    event = Event(
        index=1, start=0.0, duration=story.total_duration, caption=story.instruction, seed=planned.events[0].seed
    )
    return replace(planned, events=[event], reasoning="")


def _render_and_score(
    folder: Any, plan: Story, story: FoleyStory, model: AudioStoryModel, runtime: Runtime, clf: EventClassifier
) -> AudioResult:
    from ..app.export import ExportOptions, export_story
    from ..app.pipeline import render_story
    from ..audio.io import read_audio

    folder.save(plan)
    render_story(folder, model, runtime)
    result = export_story(folder, ExportOptions(cues=("story",), force=True))
    mix, rate = read_audio(result.mix, what="evaluated mix")
    crossfade = plan.settings.crossfade
    heard = []
    for start, event in zip(story.starts(), story.events, strict=True):
        lead_in = min(crossfade, event.duration / 3.0)  # skip the part shared with the previous event's tail
        lo, hi = int(round((start + lead_in) * rate)), int(round((start + event.duration) * rate))
        heard.append(clf.predict(mix[:, lo : max(hi, lo + 1)], rate)[0])
    # seams are where the plan joins renders; a single render has none, so it is measured at the reference joins
    starts = [e.start for e in plan.events[1:]] if len(plan.events) > 1 else story.starts()[1:]
    boundaries = [int(round(t * rate)) for t in starts]
    qc = result.qc
    length_error = abs(mix.shape[1] / rate - story.total_duration)
    return AudioResult(
        heard_classes=tuple(heard),
        class_accuracy=sequence_accuracy(heard, story.classes),
        seam=seam_discontinuity(mix, rate, boundaries),
        loudness_ok=qc["checks"]["integrated"],
        true_peak_ok=bool(qc["checks"]["true_peak"]),
        length_error=length_error,
        length_exact=length_error <= LENGTH_TOLERANCE_FRAMES / rate + 1e-9,
    )
