"""The ``--json`` summaries keep their keys (and order) now that ``ExportResult`` builds their delivery part."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from audiostory_cli.app.export import ExportResult
from audiostory_cli.cli import app
from tests.story_factory import make_rendered_story

runner = CliRunner()
DELIVERY = ["mix", "stems", "cues", "qc"]
LOUDNESS = ["integrated_lufs", "true_peak_dbtp"]


def test_export_result_to_dict_is_the_export_summary_with_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = ExportResult(
        mix=Path("s/mix.wav"),
        stems=(Path("s/stems/01.wav"),),
        cues=(Path("s/cues/story.csv"),),
        qc_path=Path("s/cues/qc.json"),
        qc={"integrated_lufs": -16.0, "true_peak_dbtp": -1.2, "met": True},
        removed=(Path("s/old.wav"),),
    )
    summary = result.to_dict()
    assert list(summary) == [*DELIVERY, "removed", *LOUDNESS, "met"]
    assert summary["mix"] == str(tmp_path / "s" / "mix.wav")
    assert summary["stems"] == [str(tmp_path / "s" / "stems" / "01.wav")]
    assert summary["removed"] == [str(tmp_path / "s" / "old.wav")]
    assert (summary["integrated_lufs"], summary["true_peak_dbtp"], summary["met"]) == (-16.0, -1.2, True)


def test_export_and_render_json_keys_are_unchanged(tmp_path, monkeypatch):
    make_rendered_story(tmp_path, [2.0, 2.0])
    monkeypatch.chdir(tmp_path)
    exported = runner.invoke(app, ["export", "story", "--json", "--stems"])
    assert exported.exit_code == 0, exported.output
    summary = json.loads(exported.stdout)
    assert list(summary) == [*DELIVERY, "removed", *LOUDNESS, "met"]
    assert summary["mix"] == str(tmp_path / "story" / "mix.wav") and len(summary["stems"]) == 2
    rendered = runner.invoke(app, ["render", "story", "--json"])
    assert rendered.exit_code == 0, rendered.output
    summary = json.loads(rendered.stdout)
    assert list(summary) == ["story", *DELIVERY, "rendered", "events", *LOUDNESS]
    assert summary["story"] == str(tmp_path / "story" / "story.json") and summary["rendered"] == []
    assert all(Path(p).is_absolute() for p in [summary["mix"], summary["qc"], *summary["cues"]])
