"""Plain-text helpers shared by the plan, the tables and the cue sheets (no project imports)."""

from __future__ import annotations

import unicodedata


def one_line(text: str) -> str:
    """``text`` safe for a cue sheet or a terminal: control characters (ESC, BEL, NUL, CR...) and runs of
    whitespace become single spaces; everything else (accents, emoji) is kept."""
    return " ".join("".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text).split())
