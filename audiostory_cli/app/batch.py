"""Many stories from one JSONL file, one model load per process: what ``audiostory batch JOBS --out DIR`` runs.

Each line of the jobs file is one ``tell``: ``prompt`` and ``duration``, optionally ``name`` (the folder,
default: from the prompt), ``preset``, ``style``, ``seed``, ``steps``, ``guidance``, ``stems``, ``cues`` and
``model``. Each job becomes the ordinary story folder ``DIR/NAME`` (``pipeline.tell``); ``DIR/batch.json``
lists every job's status, paths (relative to DIR), seed and time.

* Resumable: a finished story is skipped, a planned or half-rendered one is finished (``render`` semantics),
  one rendered but not exported is exported. A folder holding something else is never touched.
* Isolated: a bad line or a failing job is recorded (line number, one-line error) and the others go on.
* Reproducible: a job without ``seed`` gets one derived from its name, prompt and duration, so the same line
  gives the same audio on every run and whatever the number of processes.
* Across processes: under ``torchrun``/``accelerate launch`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` in the
  environment) the jobs are dealt out between processes (each on its own GPU); a gloo process group carries the
  out-folder check from rank 0 and the results back to rank 0, which writes batch.json. DIR must be a folder every
  process sees (on several nodes: shared storage).

Every write to a job's story folder happens in ``run_job``; batch.json is written only by ``write_batch_file``.
Torch-free at import.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import difflib
import gc
import hashlib
import json
import math
import os
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..audio.cues import split_cue_list
from ..errors import AudiostoryError, InputError, OutputExistsError, StoryError, UsageError
from ..fsutil import write_json_atomic
from ..progress import ProgressFn, no_progress
from ..story.folder import StoryFolder
from .pipeline import DEFAULT_MODEL, MAX_SEED, PlanOptions, check_prompt, check_tell_inputs

if TYPE_CHECKING:
    from ..model import AudioStoryModel
    from ..runtime import Runtime
    from .export import ExportOptions

JOB_KEYS = ("prompt", "duration", "name", "preset", "style", "seed", "steps", "guidance", "stems", "cues", "model")
ALL_CUES = ("story", "reaper", "audacity", "edl")
BATCH_FILE = "batch.json"
BATCH_VERSION = 1
MAX_NAME_CHARS = 100
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_COLLECTIVE_TIMEOUT = _dt.timedelta(days=7)  # ranks that finish early wait for the slowest at the final gather

Status = Literal["done", "failed", "pending"]
JobState = Literal["new", "render", "export", "done"]


# -- the jobs file -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One line of the jobs file, validated; ``seed`` is the given one or derived from the line."""

    line: int
    name: str
    prompt: str
    duration: float
    seed: int
    model: str
    preset: str = "broadcast"
    style: str | None = None
    steps: int | None = None
    guidance: float | None = None
    stems: bool = False
    cues: tuple[str, ...] = ALL_CUES

    def plan_options(self) -> PlanOptions:
        return PlanOptions(
            total_duration=self.duration,
            preset=self.preset,
            style=self.style,
            seed=self.seed,
            steps=self.steps,
            guidance=self.guidance,
        )

    def export_options(self) -> ExportOptions:
        from .export import ExportOptions

        return ExportOptions(loudness=self.preset, stems=self.stems, cues=self.cues, force=True)  # as `tell`


@dataclass(frozen=True)
class LineError:
    line: int
    message: str
    name: str | None = None

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class JobsFile:
    path: Path
    jobs: list[Job] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    lines: int = 0


class _BadLine(Exception):
    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


