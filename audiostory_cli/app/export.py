"""Deliver a story: mix the rendered events, normalise loudness, true-peak limit, write mix, stems, cues and QC.

``export_story(folder, options)`` needs no model. ``render``/``regen`` call it (with ``force=True`` and
``last_export_options``) to refresh a story's deliverables after re-rendering.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..audio import cues as cue_sheets
from ..audio.io import FloatArray, quantize, read_audio, subtype_for_bit_depth, write_audio
from ..audio.loudness import (
    finite_or_none,
    integrated_loudness,
    loudness_range,
    oversample_factor,
    sample_peak,
    to_db,
    true_peak,
)
from ..audio.master import MasterResult, master
from ..audio.presets import check_format, check_targets, load_preset
from ..audio.timeline import (
    EventSpan,
    EventTiming,
    Piece,
    clip_piece,
    frames_at,
    mix_pieces,
    place_events,
    resample_piece,
    shape_event,
)
from ..errors import AudioInputError, OutputExistsError, StoryError
from ..fsutil import absolute, safe_child, write_json_atomic, write_text_atomic
from ..progress import ProgressFn, no_progress
from ..story.folder import StoryFolder
from ..story.lock import holds_story_lock
from ..story.plan import TIME_EPS, Event, Story, event_slug
from ..story.timecode import FrameRate, frame_rate

log = logging.getLogger(__name__)

QC_FILE = "qc.json"
QC_VERSION = 1
SHORT_TOLERANCE_FRAMES = 2  # a render this many frames short is padded with silence; more is an error
LONG_TOLERANCE_SECONDS = 0.25  # a render up to this much too long is trimmed; more is an error
HEADER_CHECK_MARGIN_SECONDS = 60.0  # a render this much longer than planned is refused from its header alone
OUTPUT_CHANNELS = 2
NULL_FLOOR_DB = -200.0  # reported stem-null residual when stems and mix cancel exactly


@dataclass(frozen=True)
class ExportOptions:
    loudness: str | None = None  # loudness preset name; None: the story's preset
    lufs: float | None = None  # overrides the preset's integrated target
    true_peak: float | None = None  # overrides the preset's true-peak ceiling (dBTP)
    sample_rate: int | None = None  # None: the preset's (48 kHz)
    bit_depth: int | None = None  # 16, 24 or 32 (float); None: the preset's (24)
    stems: bool = False  # one stem per event
    stem_groups: bool = False  # one stem per event ``stem`` group (fx, amb, ...)
    cues: tuple[str, ...] = ("story",)  # of story, reaper, audacity, edl; qc.json is always written
    fps: float = 25.0
    force: bool = False


@dataclass(frozen=True)
class DeliveryTarget:
    preset: str
    integrated_lufs: float | None
    true_peak_dbtp: float
    tolerance_lu: float
    sample_rate: int
    bit_depth: int


@dataclass(frozen=True)
class ExportResult:
    mix: Path
    stems: tuple[Path, ...]
    cues: tuple[Path, ...]
    qc_path: Path
    qc: dict[str, Any]
    removed: tuple[Path, ...] = ()  # stale files of the previous export removed under --force

    @property
    def written(self) -> tuple[Path, ...]:
        return (self.mix, *self.stems, *self.cues, self.qc_path)

    def files_dict(self) -> dict[str, Any]:
        """The delivered files for a JSON summary, as absolute paths: ``mix``, ``stems``, ``cues``, ``qc``."""
        return {
            "mix": absolute(self.mix),
            "stems": [absolute(p) for p in self.stems],
            "cues": [absolute(p) for p in self.cues],
            "qc": absolute(self.qc_path),
        }

    def loudness_dict(self) -> dict[str, Any]:
        """What the mix measured: ``integrated_lufs`` and ``true_peak_dbtp``."""
        return {"integrated_lufs": self.qc.get("integrated_lufs"), "true_peak_dbtp": self.qc.get("true_peak_dbtp")}

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary of an export (``export --json``): files, what ``--force`` removed, loudness, target met.
        ``tell``, ``render``, ``regen`` and ``continue`` put ``files_dict`` and ``loudness_dict`` in theirs."""
        return {
            **self.files_dict(),
            "removed": [absolute(p) for p in self.removed],
            **self.loudness_dict(),
            "met": self.qc.get("met"),
        }


