"""The typed plan: schema round trip, validation messages that name the field, timeline helpers."""

from __future__ import annotations

import json

import pytest

from audiostory_cli.errors import PlanValidationError, StoryError
from audiostory_cli.story import Event, RenderSettings, Story, StoryFolder, event_slug
from audiostory_cli.story.timecode import smpte


def make_story(durations=(4.0, 3.0, 5.0), **kwargs) -> Story:
    events, start = [], 0.0
    for i, d in enumerate(durations, start=1):
        events.append(Event(index=i, start=start, duration=d, caption=f"sound number {i}", seed=100 + i))
        start += d
    return Story(prompt="a test story", total_duration=start, events=events, **kwargs)


def test_json_round_trip_is_identity():
    story = make_story(settings=RenderSettings(steps=20, guidance=3.5, crossfade=1.0), style="horror")
    story.events[1].story_detail = "the door gives way"
    story.events[2].crossfade = 0.25
    again = Story.from_json(story.to_json())
    assert again == story
    assert json.loads(again.to_json()) == json.loads(story.to_json())


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (lambda d: d["events"][1].update(duration=-1), "events[2].duration", "event 2: duration"),
        (lambda d: d["events"][2].update(start=1.0), "events[3].start", "must not overlap"),
        (lambda d: d.update(total_duration=5.0), "events[3].duration", "after total_duration"),
        (lambda d: d["events"][0].update(caption="  "), "events[1].caption", "caption is empty"),
        (lambda d: d["events"][0].update(file="events/../../etc/passwd"), "events[1].file", "plain name"),
        (lambda d: d.update(schema_version=99), "schema_version", "schema_version is 99"),
        (lambda d: d["events"][0].update(colour="red"), "events[1].colour", "unknown field"),
        (lambda d: d.update(events=[]), "events", "no events"),
        (lambda d: d["events"][1].update(duration="long"), "events[2].duration", "must be a number"),
        (lambda d: d["events"][1].update(index=7), "events[2].index", "expected 2"),
        (lambda d: d["events"][1].update(status="source"), "events[2].status", "only the first event"),
    ],
)
def test_validation_names_the_field(mutate, field, words):
    data = make_story().to_dict()
    mutate(data)
    with pytest.raises(PlanValidationError) as info:
        Story.from_dict(data)
    assert info.value.field == field
    assert words in str(info.value)


def test_crossfade_is_limited_by_short_events_and_gaps():
    story = make_story(durations=(4.0, 0.8, 5.0))
    assert story.crossfade_after(story.events[0]) == pytest.approx(0.8)
    assert story.crossfade_after(story.events[2]) == 0.0  # the last event has no tail
    story.events[2].start += 1.0  # a gap before event 3
    story.total_duration += 1.0
    assert story.crossfade_after(story.events[1]) == 0.0
    assert story.render_length(story.events[0]) == pytest.approx(4.8)


def test_render_hash_tracks_what_changes_audio():
    story = make_story()
    before = [story.render_hash(e) for e in story.events]
    story.events[1].caption = "something else"
    after = [story.render_hash(e) for e in story.events]
    assert before[0] == after[0] and before[2] == after[2]
    assert before[1] != after[1]
    story.settings.steps = 10
    assert all(a != b for a, b in zip(after, [story.render_hash(e) for e in story.events], strict=True))


def test_folder_save_keeps_previous_and_is_atomic(tmp_path):
    folder = StoryFolder(tmp_path / "s")
    story = make_story()
    folder.save(story)
    story.events[0].caption = "changed"
    folder.save(story, keep_previous=True)
    previous = Story.from_json(folder.previous_path.read_text())
    assert previous.events[0].caption == "sound number 1"
    assert folder.load().events[0].caption == "changed"
    assert not [p for p in folder.root.iterdir() if p.name.endswith(".tmp")]


def test_folder_load_errors_are_clear(tmp_path):
    with pytest.raises(StoryError, match="does not exist"):
        StoryFolder(tmp_path / "nope").load()
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoryError, match="no story.json"):
        StoryFolder(tmp_path / "empty").load()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "story.json").write_text('{"schema_version": 1, "prompt": "x", ')
    with pytest.raises(PlanValidationError, match="not valid JSON"):
        StoryFolder(bad).load()


def test_event_slug_and_file_names(tmp_path):
    assert event_slug("A car SKIDS on the wet road!") == "a-car-skids-on"
    assert event_slug("!!!") == "event"
    folder = StoryFolder(tmp_path)
    event = Event(index=3, start=0, duration=1, caption="Door slams", seed=7)
    assert folder.event_file_name(event) == "events/03-door-slams.s7.wav"


@pytest.mark.parametrize(
    ("seconds", "fps", "expected"),
    [
        (0.0, 25, "00:00:00:00"),
        (61.5, 25, "00:01:01:13"),
        (3600.04, 25, "01:00:00:01"),
        (60.0, 29.97, "00:00:59;28"),
        (60.07, 29.97, "00:01:00;02"),
        (600.0, 29.97, "00:10:00;00"),
        (1.0, 24, "00:00:01:00"),
    ],
)
def test_smpte(seconds, fps, expected):
    assert smpte(seconds, fps) == expected


def test_continuation_story_numbers_the_source_event_zero():
    story = make_story(durations=(6.0, 3.0, 5.0))
    story.events[0].status = "source"
    for position, event in enumerate(story.events):
        event.index = position
    story.validate()
    assert story.first_index == 0
    assert story.event(0).status == "source" and story.event(2).duration == 5.0
    assert story.crossfade_after(story.event(0)) == pytest.approx(1.5)
    with pytest.raises(PlanValidationError, match="events 0..2"):
        story.event(3)
