"""What an edit changes in a plan: old and new events paired up, and the change shown as a table.

Events are paired by caption (a ``difflib`` alignment): the same caption at the same place is kept (or
changed, when its duration or detail differs), a caption replaced in place is changed, a caption that left one
place and appears at another is moved, the rest is removed or added. A kept, changed or moved event keeps its
seed, stem, renders and takes, so ``render`` redoes it only when its render inputs changed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from rich.table import Table
from rich.text import Text

from ..text import one_line
from .plan import Event, Story

ChangeKind = Literal["kept", "changed", "moved", "added", "removed"]
_STYLE = {"kept": "dim", "changed": "yellow", "moved": "cyan", "added": "green", "removed": "red"}
DURATION_EPS = 1e-6
SIMILAR = 0.3  # share of caption words two events must have in common to count as one event changed
_ARTICLES = frozenset({"a", "an", "the", "of", "some"})


@dataclass(frozen=True)
class EventChange:
    kind: ChangeKind
    old: Event | None  # in the plan before (None for added)
    new: Event | None  # in the plan after (None for removed)
    render: bool = False  # whether `render` redoes the new event


Pair = tuple[int | None, int | None]


def pair_events(old_captions: list[str], new_captions: list[str]) -> tuple[list[Pair], set[int]]:
    """Pairs of positions (old, new), None on one side for removed/added, in the new plan's order; and the new
    positions whose event moved."""
    keys_old = [" ".join(c.lower().split()) for c in old_captions]
    keys_new = [" ".join(c.lower().split()) for c in new_captions]
    matcher = difflib.SequenceMatcher(a=keys_old, b=keys_new, autojunk=False)
    pairs: list[Pair] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            pairs += [(i1 + k, j1 + k) for k in range(i2 - i1)]
            continue
        matched = _similar_pairs(keys_old, keys_new, range(i1, i2), range(j1, j2)) if tag == "replace" else []
        pairs += matched
        pairs += [(i, None) for i in range(i1, i2) if all(i != a for a, _ in matched)]
        pairs += [(None, j) for j in range(j1, j2) if all(j != b for _, b in matched)]
    # a caption removed at one place and added at another is a move
    removed = {keys_old[i]: n for n, (i, j) in enumerate(pairs) if j is None and i is not None}
    moved: set[int] = set()
    for n, (i, j) in enumerate(pairs):
        if i is None and j is not None and keys_new[j] in removed:
            r = removed.pop(keys_new[j])
            pairs[n] = (pairs[r][0], j)
            pairs[r] = (None, None)
            moved.add(j)
    pairs = [p for p in pairs if p != (None, None)]
    # in the new plan's order; a removed event just after the event that preceded it
    return sorted(pairs, key=lambda p: _order_key(p, pairs)), moved


def _similar_pairs(old: list[str], new: list[str], olds: range, news: range) -> list[Pair]:
    """In a replaced stretch, pair each old caption with the next new one that shares enough words (in order);
    with as many old as new captions and nothing similar, they pair by place (a caption rewritten in place)."""
    pairs: list[Pair] = []
    next_new = news.start
    for i in olds:
        words = set(old[i].split()) - _ARTICLES
        scores = [(_overlap(words, set(new[j].split()) - _ARTICLES), j) for j in range(next_new, news.stop)]
        best = max(scores, default=(0.0, -1))
        if best[0] >= SIMILAR:
            pairs.append((i, best[1]))
            next_new = best[1] + 1
    if not pairs and len(olds) == len(news):
        pairs = list(zip(olds, news, strict=True))
    return pairs


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def _order_key(pair: Pair, pairs: list[Pair]) -> tuple[float, int]:
    i, j = pair
    if j is not None:
        return (float(j), 0)
    # removed: just after the new position of the last kept event before it in the old plan
    anchor = -0.5
    for oi, nj in pairs:
        if oi is not None and nj is not None and i is not None and oi < i:
            anchor = max(anchor, nj + 0.5)
    return (anchor, i or 0)


def classify(old: Event | None, new: Event | None, moved: bool) -> ChangeKind:
    if old is None:
        return "added"
    if new is None:
        return "removed"
    if moved:
        return "moved"
    same = (
        one_line(old.caption) == one_line(new.caption)
        and one_line(old.story_detail) == one_line(new.story_detail)
        and abs(old.duration - new.duration) <= DURATION_EPS
    )
    return "kept" if same else "changed"


def diff_table(changes: list[EventChange], *, title: str | None = None) -> Table:
    """The change as a table: what happens, old → new caption, duration and position; kept events dimmed."""
    table = Table(title=Text(title) if title else None, title_justify="left", expand=False)
    table.add_column("change", no_wrap=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("caption", overflow="fold", ratio=3)
    table.add_column("dur (s)", justify="right", overflow="fold")
    table.add_column("start (s)", justify="right", overflow="fold")
    table.add_column("render", no_wrap=True)
    for change in changes:
        old, new = change.old, change.new
        style = _STYLE[change.kind]
        table.add_row(
            Text(change.kind, style=style),
            _arrow(str(old.index) if old else None, str(new.index) if new else None),
            _caption(old, new),
            _arrow(f"{old.duration:.2f}" if old else None, f"{new.duration:.2f}" if new else None),
            _arrow(f"{old.start:.2f}" if old else None, f"{new.start:.2f}" if new else None),
            Text("yes" if change.render else "-", style="yellow" if change.render else "dim"),
            style="dim" if change.kind == "kept" and not change.render else None,
        )
    return table


def _arrow(old: str | None, new: str | None) -> Text:
    if old is None:
        return Text(new or "")
    if new is None or new == old:
        return Text(old)
    return Text(f"{old} → {new}")


def _caption(old: Event | None, new: Event | None) -> Text:
    if old is None or new is None:
        return Text(one_line((old or new).caption))  # type: ignore[union-attr]
    if one_line(old.caption) == one_line(new.caption):
        return Text(one_line(new.caption))
    text = Text(one_line(old.caption), style="strike")
    text.append(" → ")
    text.append(one_line(new.caption), style="bold")
    return text


def summary(changes: list[EventChange]) -> str:
    """``2 changed, 1 added, 1 removed; 3 events to render`` (kept events are not counted)."""
    counts = {kind: sum(1 for c in changes if c.kind == kind) for kind in ("changed", "moved", "added", "removed")}
    parts = [f"{n} {kind}" for kind, n in counts.items() if n]
    renders = sum(1 for c in changes if c.render)
    head = ", ".join(parts) if parts else "no event changed"
    return f"{head}; {renders} event{'s' if renders != 1 else ''} to render"


def story_changes(before: Story, after: Story, pairs: list[Pair], moved: set[int]) -> list[EventChange]:
    """EventChanges for planned (non-source) events; ``pairs`` index the planned events of each story."""
    old_events = [e for e in before.events if e.status != "source"]
    new_events = [e for e in after.events if e.status != "source"]
    changes = []
    for i, j in pairs:
        old = old_events[i] if i is not None else None
        new = new_events[j] if j is not None else None
        kind = classify(old, new, j in moved)
        render = new is not None and after.is_stale(new)
        changes.append(EventChange(kind=kind, old=old, new=new, render=render))
    return changes