@holds_story_lock("export")
def export_story(
    folder: Path | StoryFolder, options: ExportOptions | None = None, progress: ProgressFn = no_progress
) -> ExportResult:
    """Mix, master and deliver the rendered events of the story in ``folder``."""
    options = options or ExportOptions()
    story_folder = folder if isinstance(folder, StoryFolder) else StoryFolder(Path(folder))
    # 1. plan and options: everything that can be wrong is found before any audio is read or file written
    story = story_folder.load()
    target = resolve_target(story, options)
    cue_names = cue_sheets.check_cue_names(options.cues)
    fps = frame_rate(options.fps)
    outputs = plan_outputs(story_folder, story, options, cue_names)
    _refuse_outside(story_folder, outputs)
    _refuse_overwrite(outputs, options.force)
    # 2. read every event render and place it on the timeline at the render rate
    render_spans = event_spans(story, story.sample_rate)
    pieces: list[Piece] = []
    for number, (event, span) in enumerate(zip(story.events, render_spans, strict=True), start=1):
        progress("read", number - 1, len(story.events))
        raw = load_event_audio(story_folder, story, event, span)
        piece = resample_piece(shape_event(raw, span, story.sample_rate), story.sample_rate, target.sample_rate)
        pieces.append(piece)
    progress("read", len(story.events), len(story.events))
    # 3. mix at the delivery rate
    frames = total_frames(story, target.sample_rate)
    pieces = [clip_piece(p, frames) for p in pieces]
    progress("master", 0, 1)
    mix = mix_pieces(pieces, frames, OUTPUT_CHANNELS)
    # 4. loudness gain and true-peak limiting: one gain curve for the mix and every stem
    mastered = master(mix, target.sample_rate, target_lufs=target.integrated_lufs, ceiling_dbtp=target.true_peak_dbtp)
    del mix
    progress("master", 1, 1)
    # 5. QC on the mix exactly as it will be stored; nothing has been written yet
    subtype = subtype_for_bit_depth(target.bit_depth)
    final_mix = quantize(mastered.audio, subtype)
    qc = build_qc(story, story_folder, target, options, mastered, final_mix, pieces, outputs, fps)
    # 6. write stems (null-tested against the mix), cue sheets, the mix, and last the QC report
    stem_paths, qc["stems_residual_dbfs"] = _write_stems(
        outputs, story, pieces, mastered.gain, final_mix, target, progress
    )
    cue_paths = _write_cues(outputs, story, story_folder, cue_names, fps)
    write_audio(outputs.mix, final_mix, target.sample_rate, subtype)
    removed = _remove_stale(story_folder, outputs) if options.force else ()
    write_json_atomic(outputs.qc, qc)
    progress("write", 1, 1)
    return ExportResult(outputs.mix, stem_paths, cue_paths, outputs.qc, qc, removed)


def resolve_target(story: Story, options: ExportOptions) -> DeliveryTarget:
    """Preset (or the story's) plus ``--lufs``/``--true-peak``/format overrides, validated."""
    preset = load_preset(options.loudness or story.preset)
    lufs = options.lufs if options.lufs is not None else preset.integrated_lufs
    ceiling = options.true_peak if options.true_peak is not None else preset.true_peak_dbtp
    check_targets(lufs, ceiling)
    rate = options.sample_rate if options.sample_rate is not None else preset.sample_rate  # 0 is refused, not
    depth = options.bit_depth if options.bit_depth is not None else preset.bit_depth  # taken as "the preset's"
    check_format(rate, depth)
    return DeliveryTarget(preset.name, lufs, ceiling, preset.tolerance_lu, rate, depth)


@dataclass(frozen=True)
class PlannedOutputs:
    mix: Path
    event_stems: dict[int, Path]
    group_stems: dict[str, Path]
    cues: dict[str, Path]
    qc: Path

    def all(self) -> list[Path]:
        return [*self.event_stems.values(), *self.group_stems.values(), *self.cues.values(), self.mix, self.qc]


def plan_outputs(
    folder: StoryFolder, story: Story, options: ExportOptions, cue_names: tuple[str, ...]
) -> PlannedOutputs:
    event_stems = (
        {e.index: folder.stems_dir / f"{e.index:02d}-{event_slug(e.caption)}.wav" for e in story.events}
        if options.stems
        else {}
    )
    group_stems = (  # their own folder: stems/ and stem-groups/ each sum to the mix
        {g: folder.stem_groups_dir / f"{g}.wav" for g in dict.fromkeys(e.stem for e in story.events)}
        if options.stem_groups
        else {}
    )
    cues = {name: folder.cues_dir / cue_sheets.CUE_FILES[name] for name in cue_names}
    return PlannedOutputs(folder.mix_path, event_stems, group_stems, cues, folder.cues_dir / QC_FILE)


