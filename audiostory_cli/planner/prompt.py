"""The instruction and chat prompt, exactly as the official ``evaluate/inference.py`` builds them."""

from __future__ import annotations

import math

from ..errors import InputError, UsageError

LEAD_PHRASES: tuple[str, ...] = (
    "Create a long-form audio composition that explores ",
    "I'd like an extended audio track with rich details of ",
    "Craft an immersive soundscape that slowly unfolds ",
    "Please produce a comprehensive recording capturing every aspect of ",
    "Generate a detailed, drawn-out audio that brings to life ",
    "Let's design a textured audio piece highlighting the nuances of ",
    "Kindly fashion a lengthy audio journey through ",
    "Devise a long-form audio narrative of ",
    "Develop a gradually developing audio with meticulous attention to ",
    "Imagine and produce a vivid audio experience of ",
    "Construct a detailed soundscape that tells the story of ",
    "Please generate a sustained audio track filled with ",
    "Produce an in-depth, multi-layered audio that portrays ",
    "Design a descriptive audio capturing the essence of ",
    "Create a nuanced, extended audio that conveys ",
    "I'd like to commission a long-form audio depicting ",
    "Fashion a richly detailed audio recording of ",
    "Propose a detailed, immersive audio that showcases ",
    "Generate an elaborate audio piece focusing on ",
    "Develop a comprehensive audio that fully represents ",
)
"""``GEN_PROMPT_ALL``: the 20 lead phrases, each ending with a space."""

DEFAULT_LEAD_INDEX = 12
"""What ``random.seed(0); random.choice(GEN_PROMPT_ALL)`` picks in the official script."""

SYSTEM_MESSAGE = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
USER_TEMPLATE = "<|im_start|>user\n{instruction}<|im_end|>\n"
ASSISTANT_PREFIX = "<|im_start|>assistant\n<|think|>"


def resolve_lead(lead: str | int | None) -> str:
    """``None`` → the official default lead; an int → ``LEAD_PHRASES[lead]``; a string → itself."""
    if lead is None:
        return LEAD_PHRASES[DEFAULT_LEAD_INDEX]
    if isinstance(lead, bool):
        raise UsageError(f"lead {lead!r} must be an index 0..{len(LEAD_PHRASES) - 1} or a phrase")
    if isinstance(lead, int):
        if not 0 <= lead < len(LEAD_PHRASES):
            raise UsageError(f"lead index {lead} is outside 0..{len(LEAD_PHRASES) - 1}")
        return LEAD_PHRASES[lead]
    return lead


def format_total_duration(total_duration: float) -> str:
    """``50`` → ``"50.0"``, like the official argparse float; rounded to 0.01 s to hide float noise."""
    return str(round(float(total_duration), 2))


def build_instruction(prompt: str, total_duration: float, lead: str | int | None = None) -> str:
    """``"{lead}{prompt}. The total duration is {X} seconds."`` (``X`` printed as a float, e.g. ``50.0``).

    A full stop is added when the prompt does not end a sentence already.

    A lead phrase is joined to the prompt with one space, so presets may pass a lead with or without its
    trailing space; the official leads give exactly the official text.
    """
    if not prompt.strip():
        raise InputError("the prompt is empty; describe the story to tell, e.g. 'a dog barks in the rain'")
    if not (math.isfinite(total_duration) and total_duration > 0):
        raise InputError(f"total duration {total_duration} must be a positive number of seconds")
    phrase = resolve_lead(lead)
    whole = f"{phrase.rstrip()} {prompt.strip()}".strip()
    if not whole.rstrip("\"')]»”’").endswith((".", "!", "?", "…")):
        whole += "."  # a sentence of its own, as in the training data ("... slams. The total duration is")
    return f"{whole} The total duration is {format_total_duration(total_duration)} seconds."


def build_chat_prompt(instruction: str) -> str:
    """System message + user turn + the assistant prefix that opens the reasoning with ``<|think|>``."""
    return SYSTEM_MESSAGE + USER_TEMPLATE.format(instruction=instruction) + ASSISTANT_PREFIX
