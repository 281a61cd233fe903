"""Stage timing from the library's own progress callbacks, and peak memory per stage.

``StageClock`` is a ``ProgressFn``: every callback is timestamped, and the time since the previous callback
belongs to the stage of the later one (``progress("dit", k, n)`` fires after DiT step k, so the interval ending
there is that step). Sections (``with clock.section("plan")``) add marks at their edges, so nothing between
two sections is lost or double counted. Peak memory is taken at every mark and reset, so each interval's peak is
known: CUDA ``max_memory_allocated`` on a GPU; on a CPU the process RSS, sampled by a background thread.
"""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Mark:
    time: float
    stage: str
    done: int
    total: int
    peak_bytes: int  # peak memory in the interval that ends at this mark


class MemoryProbe:
    """Peak memory since the last ``take()``: CUDA allocated bytes on a GPU, process RSS otherwise."""

    def __init__(self, device: torch.device, interval: float = 0.02) -> None:
        self.device = device
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "rss"
        self._interval = interval
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> MemoryProbe:
        if self.kind == "cuda_max_allocated":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._peak = rss_bytes()
            self._thread = threading.Thread(target=self._sample, name="rss-probe", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            now = rss_bytes()
            with self._lock:
                self._peak = max(self._peak, now)

    def current(self) -> int:
        if self.kind == "cuda_max_allocated":
            return int(torch.cuda.memory_allocated(self.device))
        return rss_bytes()

    def take(self) -> int:
        """The peak since the previous call (or since entering), then start a new interval."""
        if self.kind == "cuda_max_allocated":
            peak = int(torch.cuda.max_memory_allocated(self.device))
            torch.cuda.reset_peak_memory_stats(self.device)
            return peak
        now = rss_bytes()
        with self._lock:
            peak, self._peak = max(self._peak, now), now
        return peak


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; elsewhere psutil)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return int(psutil.Process().memory_info().rss)


def max_rss_bytes() -> int:
    """The process's lifetime peak RSS (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if os.uname().sysname == "Darwin" else peak * 1024)


@dataclass(frozen=True)
class StageTime:
    seconds: float
    peak_bytes: int
    intervals: int


@dataclass
class StageClock:
    """A progress callback that timestamps every call; see the module docstring."""

    probe: MemoryProbe
    sync: bool = False  # synchronise CUDA at every mark, so GPU work lands in the stage that queued it
    relabel: dict[str, str] = field(default_factory=dict)
    marks: list[Mark] = field(default_factory=list)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.sync:
            torch.cuda.synchronize(self.probe.device)
        label = self.relabel.get(stage, stage)
        self.marks.append(Mark(time.perf_counter(), label, done, total, self.probe.take()))

    @contextlib.contextmanager
    def section(self, name: str, *, relabel: dict[str, str] | None = None) -> Iterator[None]:
        """Marks at both edges; the time after the last callback inside belongs to ``name``.

        ``relabel`` renames the library's stages inside (e.g. export's "write" → "export").
        """
        saved = dict(self.relabel)
        self("idle", 0, 0)
        self.relabel.update(relabel or {})
        try:
            yield
        finally:
            self.relabel = saved
            self(name, 1, 1)

    def split(self) -> dict[str, StageTime]:
        """Seconds, peak memory and interval count per stage ("idle" is the time between sections)."""
        seconds: dict[str, float] = {}
        peaks: dict[str, int] = {}
        counts: dict[str, int] = {}
        for previous, mark in zip(self.marks, self.marks[1:], strict=False):
            seconds[mark.stage] = seconds.get(mark.stage, 0.0) + mark.time - previous.time
            peaks[mark.stage] = max(peaks.get(mark.stage, 0), mark.peak_bytes)
            counts[mark.stage] = counts.get(mark.stage, 0) + 1
        return {s: StageTime(seconds[s], peaks[s], counts[s]) for s in seconds}

    def step_times(self, stage: str) -> list[float]:
        """Durations of the intervals between two consecutive ``stage`` callbacks whose count went up by one."""
        out = []
        for previous, mark in zip(self.marks, self.marks[1:], strict=False):
            if previous.stage == mark.stage == stage and mark.done == previous.done + 1:
                out.append(mark.time - previous.time)
        return out

    def wall(self) -> float:
        return self.marks[-1].time - self.marks[0].time if len(self.marks) > 1 else 0.0

    def peak(self) -> int:
        return max((m.peak_bytes for m in self.marks), default=0)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