def load_event_audio(folder: StoryFolder, story: Story, event: Event, span: EventSpan) -> FloatArray:
    """The raw render of ``event``, validated, as stereo ``(2, span.render_frames)`` at the story rate."""
    where = f"event {event.index}"
    regen = f"`audiostory regen {folder.root} {event.index} --seed {event.seed}`"
    if event.status == "planned" or not event.file:
        raise StoryError(f"{where} is not rendered yet; run `audiostory render {folder.root}` first")
    if story.is_stale(event):
        raise StoryError(
            f"{where} was changed after it was rendered (its render hash no longer matches the plan); "
            f"run `audiostory render {folder.root}` to re-render it"
        )
    path = folder.resolve(event.file)
    if not path.is_file():
        raise StoryError(
            f"{where}: its render {event.file} is missing from {folder.root}; restore it with "
            f"`audiostory render {folder.root}` (same seed and settings)"
        )
    longest = span.render_frames / story.sample_rate + HEADER_CHECK_MARGIN_SECONDS  # refused before reading
    try:
        audio, rate = read_audio(path, what=f"{where} render", max_seconds=longest)
    except AudioInputError as exc:
        raise AudioInputError(f"{exc}; re-render it with {regen}") from exc
    if rate != story.sample_rate:
        raise AudioInputError(
            f"{where} render {event.file} is {rate} Hz but the story's renders are {story.sample_rate} Hz; "
            f"re-render it with {regen}"
        )
    have, need = audio.shape[1], span.render_frames
    if have < need - SHORT_TOLERANCE_FRAMES or have > need + round(LONG_TOLERANCE_SECONDS * rate):
        raise AudioInputError(
            f"{where} render {event.file} is {have / rate:.3f} s ({have} samples) but the plan needs "
            f"{need / rate:.3f} s ({need} samples: duration plus crossfade tail); re-render it with {regen}"
        )
    if have < need:
        audio = np.pad(audio, ((0, 0), (0, need - have)))
    audio = audio[:, :need]
    if audio.shape[0] == 1:
        audio = np.repeat(audio, OUTPUT_CHANNELS, axis=0)
    return np.ascontiguousarray(audio, dtype=np.float32)


