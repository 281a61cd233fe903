"""The model registry: bundled TOML files, validation, name/folder resolution and status."""

from __future__ import annotations

import pytest

from audiostory_cli.errors import ModelError, UnknownModelError, UsageError
from audiostory_cli.weights.download import converted_path, model_path, model_status
from audiostory_cli.weights.registry import (
    COMMIT_RE,
    format_size,
    get_model_spec,
    list_models,
    parse_spec,
    resolve_model_ref,
)


def test_bundled_registry_has_the_released_model_and_tiny_random() -> None:
    names = [s.name for s in list_models()]
    assert "audiostory-3b" in names and "tiny-random" in names
    spec = get_model_spec("audiostory-3b")
    assert spec.kind == "hub" and spec.dims == "full"
    parts = {p.name: p for p in spec.parts}
    assert parts["audiostory"].repo_id == "TencentARC/AudioStory-3B"
    assert parts["qwen"].repo_id == "Qwen/Qwen2.5-3B-Instruct"
    assert parts["tangoflux"].repo_id == "declare-lab/TangoFlux"
    assert parts["flan-t5"].repo_id == "google/flan-t5-large"
    assert parts["whisper"].repo_id == "openai/whisper-large-v3"
    assert {f.path for f in parts["audiostory"].files} == {"config.yaml", "pytorch_model.bin"}
    assert "vae.safetensors" in {f.path for f in parts["tangoflux"].files}
    assert parts["tangoflux-init"].optional and not parts["tangoflux"].optional
    # honesty about pins: every pinned part has a full commit id; the unknown one says it is not pinned
    for part in spec.parts:
        assert part.pinned == bool(COMMIT_RE.match(part.revision)), part.name
    assert not parts["audiostory"].pinned and parts["audiostory"].revision == "main"
    assert not spec.pinned
    init = parts["tangoflux-init"].files[0]
    assert init.size == 3_437_051_960 and init.sha256.startswith("720ae396")
    assert all(p.licence for p in spec.parts) and "non-commercial" in spec.licence
    assert get_model_spec("tiny-random").kind == "builtin"
    assert model_status(get_model_spec("tiny-random")) == "builtin"
    assert model_status(spec) == "missing"


def test_unknown_names_list_the_registry_and_mention_folders(tmp_path) -> None:
    with pytest.raises(UnknownModelError) as err:
        get_model_spec("audiostory-7b")
    assert "audiostory-3b" in str(err.value) and "model folder path" in str(err.value)
    with pytest.raises(UnknownModelError, match="registered models"):
        resolve_model_ref("nonsense")
    with pytest.raises(UnknownModelError, match="not a model folder"):
        resolve_model_ref(tmp_path)
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(UnknownModelError, match="is a file"):
        resolve_model_ref(tmp_path / "file.bin")


def test_a_folder_with_a_sidecar_is_a_model(tmp_path) -> None:
    (tmp_path / "audiostory.json").write_text("{}")
    assert resolve_model_ref(str(tmp_path)) == tmp_path.resolve()
    assert resolve_model_ref("audiostory-3b") == get_model_spec("audiostory-3b")


def test_paths_live_in_the_audiostory_cache(tmp_path) -> None:
    spec = get_model_spec("audiostory-3b")
    assert model_path(spec) == tmp_path / "_cache" / "models" / "audiostory-3b"
    assert converted_path(spec) == model_path(spec) / "converted"
    with pytest.raises(UsageError, match="built in memory"):  # asking a builtin for files: exit code 2
        model_path(get_model_spec("tiny-random"))


GOOD = {
    "name": "x",
    "kind": "hub",
    "description": "d",
    "licence": "l",
    "parts": [
        {
            "name": "p",
            "repo": "o/r",
            "revision": "main",
            "pinned": False,
            "licence": "l",
            "role": "r",
            "files": [{"path": "a.bin", "size": 3, "sha256": "a" * 64}],
        }
    ],
}


def _with(**changes) -> dict:
    data = {**GOOD, "parts": [dict(GOOD["parts"][0])]}
    for key, value in changes.items():
        if key.startswith("part_"):
            data["parts"][0][key[5:]] = value
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_with(kind="cloud"), "kind 'cloud'"),
        (_with(extra=1), "unknown field"),
        (_with(part_pinned=True), "40-character commit"),
        (_with(part_pinned="yes"), "pinned must be true or false"),
        (_with(part_repo="noslash"), "owner/name"),
        (_with(part_files=[]), "non-empty list"),
        (_with(part_files=[{"path": "../x"}]), "plain relative path"),
        (_with(part_files=[{"path": "a", "sha256": "XYZ"}]), "64 lower-case hex"),
        (_with(part_files=[{"path": "a", "size": 0}]), "positive number"),
        (_with(name="Bad Name"), "lower-case"),
        (_with(parts=[]), "at least one"),
        (_with(kind="bundled", parts=[]), "folder ="),
    ],
)
def test_registry_validation_names_the_problem(data, message) -> None:
    with pytest.raises(ModelError, match=message):
        parse_spec(data)


def test_valid_entry_parses() -> None:
    spec = parse_spec(GOOD)
    assert spec.parts[0].files[0].size == 3 and not spec.pinned
    assert spec.known_size() == (3, True)


def test_format_size() -> None:
    assert format_size(3_437_051_960) == "3.4 GB"
    assert format_size(252, complete=False) == "≥ 252 B"
    assert format_size(0, complete=False) == "unknown"
