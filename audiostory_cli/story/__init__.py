"""The story folder: the typed plan (story.json), its validation, timeline and editing views."""

from .plan import (
    SCHEMA_VERSION,
    Event,
    EventStatus,
    RenderSettings,
    Story,
    event_slug,
)
from .folder import StoryFolder

__all__ = ["SCHEMA_VERSION", "Event", "EventStatus", "RenderSettings", "Story", "StoryFolder", "event_slug"]