def last_export_options(folder: Path | StoryFolder) -> ExportOptions | None:
    """The options of the story's previous export (from ``cues/qc.json``) with ``force=True``, if there was one.

    ``render``/``regen`` use it so that refreshed deliverables keep the user's preset, stems and cue formats.
    """
    story_folder = folder if isinstance(folder, StoryFolder) else StoryFolder(Path(folder))
    path = story_folder.cues_dir / QC_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))["options"]
        known = {f.name for f in dataclasses.fields(ExportOptions)}
        values = {k: v for k, v in raw.items() if k in known}
        values["cues"] = tuple(values.get("cues", ("story",)))
        return dataclasses.replace(ExportOptions(**values), force=True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring the previous export settings in %s (%s); using the defaults", path, exc)
        return None


# -- writing ----------------------------------------------------------------------------------------------


def _refuse_outside(folder: StoryFolder, outputs: PlannedOutputs) -> None:
    """A symlinked ``cues/``, ``stems/``, ``stem-groups/`` or ``mix.wav`` must not make an export write outside
    the story folder."""
    for path in outputs.all():
        safe_child(folder.root, path.relative_to(folder.root).as_posix(), what="output path")


def _refuse_overwrite(outputs: PlannedOutputs, force: bool) -> None:
    if force:
        return
    existing = [p for p in outputs.all() if p.exists()]
    if existing:
        more = f" (and {len(existing) - 1} more outputs)" if len(existing) > 1 else ""
        raise OutputExistsError(f"{existing[0]} already exists{more}; use --force to replace the previous export")


def _write_stems(
    outputs: PlannedOutputs,
    story: Story,
    pieces: list[Piece],
    gain: FloatArray,
    final_mix: FloatArray,
    target: DeliveryTarget,
    progress: ProgressFn,
) -> tuple[tuple[Path, ...], dict[str, float]]:
    """Write event and group stems (each ``gain × piece`` on the full timeline) and null-test each set.

    Returns the paths and, per set, the peak of ``Σ stems − mix`` in dBFS as stored (after quantisation);
    ``NULL_FLOOR_DB`` means they null exactly.
    """
    subtype = subtype_for_bit_depth(target.bit_depth)
    frames = final_mix.shape[1]
    sets: list[tuple[str, list[tuple[Path, list[Piece]]]]] = []
    if outputs.event_stems:
        by_event = [(outputs.event_stems[e.index], [p]) for e, p in zip(story.events, pieces, strict=True)]
        sets.append(("events", by_event))
    if outputs.group_stems:
        groups: dict[str, list[Piece]] = {}
        for event, piece in zip(story.events, pieces, strict=True):
            groups.setdefault(event.stem, []).append(piece)
        sets.append(("groups", [(outputs.group_stems[name], members) for name, members in groups.items()]))
    total = sum(len(members) for _, members in sets)
    written: list[Path] = []
    residual: dict[str, float] = {}
    for kind, tracks in sets:
        summed = np.zeros((OUTPUT_CHANNELS, frames), dtype=np.float64)
        for path, members in tracks:
            progress("write", len(written), total + 1)
            track = np.zeros((OUTPUT_CHANNELS, frames), dtype=np.float32)
            for piece in members:
                track[:, piece.offset : piece.stop] += piece.audio * gain[piece.offset : piece.stop]
            stored = quantize(track, subtype)
            summed += stored
            written.append(write_audio(path, stored, target.sample_rate, subtype))
        residual[kind] = round(max(NULL_FLOOR_DB, to_db(float(np.max(np.abs(summed - final_mix))))), 2)
    return tuple(written), residual


def _write_cues(
    outputs: PlannedOutputs, story: Story, folder: StoryFolder, names: tuple[str, ...], fps: FrameRate
) -> tuple[Path, ...]:
    clips = {index: path.name for index, path in outputs.event_stems.items()}
    cues = cues_from_story(story, clips)
    texts = {
        "story": lambda: cue_sheets.story_csv(cues, fps),
        "reaper": lambda: cue_sheets.reaper_csv(cues),
        "audacity": lambda: cue_sheets.audacity_labels(cues),
        "edl": lambda: cue_sheets.cmx3600_edl(cues, fps, folder.root.resolve().name),
    }
    return tuple(write_text_atomic(outputs.cues[name], texts[name]()) for name in names)


def _remove_stale(folder: StoryFolder, outputs: PlannedOutputs) -> tuple[Path, ...]:
    """Remove stems/cue files the previous export wrote (listed in its qc.json) that this export did not."""
    path = outputs.qc
    if not path.is_file():
        return ()
    try:
        previous = json.loads(path.read_text(encoding="utf-8")).get("outputs", [])
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("cannot read the previous %s (%s); stale stems, if any, are left in place", path, exc)
        return ()
    keep = {p.resolve() for p in outputs.all()}
    removed: list[Path] = []
    for relative in previous if isinstance(previous, list) else []:
        if not isinstance(relative, str) or not relative.startswith(("stems/", "stem-groups/", "cues/")):
            continue
        candidate = safe_child(folder.root, relative, what="previous export file")
        if candidate not in keep and candidate.is_file():
            candidate.unlink()
            removed.append(candidate)
    return tuple(removed)


# -- QC ---------------------------------------------------------------------------------------------------


def build_qc(
    story: Story,
    folder: StoryFolder,
    target: DeliveryTarget,
    options: ExportOptions,
    mastered: MasterResult,
    final_mix: FloatArray,
    pieces: list[Piece],
    outputs: PlannedOutputs,
    fps: FrameRate,
) -> dict[str, Any]:
    """The QC report (cues/qc.json): measured on the mix exactly as written."""
    rate = target.sample_rate
    integrated = integrated_loudness(final_mix, rate)
    peak_db = to_db(true_peak(final_mix, rate))
    loud_ok = (
        None
        if target.integrated_lufs is None
        else (math.isfinite(integrated) and abs(integrated - target.integrated_lufs) <= target.tolerance_lu)
    )
    peak_ok = peak_db <= target.true_peak_dbtp + 1e-6
    root = folder.root
    reasons: list[str] = []  # why the target was not met, one sentence each
    if loud_ok is False and target.integrated_lufs is not None:
        reasons.append(
            mastered.shortfall
            or (
                f"the written mix measures {integrated:.2f} LUFS, {integrated - target.integrated_lufs:+.2f} LU from "
                f"the target (tolerance ±{target.tolerance_lu:g} LU)"
            )
        )
    if not peak_ok:
        reasons.append(
            f"the written mix's true peak {peak_db:.2f} dBTP is over the {target.true_peak_dbtp:g} dBTP "
            f"ceiling (inter-sample peaks from resampling to {rate} Hz or {target.bit_depth}-bit "
            "quantisation); lower --true-peak a little"
        )

    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix()

    return {
        "qc_version": QC_VERSION,
        "story": root.resolve().name,
        "mix": rel(outputs.mix),
        "sample_rate": rate,
        "bit_depth": target.bit_depth,
        "channels": int(final_mix.shape[0]),
        "frames": int(final_mix.shape[1]),
        "duration": round(final_mix.shape[1] / rate, 6),
        "integrated_lufs": finite_or_none(integrated),
        "loudness_range_lu": _maybe_round(loudness_range(final_mix, rate)),
        "true_peak_dbtp": finite_or_none(peak_db),
        "sample_peak_dbfs": finite_or_none(to_db(sample_peak(final_mix))),
        "true_peak_oversampling": oversample_factor(rate),
        "silent": not math.isfinite(integrated),
        "target": {
            "preset": target.preset,
            "integrated_lufs": target.integrated_lufs,
            "true_peak_dbtp": target.true_peak_dbtp,
            "tolerance_lu": target.tolerance_lu,
        },
        "met": bool(peak_ok and loud_ok is not False),
        "checks": {"integrated": loud_ok, "true_peak": peak_ok},
        "not_met_because": reasons,
        "processing": {
            "input_lufs": finite_or_none(mastered.input_lufs),
            "static_gain_db": round(mastered.static_gain_db, 3),
            "max_limiter_reduction_db": round(mastered.max_reduction_db, 3),
            "passes": mastered.passes,
        },
        "events": _event_report(story, pieces, mastered.gain, rate),
        "stems_residual_dbfs": {},  # filled in as the stems are written: peak of Σ stems − mix, per stem set
        "outputs": [rel(p) for p in outputs.all()],
        "options": {**dataclasses.asdict(options), "cues": list(options.cues), "force": False},
        "fps": fps.label,
    }


def _event_report(story: Story, pieces: list[Piece], gain: FloatArray, rate: int) -> list[dict[str, Any]]:
    report = []
    for event, span, piece in zip(story.events, event_spans(story, rate), pieces, strict=True):
        lo, hi = max(span.start, piece.offset), min(span.end + span.fade_out, piece.stop)
        audio = piece.audio[:, lo - piece.offset : hi - piece.offset] * gain[lo:hi]
        lufs = integrated_loudness(audio, rate)
        report.append(
            {
                "index": event.index,
                "caption": event.caption,
                "stem": event.stem,
                "start": event.start,
                "end": round(event.end, 6),
                "integrated_lufs": finite_or_none(lufs),
                "true_peak_dbtp": finite_or_none(to_db(true_peak(audio, rate))),
                "silent": not math.isfinite(lufs),
            }
        )
    return report


def _maybe_round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# -- the plan as plain timeline data (``audio`` does not know the story plan) -------------------------


def event_timings(story: Story) -> list[EventTiming]:
    """Each event's seconds on the timeline; contiguous events (within ``TIME_EPS``) share their boundary."""
    timings: list[EventTiming] = []
    for position, event in enumerate(story.events):
        nxt = story.events[position + 1] if position + 1 < len(story.events) else None
        end = nxt.start if nxt is not None and abs(nxt.start - event.end) <= TIME_EPS else event.end
        timings.append(
            EventTiming(event.index, event.start, end, story.crossfade_after(event), keep_head=event.status == "source")
        )
    return timings


def event_spans(story: Story, rate: int) -> list[EventSpan]:
    """Sample positions of every event of ``story`` at ``rate`` (``audio.timeline``'s convention)."""
    return place_events(event_timings(story), rate, story.settings.crossfade_shape)


def total_frames(story: Story, rate: int) -> int:
    """The mix's length in samples at ``rate``."""
    return frames_at(story.total_duration, rate)


def cues_from_story(story: Story, clips: dict[int, str] | None = None) -> list[cue_sheets.Cue]:
    """One cue per event at its planned times; ``clips`` names the audio file per event (default: its render)."""
    clips = clips or {}
    return [
        cue_sheets.Cue(
            e.index, e.start, e.end, e.caption, clips.get(e.index, PurePosixPath(e.file).name if e.file else "")
        )
        for e in story.events
    ]
