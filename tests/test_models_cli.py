"""`audiostory models ...`: results on stdout, one clear error line on stderr, never a traceback."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from audiostory_cli.cli import app

runner = CliRunner()


def _one_error_line(result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_list_shows_models_pins_and_licences() -> None:
    result = runner.invoke(app, ["models", "list", "-v"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "audiostory-3b" in result.stdout and "tiny-random" in result.stdout
    assert "NOT pinned" in result.stdout and "Qwen Research License" in result.stdout
    data = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)
    by_name = {m["name"]: m for m in data}
    assert by_name["audiostory-3b"]["status"] == "missing"
    assert {p["name"]: p["pinned"] for p in by_name["audiostory-3b"]["parts"]}["qwen"] is True


def test_download_offline_is_one_clear_line() -> None:
    result = runner.invoke(app, ["models", "download", "audiostory-3b"], env={"HF_HUB_OFFLINE": "1"})
    line = _one_error_line(result)
    assert "offline" in line and "audiostory/pytorch_model.bin" in line and "models/audiostory-3b/<part>/" in line


def test_download_with_an_unreachable_hub_is_one_clear_line_and_fast(monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    result = runner.invoke(app, ["models", "download", "audiostory-3b"])
    assert time.monotonic() - start < 20
    line = _one_error_line(result)
    assert "cannot reach the hub" in line and "127.0.0.1:9" in line


def test_unknown_model_and_usage_errors() -> None:
    line = _one_error_line(runner.invoke(app, ["models", "download", "audiostory-9b"]))
    assert "registered models" in line
    result = runner.invoke(app, ["models", "convert"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    result = runner.invoke(app, ["models", "convert", "audiostory-3b"])
    assert "models download audiostory-3b" in _one_error_line(result)
    result = runner.invoke(app, ["models", "path", "tiny-random"])
    assert "built in memory" in _one_error_line(result)


def test_path_prints_the_folder(tmp_path) -> None:
    result = runner.invoke(app, ["models", "path", "audiostory-3b"])
    assert result.exit_code == 0
    assert result.stdout.strip() == str(tmp_path / "_cache" / "models" / "audiostory-3b")
    result = runner.invoke(app, ["models", "path", "audiostory-3b", "--converted"])
    assert result.stdout.strip().endswith("audiostory-3b/converted")


@pytest.mark.parametrize("damage", [False, True])
def test_verify_a_model_folder(tmp_path, damage) -> None:
    from torch import nn

    from audiostory_cli.config import tiny_dims
    from audiostory_cli.weights.checkpoint import ModelInfo, save_model_folder

    folder = tmp_path / "m"
    save_model_folder(folder, {"bridge": nn.Linear(3, 2)}, tiny_dims(), ModelInfo(name="t"))
    if damage:
        data = bytearray((folder / "bridge.safetensors").read_bytes())
        data[-1] ^= 0xFF
        (folder / "bridge.safetensors").write_bytes(bytes(data))
    result = runner.invoke(app, ["models", "verify", str(folder)], env={"COLUMNS": "200"})
    assert "bridge.safetensors" in result.stdout
    if damage:
        assert "sha256 mismatch" in _one_error_line(result)
    else:
        assert result.exit_code == 0 and "ok" in result.stdout


def test_verify_a_registered_model_that_is_not_downloaded() -> None:
    result = runner.invoke(app, ["models", "verify", "audiostory-3b"], env={"COLUMNS": "200"})
    assert "missing" in result.stdout
    line = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and "failed" in line[0]
    assert "note: part audiostory" in result.stderr  # the unpinned part is called out
    assert "Traceback" not in result.output
