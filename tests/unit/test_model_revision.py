"""``local_model_revision``: a local model folder named by its content (it goes into every run
fingerprint, so it must not move with the folder's path and must move with its weights)."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from jobs.tables.identity import with_known_revision
from udfs.engines.model_files import local_model_revision
from udfs.settings import EngineSettings

MIB = 1 << 20


def _model(folder: Path, weights: bytes = b"w" * (3 * MIB)) -> Path:
    """A model folder: config files, one weights file of 3 MiB, and files that are neither."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"hidden_size": 128}')
    (folder / "generation_config.json").write_text('{"do_sample": false}')
    (folder / "tokenizer.json").write_text('{"model": {"type": "BPE"}}')
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "README.md").write_text("how this model was trained")
    return folder


def _patched(path: Path, offset: int, byte: bytes = b"X") -> None:
    data = bytearray(path.read_bytes())
    data[offset:offset + 1] = byte
    path.write_bytes(bytes(data))


def test_the_revision_is_pinned_and_independent_of_the_folders_path(tmp_path):
    revision = local_model_revision(_model(tmp_path / "a"))
    assert re.fullmatch(r"local-[0-9a-f]{16}", revision)
    # Written out: fingerprints stored in results tables hold it, so it must never move.
    assert revision == "local-d5d7ef8f577c5d05"
    # ... and derived by hand as the docstring says: each config file's name and bytes, then
    # each weights file's name and size, its first and its last MiB.
    digest = hashlib.sha256()
    for name, text in (("config.json", '{"hidden_size": 128}'),
                       ("generation_config.json", '{"do_sample": false}'),
                       ("tokenizer.json", '{"model": {"type": "BPE"}}')):
        digest.update(name.encode() + b"\0" + text.encode())
    digest.update(b'["model.safetensors", 3145728]' + b"w" * MIB + b"w" * MIB)
    assert revision == "local-" + digest.hexdigest()[:16]
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "copy")
    assert local_model_revision(tmp_path / "elsewhere" / "copy") == revision


@pytest.mark.parametrize("change", [
    "config", "generation_config", "tokenizer", "first_mib", "last_mib", "size", "renamed",
    "second_weights",
])
def test_what_changes_the_weights_or_their_config_changes_the_revision(tmp_path, change):
    folder = _model(tmp_path / "m")
    before = local_model_revision(folder)
    weights = folder / "model.safetensors"
    if change in ("config", "generation_config", "tokenizer"):
        (folder / f"{change}.json").write_text('{"changed": true}')
    elif change == "first_mib":
        _patched(weights, 10)
    elif change == "last_mib":
        _patched(weights, 3 * MIB - 10)
    elif change == "size":
        weights.write_bytes(weights.read_bytes() + b"w")
    elif change == "renamed":
        weights.rename(folder / "model-00001.safetensors")
    else:
        (folder / "extra.bin").write_bytes(b"b" * 10)
    assert local_model_revision(folder) != before


def test_files_that_are_not_weights_or_config_and_the_unsampled_middle_do_not(tmp_path):
    folder = _model(tmp_path / "m")
    before = local_model_revision(folder)
    (folder / "README.md").write_text("rewritten")
    (folder / "notes.txt").write_text("new file")
    # The documented trade-off: a 7B model's weights are not read whole to start a run, so a
    # change inside the middle of a weights file (same size) is not seen.
    _patched(folder / "model.safetensors", int(1.5 * MIB))
    assert local_model_revision(folder) == before


def test_only_a_local_folder_without_a_revision_gets_one(tmp_path):
    folder = _model(tmp_path / "m")
    local = EngineSettings(model=str(folder))
    assert with_known_revision(local).revision == local_model_revision(folder)
    pinned = EngineSettings(model=str(folder), revision="abc123")
    assert with_known_revision(pinned).revision == "abc123"
    hub = EngineSettings(model="Qwen/Qwen2-VL-2B-Instruct")
    assert with_known_revision(hub).revision is None
