"""Security, tested by behaviour: weights never unpickle code, model folders never run code, $EDITOR never goes
through a shell, story folders never write outside themselves, and nothing but `models download` uses the network.

A pickled payload handed to the official-checkpoint reader is refused in
tests/test_models_official.py::test_load_official_bin_is_weights_only; here the same payload sits in a model
folder that `tell --model` loads.
"""

from __future__ import annotations

import ast
import json
import shlex
import shutil
import socket
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.story.folder import StoryFolder
from tests.story_factory import make_rendered_story, make_story

runner = CliRunner()
PACKAGE = Path(__file__).resolve().parents[1] / "audiostory_cli"
PROMPT = "rain on a tin roof, then thunder rolls"


def one_error_line(result) -> str:
    """Exactly one ``error:`` line, the last on stderr (a command may print its banner first); no traceback."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    assert "Traceback" not in result.output
    return errors[0]


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# -- model folders never run code ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_template(tmp_path_factory) -> Path:
    from audiostory_cli.model import save_model, tiny_random_model

    return save_model(tiny_random_model(), tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def model_folder(tmp_path, model_template) -> Path:
    return Path(shutil.copytree(model_template, tmp_path / "model"))


def tell_with_model(tmp_path: Path, model: Path, *, answer: str = ""):
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["tell", PROMPT, "--duration", "4", "--out", str(out), "--model", str(model), "--plan-only"],
        input=answer,
    )
    return out, result


def test_pickled_weights_in_a_model_folder_are_never_unpickled(tmp_path, model_folder):
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (exec, (f"import pathlib; pathlib.Path({str(marker)!r}).write_text('pwned')",))

    torch.save({"dit.weight": Payload()}, model_folder / "dit.safetensors")  # a pickle under a trusted name
    out, result = tell_with_model(tmp_path, model_folder)
    assert result.exit_code == 1
    assert "dit.safetensors is not a valid safetensors file" in one_error_line(result)
    assert not marker.exists() and not out.exists()


def test_a_tokenizer_asking_to_run_custom_code_is_refused_even_if_the_user_says_yes(tmp_path, model_folder):
    marker = tmp_path / "PWNED"
    tokenizer = model_folder / "tokenizer"
    config = json.loads((tokenizer / "tokenizer_config.json").read_text())
    config.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": [None, "evil.EvilTokenizer"]})
    (tokenizer / "tokenizer_config.json").write_text(json.dumps(config))
    (tokenizer / "evil.py").write_text(
        textwrap.dedent(f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("pwned")
        from transformers import PreTrainedTokenizerFast
        class EvilTokenizer(PreTrainedTokenizerFast):
            pass
    """)
    )
    out, result = tell_with_model(tmp_path, model_folder, answer="y\ny\n")
    assert result.exit_code == 1
    assert "audiostory never runs code from model folders" in one_error_line(result)
    assert not marker.exists() and not out.exists()
    assert "Do you wish to run the custom code" not in result.output


# -- $EDITOR runs without a shell -----------------------------------------------------------------------------