def read_jobs(path: Path, *, default_model: str = DEFAULT_MODEL) -> JobsFile:
    """Read and validate every line; a bad line is collected with its number, a bad file raises ``InputError``."""
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"jobs file {path} not found; give a JSONL file with one job a line (see `audiostory batch --help`)"
        )
    if not path.is_file():
        raise InputError(f"jobs file {path} is not a file; give a JSONL file with one job a line")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InputError(f"cannot read jobs file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"jobs file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    found = JobsFile(path=path)
    first_line: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        found.lines += 1
        try:
            job, named = _parse_line(raw, number, default_model)
        except _BadLine as exc:
            found.errors.append(LineError(number, str(exc), exc.name))
            continue
        key = job.name.casefold()
        if key in first_line:
            hint = 'give each job its own "name"' if named else 'its folder name comes from the prompt; add a "name"'
            found.errors.append(
                LineError(number, f"name {job.name!r} is already used on line {first_line[key]}; {hint}", job.name)
            )
            continue
        first_line[key] = number
        found.jobs.append(job)
    if found.lines == 0:
        raise InputError(
            f"jobs file {path} has no jobs; write one JSON object a line, e.g. "
            '{"prompt": "rain on a tin roof", "duration": 20}'
        )
    return found


def _parse_line(text: str, number: int, default_model: str) -> tuple[Job, bool]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _BadLine(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise _BadLine(f'must be a JSON object with "prompt" and "duration", got {_kind(obj)}')
    for key in obj:
        if key not in JOB_KEYS:
            close = difflib.get_close_matches(str(key), JOB_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _BadLine(f"unknown key {key!r}{hint}; a job has {', '.join(JOB_KEYS)}")
    prompt = _field(obj, "prompt", str, required=True)
    name = _field(obj, "name", str)
    duration = _number(obj, "duration", required=True)
    assert duration is not None  # required: _number raised otherwise
    seed = _integer(obj, "seed")
    options = PlanOptions(
        total_duration=duration,
        preset=_field(obj, "preset", str) or "broadcast",
        style=_field(obj, "style", str),
        seed=seed,
        steps=_integer(obj, "steps"),
        guidance=_number(obj, "guidance"),
    )
    stems = _field(obj, "stems", bool) or False
    cues = _cues(obj)
    model = _field(obj, "model", str) or default_model
    try:
        prompt = check_prompt(prompt)
        cue_names = check_tell_inputs(prompt, options, cues=cues, model=model)
    except AudiostoryError as exc:
        raise _BadLine(_as_job_message(str(exc)), name) from None
    if name is None:
        from ..story.plan import event_slug

        name = event_slug(prompt, max_words=5)
    else:
        _check_name(name)
    if seed is None:
        seed = derive_seed(name, prompt, duration)
    job = Job(
        line=number,
        name=name,
        prompt=prompt,
        duration=duration,
        seed=seed,
        model=model,
        preset=options.preset,
        style=options.style,
        steps=options.steps,
        guidance=options.guidance,
        stems=stems,
        cues=cue_names,
    )
    return job, "name" in obj


def derive_seed(name: str, prompt: str, duration: float) -> int:
    """The seed of a job that gives none: the same line always plans and renders the same story."""
    digest = hashlib.sha256(json.dumps([name, prompt, duration]).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % (MAX_SEED - 1000)


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number"
    )


def _field(obj: Mapping[str, Any], key: str, kind: type, *, required: bool = False) -> Any:
    if key not in obj or (obj[key] is None and not required and kind is not bool):
        if required:
            raise _BadLine(f'missing "{key}"')
        return None
    value = obj[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        wanted = {str: "a string", bool: "true or false"}[kind]
        raise _BadLine(f'"{key}" must be {wanted}, got {_kind(value)}')
    return value


def _number(obj: Mapping[str, Any], key: str, *, required: bool = False) -> float | None:
    if key not in obj or obj[key] is None:
        if required:
            raise _BadLine(f'missing "{key}"' + (" (seconds, e.g. 20)" if key == "duration" else ""))
        return None
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _BadLine(f'"{key}" must be a number, got {_kind(value)}')
    return float(value)


def _integer(obj: Mapping[str, Any], key: str) -> int | None:
    value = _number(obj, key)
    if value is None:
        return None
    if not value.is_integer():
        raise _BadLine(f'"{key}" must be a whole number, got {obj[key]}')
    return int(value)


def _cues(obj: Mapping[str, Any]) -> tuple[str, ...]:
    value = obj.get("cues", None)
    if value is None:
        return ALL_CUES
    if isinstance(value, str):
        return split_cue_list(value)
    if isinstance(value, list) and all(isinstance(name, str) for name in value):
        return tuple(value)
    raise _BadLine(f'"cues" must be a list of names or a comma-separated string, got {_kind(value)}')


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name) or len(name) > MAX_NAME_CHARS or name == BATCH_FILE:
        raise _BadLine(
            f"\"name\" {name!r} is not a plain folder name; use letters, digits, '.', '_' and '-' "
            f"(at most {MAX_NAME_CHARS}, not starting with '.' or '-')",
            name,
        )


def _as_job_message(message: str) -> str:
    """The shared checks name ``tell``'s flags (``--duration 0 is out of range``); a job line names keys."""
    for key in JOB_KEYS:
        message = message.replace(f"--{key} ", f"{key} ")
    return message


def one_line(exc: BaseException) -> str:
    """What went wrong, on one line without control characters (for batch.json and the terminal)."""
    if isinstance(exc, AudiostoryError):
        text = str(exc)
    elif isinstance(exc, OSError):
        text = f"{exc.strerror or exc}" + (f" ({exc.filename})" if getattr(exc, "filename", None) else "")
    elif isinstance(exc, MemoryError):
        text = "out of memory; try --offload, a shorter duration or --device cpu"
    else:
        text = f"internal error: {type(exc).__name__}: {exc}"
    return " ".join("".join(" " if unicodedata.category(c) == "Cc" else c for c in text).split())


# -- the out folder and batch.json ---------------------------------------------------------------------------


@dataclass
class JobRecord:
    """One job's line in batch.json; paths are relative to the batch folder."""

    line: int
    name: str | None
    status: Status
    seed: int | None = None
    model: str | None = None
    skipped: bool = False  # already delivered before this run: nothing was done
    rendered: int = 0  # events rendered in this run
    seconds: float = 0.0  # wall time spent on it in this run
    rank: int | None = None
    error: str | None = None
    folder: str | None = None
    story: str | None = None
    mix: str | None = None
    stems: list[str] = field(default_factory=list)
    cues: list[str] = field(default_factory=list)
    qc: str | None = None
    job: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def pending(cls, job: Job) -> JobRecord:
        return cls(
            line=job.line,
            name=job.name,
            status="pending",
            seed=job.seed,
            model=job.model,
            folder=job.name,
            job=job_spec(job),
        )

    @classmethod
    def bad_line(cls, error: LineError) -> JobRecord:
        return cls(line=error.line, name=error.name, status="failed", error=error.message)


def job_spec(job: Job) -> dict[str, Any]:
    return {
        "prompt": job.prompt,
        "duration": job.duration,
        "preset": job.preset,
        "style": job.style,
        "seed": job.seed,
        "steps": job.steps,
        "guidance": job.guidance,
        "stems": job.stems,
        "cues": list(job.cues),
        "model": job.model,
    }


def check_out_dir(out: Path) -> None:
    """DIR is missing, empty, or an earlier batch's folder (holds batch.json); anything else is refused."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out {out} is a file; choose a folder for the stories")
    if out.is_dir() and any(out.iterdir()) and not (out / BATCH_FILE).is_file():
        raise OutputExistsError(
            f"--out {out} holds other files and no {BATCH_FILE}; choose a new or empty folder "
            "(or the --out of an earlier batch, to resume it)"
        )


def read_batch_file(out: Path) -> dict[str, dict[str, Any]]:
    """The previous run's records by job name (empty if there is no batch.json)."""
    path = Path(out) / BATCH_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        records = data["jobs"]
        if data.get("batch_version") != BATCH_VERSION or not isinstance(records, list):
            raise ValueError("not a batch file")
        return {r["name"]: r for r in records if isinstance(r, dict) and isinstance(r.get("name"), str)}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputExistsError(
            f"{path} is not a batch file this version wrote ({exc}); choose another --out or move that file away"
        ) from exc


def write_batch_file(out: Path, jobs_path: Path, records: Sequence[JobRecord], *, processes: int) -> Path:
    """batch.json, atomically: every job's record in line order and a summary."""
    ordered = sorted(records, key=lambda r: r.line)
    counts = {status: sum(r.status == status for r in ordered) for status in ("done", "failed", "pending")}
    return write_json_atomic(
        Path(out) / BATCH_FILE,
        {
            "batch_version": BATCH_VERSION,
            "jobs_file": str(Path(jobs_path).resolve()),
            "updated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "processes": processes,
            "summary": {"jobs": len(ordered), **counts, "skipped": sum(r.skipped for r in ordered)},
            "jobs": [r.to_json() for r in ordered],
        },
    )


# -- one job -------------------------------------------------------------------------------------------------


def inspect_job(job: Job, out: Path, previous: Mapping[str, Any] | None = None) -> JobState:
    """What a run still has to do for ``job``; a folder holding something else, or another story, raises."""
    folder = StoryFolder(Path(out) / job.name)
    if not folder.root.exists() or (folder.root.is_dir() and not folder.content()):
        return "new"
    if not folder.exists():
        raise OutputExistsError(
            f'{folder.root} holds other files and no story.json; move them away or give the job another "name"'
        )
    story = folder.load()
    changed = _changed_fields(job, story, previous)
    if changed:
        raise OutputExistsError(
            f"{folder.root} holds a story whose {', '.join(changed)} differ from this line; "
            'delete that folder to make it again, or give the job another "name"'
        )
    if any(story.is_stale(event) for event in story.events):
        return "render"
    return "done" if is_delivered(folder, job.export_options()) else "export"


def _changed_fields(job: Job, story: Any, previous: Mapping[str, Any] | None) -> list[str]:
    from .pipeline import render_settings

    settings = render_settings(job.plan_options())
    changed = [
        name
        for name, differs in (
            ("prompt", story.prompt != job.prompt),
            ("duration", abs(story.total_duration - job.duration) > 1e-9),
            ("preset", story.preset != job.preset),
            ("style", story.style != job.style),
            ("steps", story.settings.steps != settings.steps),
            ("guidance", story.settings.guidance != settings.guidance),
        )
        if differs
    ]
    if previous:  # the seed and model the folder was made with are in the earlier batch.json
        changed += [
            key for key in ("seed", "model") if previous.get(key) is not None and previous[key] != getattr(job, key)
        ]
    return changed


def is_delivered(folder: StoryFolder, options: ExportOptions) -> bool:
    """Exported after the last change to story.json, with these stems and cue sheets, every output present."""
    from .export import QC_FILE

    qc_path = folder.cues_dir / QC_FILE
    try:
        if qc_path.stat().st_mtime_ns < folder.story_path.stat().st_mtime_ns:
            return False
        qc = json.loads(qc_path.read_text(encoding="utf-8"))
        done = qc["options"]
        if (done.get("loudness"), bool(done.get("stems")), tuple(done.get("cues") or ())) != (
            options.loudness,
            options.stems,
            tuple(options.cues),
        ):
            return False
        return all((folder.root / name).is_file() for name in qc["outputs"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


class ModelCache:
    """One model at a time, loaded on first use; a model that fails to load fails its jobs without retrying."""

    def __init__(self, load: Callable[[str], AudioStoryModel]) -> None:
        self._load = load
        self._ref: str | None = None
        self._model: AudioStoryModel | None = None
        self._error: BaseException | None = None
        self.loads = 0
        self.load_seconds = 0.0  # spent loading, so that a job's time is its own work

    def get(self, ref: str) -> AudioStoryModel:
        if ref != self._ref:
            self.release()
            self._ref = ref
            started = time.perf_counter()
            try:
                self._model = self._load(ref)
                self.loads += 1
            except Exception as exc:
                self._error = exc
                raise
            finally:
                self.load_seconds += time.perf_counter() - started
        if self._error is not None:
            raise self._error
        assert self._model is not None
        return self._model

    def release(self) -> None:
        if self._model is None:
            self._ref, self._error = None, None
            return
        cuda = any(p.is_cuda for p in self._model.dit.parameters())
        self._model, self._ref, self._error = None, None, None
        gc.collect()
        if cuda:
            import torch

            torch.cuda.empty_cache()


def run_job(
    job: Job,
    out: Path,
    models: ModelCache,
    runtime: Runtime,
    *,
    previous: Mapping[str, Any] | None = None,
    progress: ProgressFn = no_progress,
    offload: bool = False,
    rank: int = 0,
) -> JobRecord:
    """Make, finish or skip one job's story folder ``out/NAME``; every write to it happens in here.

    A failure becomes a failed record with a one-line error; only an interruption is raised.
    """
    from .export import export_story
    from .pipeline import deliver_story, tell

    folder = StoryFolder(Path(out) / job.name)
    record = JobRecord.pending(job)
    record.rank = rank
    if previous and folder.exists():  # batch.json keeps the seed and model a story was made with until it is remade
        record.seed, record.model = previous.get("seed", job.seed), previous.get("model", job.model)
    started, loading = time.perf_counter(), models.load_seconds
    try:
        state = inspect_job(job, out, previous)
        if state == "export":  # every event rendered: no model needed
            export_story(folder, job.export_options(), progress)
        elif state in ("new", "render"):
            model = models.get(job.model)
            if state == "new":
                delivery = tell(
                    job.prompt,
                    job.plan_options(),
                    folder,
                    model,
                    runtime,
                    export_options=job.export_options(),
                    progress=progress,
                    offload=offload,
                )
            else:
                planned_with = folder.load().model
                if planned_with != model.name:
                    raise InputError(
                        f"{folder.root} was planned with model {planned_with!r}, but the job asks for "
                        f'{model.name!r}; delete that folder or set "model" to {planned_with!r}'
                    )
                delivery = deliver_story(
                    folder, model, runtime, export_options=job.export_options(), progress=progress, offload=offload
                )
            record.rendered = len(delivery.render.rendered)
        record.skipped = state == "done"
        _fill_paths(record, folder)
        record.status = "done"
    except Exception as exc:
        record.status, record.error = "failed", one_line(exc)
    record.seconds = round(time.perf_counter() - started - (models.load_seconds - loading), 3)
    return record


def _fill_paths(record: JobRecord, folder: StoryFolder) -> None:
    from .export import QC_FILE

    qc = json.loads((folder.cues_dir / QC_FILE).read_text(encoding="utf-8"))
    name = folder.root.name
    outputs = [f"{name}/{path}" for path in qc["outputs"]]
    record.story, record.mix = f"{name}/story.json", f"{name}/{qc['mix']}"
    record.qc = f"{name}/cues/{QC_FILE}"
    record.stems = [p for p in outputs if p.startswith(f"{name}/stems/")]
    record.cues = [p for p in outputs if p.startswith(f"{name}/cues/") and p != record.qc]


# -- processes -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """This process's place in the launch: ``torchrun``/``accelerate launch`` set these in the environment."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def launch_from_env(environ: Mapping[str, str] | None = None) -> Launch:
    env = os.environ if environ is None else environ
    try:
        rank, world = int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UsageError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers; launch with `torchrun "
            "--nproc_per_node N -m audiostory_cli batch ...` or unset them"
        ) from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise UsageError(f"RANK {rank} does not fit WORLD_SIZE {world}; launch with torchrun or unset them")
    return Launch(rank=rank, world=world, local_rank=local)


def device_for(launch: Launch, flag: str) -> str:
    """Each process of a multi-process launch renders on its own GPU (``cuda:LOCAL_RANK``)."""
    if launch.world == 1 or flag not in ("auto", "cuda"):
        return flag
    import torch

    if not torch.cuda.is_available():
        return flag
    return f"cuda:{launch.local_rank % torch.cuda.device_count()}"


def deal(jobs: Sequence[Job], launch: Launch) -> list[Job]:
    """This process's jobs: dealt round-robin in (model, line) order, so each process loads each model once."""
    first: dict[str, int] = {}
    for job in jobs:
        first.setdefault(job.model, len(first))
    ordered = sorted(jobs, key=lambda job: (first[job.model], job.line))
    return [job for number, job in enumerate(ordered) if number % launch.world == launch.rank]


class _Solo:
    """The collectives of a single process."""

    def broadcast(self, obj: Any) -> Any:
        return obj

    def gather(self, obj: Any) -> list[Any]:
        return [obj]


class _Gloo:
    """Python objects between the launched processes over a CPU (gloo) process group."""

    def __init__(self, launch: Launch) -> None:
        self.launch = launch

    def broadcast(self, obj: Any) -> Any:
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        import torch.distributed as dist

        boxes: list[Any] = [None] * self.launch.world if self.launch.main else []
        dist.gather_object(obj, boxes if self.launch.main else None, dst=0)
        return boxes


@contextlib.contextmanager
def process_group(launch: Launch) -> Iterator[_Solo | _Gloo]:
    if launch.world == 1:
        yield _Solo()
        return
    import torch.distributed as dist

    if not dist.is_available():
        raise UsageError("this torch build has no torch.distributed; run the batch in one process")
    dist.init_process_group("gloo", rank=launch.rank, world_size=launch.world, timeout=_COLLECTIVE_TIMEOUT)
    try:
        yield _Gloo(launch)
    finally:
        dist.destroy_process_group()


# -- the batch -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchResult:
    records: list[JobRecord]  # every job's, on rank 0; this process's own elsewhere
    failed: int  # over the whole batch, on every rank
    model_loads: int  # in this process
    path: Path


def run_batch(
    jobs: JobsFile,
    out: Path,
    *,
    load: Callable[[str], AudioStoryModel],
    runtime: Runtime,
    launch: Launch = Launch(),
    progress: ProgressFn = no_progress,
    on_result: Callable[[JobRecord], None] | None = None,
    offload: bool = False,
) -> BatchResult:
    """Run this process's share of ``jobs`` into ``out``; rank 0 gathers every record and writes batch.json.

    ``progress("stories", done, total)`` counts the whole batch on rank 0 (other processes' stories are seen
    as their folders are delivered). An out folder that is refused raises on every rank.
    """
    out = Path(out)
    with process_group(launch) as group:
        setup: tuple[str, Any] = ("ok", None)
        if launch.main:
            try:
                setup = ("ok", _prepare_out(out, jobs, launch))
            except AudiostoryError as exc:
                setup = ("error", (str(exc), exc.exit_code))
        setup = group.broadcast(setup)
        if setup[0] == "error":
            error = OutputExistsError(setup[1][0])
            error.exit_code = setup[1][1]
            raise error
        previous: dict[str, dict[str, Any]] = setup[1]
        mine = deal(jobs.jobs, launch)
        models = ModelCache(load)
        records: list[JobRecord] = []
        watcher = _Watcher(jobs.jobs, mine, out, progress) if launch.main else None
        try:
            with watcher or contextlib.nullcontext():
                for job in mine:
                    record = run_job(
                        job,
                        out,
                        models,
                        runtime,
                        previous=previous.get(job.name),
                        progress=progress,
                        offload=offload,
                        rank=launch.rank,
                    )
                    records.append(record)
                    if watcher is not None:
                        watcher.finished(job.name)
                    if on_result is not None:
                        on_result(record)
        except KeyboardInterrupt:
            if launch.world == 1:  # keep what is known; the rest stays pending
                done = {r.line: r for r in records}
                write_batch_file(out, jobs.path, _all_records(jobs, done), processes=1)
            raise
        finally:
            loads = models.loads
            models.release()
        gathered = group.gather([r.to_json() for r in records])
        failed = 0
        if launch.main:
            done = {r["line"]: JobRecord(**r) for part in gathered for r in part}
            records = _all_records(jobs, done)
            write_batch_file(out, jobs.path, records, processes=launch.world)
            failed = sum(r.status == "failed" for r in records)
        failed = group.broadcast(failed)
    return BatchResult(records=records, failed=failed, model_loads=loads, path=out / BATCH_FILE)


def _prepare_out(out: Path, jobs: JobsFile, launch: Launch) -> dict[str, dict[str, Any]]:
    """Rank 0: refuse a folder holding other things, read the earlier batch.json, claim a new folder at once."""
    check_out_dir(out)
    previous = read_batch_file(out)
    if not (out / BATCH_FILE).is_file():
        write_batch_file(out, jobs.path, _all_records(jobs, {}), processes=launch.world)
    return previous


def _all_records(jobs: JobsFile, done: Mapping[int, JobRecord]) -> list[JobRecord]:
    records = [done.get(job.line) or JobRecord.pending(job) for job in jobs.jobs]
    return records + [JobRecord.bad_line(error) for error in jobs.errors]


class _Watcher:
    """Rank 0's view of the whole batch: its own results, plus other processes' story folders as they finish."""

    def __init__(
        self, jobs: Sequence[Job], mine: Sequence[Job], out: Path, progress: ProgressFn, interval: float = 2.0
    ) -> None:
        self._total = len(jobs)
        own = {job.line for job in mine}
        self._others = [job for job in jobs if job.line not in own]
        self._out, self._progress, self._interval = out, progress, interval
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Watcher:
        self._progress("stories", 0, self._total)
        if self._others:
            self._thread = threading.Thread(target=self._poll, name="batch-watcher", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def finished(self, name: str) -> None:
        with self._lock:
            self._seen.add(name)
            self._progress("stories", len(self._seen), self._total)

    def _poll(self) -> None:
        while not self._stop.wait(self._interval):
            for job in self._others:
                if job.name in self._seen or self._stop.is_set():
                    continue
                folder = StoryFolder(self._out / job.name)
                with contextlib.suppress(AudiostoryError, OSError, ValueError):
                    if folder.exists() and is_delivered(folder, job.export_options()):
                        self.finished(job.name)


# -- --check -------------------------------------------------------------------------------------------------


@dataclass
class CheckReport:
    jobs: JobsFile
    errors: list[LineError]  # the file's bad lines, then jobs whose folder in --out is refused
    states: dict[str, JobState] = field(default_factory=dict)  # by job name; empty without --out


def check_batch(jobs: JobsFile, out: Path | None) -> CheckReport:
    """Everything a run would refuse, found without loading a model or writing anything."""
    report = CheckReport(jobs=jobs, errors=list(jobs.errors))
    if out is None:
        return report
    check_out_dir(out)
    previous = read_batch_file(out) if Path(out).is_dir() else {}
    for job in jobs.jobs:
        try:
            report.states[job.name] = inspect_job(job, out, previous.get(job.name))
        except (StoryError, OutputExistsError, InputError) as exc:
            report.errors.append(LineError(job.line, one_line(exc), job.name))
    report.errors.sort(key=lambda e: e.line)
    return report
