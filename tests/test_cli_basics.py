"""The CLI shell: fast help without heavy imports, version, doctor, error translation."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from audiostory_cli import __version__
from audiostory_cli.cli import app

runner = CliRunner()

CHECK_LIGHT = """
import sys
from typer.testing import CliRunner
from audiostory_cli.cli import app
for args in (["--help"], ["tell", "--help"], ["models", "--help"], ["plan", "--help"], ["--version"]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
heavy = [m for m in ("torch", "transformers", "diffusers", "peft", "torchaudio") if m in sys.modules]
print(",".join(heavy))
"""


def test_help_does_not_import_heavy_libraries():
    done = subprocess.run([sys.executable, "-c", CHECK_LIGHT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"audiostory {__version__}"


def test_every_command_has_help():
    for command in ("tell", "render", "regen", "export", "doctor", "plan", "models"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, (command, result.output)


def test_doctor_json_reports_device_and_versions():
    result = runner.invoke(app, ["doctor", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["device"] == "cpu" and report["dtype"] == "float32"
    assert "CPU" in report["dtype reason"]
    assert report["versions"]["torch"].startswith("2.14")
    assert report["models"]["tiny-random"] == "builtin"


def test_missing_backend_is_a_clear_error():
    result = runner.invoke(app, ["doctor", "--device", "cuda"])
    assert result.exit_code == 1
    assert "--device cuda asked for CUDA" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_usage_errors_are_one_line_with_exit_2():
    result = runner.invoke(app, ["tell", "rain", "--duration", "abc"])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: Invalid value for '--duration'")
    assert len(result.stderr.strip().splitlines()) == 1


def test_debug_env_shows_the_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIOSTORY_DEBUG", "1")
    result = runner.invoke(app, ["plan", "show", str(tmp_path / "missing")])
    assert result.exit_code != 0
    assert result.exception is not None and type(result.exception).__name__ == "StoryError"
