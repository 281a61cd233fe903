"""The story folder: the typed plan (story.json), its validation, timeline and editing views."""

from .folder import StoryFolder
from .plan import (
    SCHEMA_VERSION,
    Event,
    EventStatus,
    RenderSettings,
    Story,
    event_slug,
)

__all__ = ["SCHEMA_VERSION", "Event", "EventStatus", "RenderSettings", "Story", "StoryFolder", "event_slug"]
