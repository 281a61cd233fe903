"""audiostory: long-form narrative audio from a prompt (AudioStory as a command-line tool).

The CLI in ``audiostory_cli.cli`` is a thin shell over this package. Heavy libraries (torch, transformers,
diffusers) are imported only when a function that needs them runs.
"""

from __future__ import annotations

__version__ = "0.1.0"