def test_editor_command_and_story_path_are_never_interpreted_by_a_shell(tmp_path, monkeypatch):
    markers = [tmp_path / f"m{i}" for i in range(4)]
    log = tmp_path / "argv.json"
    script = tmp_path / "editor.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, pathlib, sys
        pathlib.Path({str(log)!r}).write_text(json.dumps(sys.argv[1:]))
        path = pathlib.Path(sys.argv[-1])
        path.write_text(path.read_text().replace("synthetic event number 2", "a door slams"))
    """)
    )
    editor = (
        f'{sys.executable} {script} "$(touch {markers[0]})" `touch {markers[1]}` ; touch {markers[2]} '
        f"| touch {markers[3]}"
    )
    monkeypatch.setenv("EDITOR", editor)
    folder = StoryFolder(tmp_path / f"story;touch {markers[0]} $(touch {markers[1]})")
    folder.save(make_story([1.0, 1.0]))
    result = runner.invoke(app, ["plan", "edit", str(folder.root)])
    assert result.exit_code == 0, result.output
    assert folder.load().event(2).caption == "a door slams"
    assert not [m for m in markers if m.exists()]
    argv = json.loads(log.read_text())
    assert argv == [*shlex.split(editor)[2:], str(folder.root / "plan.edit.toml")]  # every word literal


# -- story folders never write outside themselves -------------------------------------------------------------


@pytest.mark.parametrize("link", ["cues", "stems", "mix.wav"])
def test_export_refuses_outputs_that_lead_outside_the_story(tmp_path, link):
    folder = make_rendered_story(tmp_path, [1.0, 1.0])
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "victim.wav" if link == "mix.wav" else outside
    if link == "mix.wav":
        target.write_bytes(b"not yours to overwrite")
    (folder.root / link).symlink_to(target)
    result = runner.invoke(app, ["export", str(folder.root), "--stems", "--cues", "story,edl"])
    assert result.exit_code == 1
    assert "points outside" in one_error_line(result)
    assert files_under(outside) == (["victim.wav"] if link == "mix.wav" else [])
    if link == "mix.wav":
        assert target.read_bytes() == b"not yours to overwrite"


def test_render_refuses_an_events_folder_that_leads_outside_before_rendering(tmp_path, monkeypatch):
    import audiostory_cli.generator.render as generator_render

    folder = StoryFolder(tmp_path / "story")
    folder.save(make_story([1.0, 1.0]))
    outside = tmp_path / "outside"
    outside.mkdir()
    folder.events_dir.symlink_to(outside)
    monkeypatch.setattr(generator_render, "render_latents", lambda *a, **k: pytest.fail("rendered anyway"))
    result = runner.invoke(app, ["render", str(folder.root)])
    assert result.exit_code == 1
    assert "points outside" in one_error_line(result)
    assert files_under(outside) == []
    assert [e.status for e in folder.load().events] == ["planned", "planned"]


# -- no network except `models download` ----------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch) -> list[str]:
    """Every attempt to reach another machine is recorded and refused (local AF_UNIX sockets still work)."""
    attempts: list[str] = []
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(f"connect {address}")
            raise OSError("network access is not allowed in this test")
        return real_connect(self, address)

    def refuse(name):
        def call(*args, **kwargs):
            attempts.append(f"{name} {args[:1]}")
            raise OSError("network access is not allowed in this test")

        return call

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # no reliance on offline switches: nothing may try
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return attempts


def test_tell_render_export_and_the_rest_never_touch_the_network(tmp_path, no_network):
    out = tmp_path / "story"
    commands = [
        ["tell", PROMPT, "--duration", "3", "--out", str(out), "--model", "tiny-random", "--steps", "1", "--yes"],
        ["plan", "set", str(out), "1", "--seed", "9"],
        ["render", str(out)],
        ["export", str(out), "--force", "--cues", "story,reaper,audacity,edl"],
        ["plan", "show", str(out)],
        ["models", "list"],
        ["doctor"],
    ]
    for command in commands:
        result = runner.invoke(app, command)
        assert result.exit_code == 0, (command, result.output)
    assert no_network == []


# -- a static guard on top of the behaviour tests -------------------------------------------------------------


def test_no_unsafe_loading_shell_or_network_calls_in_the_package():
    """Catches a regression where no behaviour test looks: torch.load without weights_only=True, pickle,
    trust_remote_code, shell=True, os.system, and network modules outside the downloader."""
    problems: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE.parent)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                keywords = {k.arg: k.value for k in node.keywords}
                weights_only = keywords.get("weights_only")
                if name == "torch.load" and not (isinstance(weights_only, ast.Constant) and weights_only.value):
                    problems.append(f"{where}:{node.lineno} torch.load without weights_only=True")
                if name in ("pickle.load", "pickle.loads", "os.system", "os.popen", "eval", "exec"):
                    problems.append(f"{where}:{node.lineno} {name}")
                remote = keywords.get("trust_remote_code")
                if remote is not None and not (isinstance(remote, ast.Constant) and remote.value is False):
                    problems.append(f"{where}:{node.lineno} trust_remote_code other than False")
                shell = keywords.get("shell")
                if shell is not None and not (isinstance(shell, ast.Constant) and shell.value is False):
                    problems.append(f"{where}:{node.lineno} shell=")
            if isinstance(node, (ast.Import, ast.ImportFrom)) and str(where) != "audiostory_cli/weights/download.py":
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for module in modules:
                    if module.split(".")[0] in (
                        "socket",
                        "urllib",
                        "http",
                        "requests",
                        "httpx",
                        "httpx2",
                        "huggingface_hub",
                    ):
                        problems.append(f"{where}:{node.lineno} imports {module}")
    assert problems == []
