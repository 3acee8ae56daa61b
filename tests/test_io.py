"""Model directories: round trip, atomic replace, and clear errors for damaged or foreign files."""

from __future__ import annotations

import json

import pytest
import torch

from swifthydra.exceptions import ModelFileError
from swifthydra.io import CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE, load_model_dir, save_model_dir

KIND = "swifthydra.Test"


def _save(path, value=1.0, **kw):
    tensors = {"w": torch.full((3, 2), value), "b": torch.arange(4)}
    return save_model_dir(path, KIND, {"alpha": value, "names": ["a", "b"]}, tensors, **kw)


def test_round_trip(tmp_path):
    path = _save(tmp_path / "m")
    meta, tensors = load_model_dir(path, KIND)
    assert meta["config"] == {"alpha": 1.0, "names": ["a", "b"]}
    assert meta["format_version"] == FORMAT_VERSION and meta["kind"] == KIND
    assert torch.equal(tensors["w"], torch.ones(3, 2)) and torch.equal(tensors["b"], torch.arange(4))
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]


def test_no_silent_overwrite_and_atomic_replace(tmp_path):
    path = _save(tmp_path / "m")
    with pytest.raises(ModelFileError, match="already exists"):
        _save(path, 2.0)
    assert load_model_dir(path)[0]["config"]["alpha"] == 1.0
    _save(path, 2.0, overwrite=True)
    assert load_model_dir(path)[0]["config"]["alpha"] == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"], "no temporary leftovers"
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ModelFileError, match="not a swifthydra model directory"):
        _save(other, overwrite=True)
    assert (other / "notes.txt").read_text() == "mine"


def test_failed_save_keeps_the_old_model(tmp_path):
    path = _save(tmp_path / "m")
    with pytest.raises(ValueError):  # NaN is not valid JSON: fails mid-save
        save_model_dir(path, KIND, {"alpha": float("nan")}, {"w": torch.zeros(1)}, overwrite=True)
    assert load_model_dir(path)[0]["config"]["alpha"] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_damaged_and_foreign_files(tmp_path):
    path = _save(tmp_path / "m")
    weights = path / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        load_model_dir(path)
    weights.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ModelFileError, match="checksum"):
        load_model_dir(path)
    # truncated file without a checksum to catch it: the safetensors reader refuses it
    meta = json.loads((path / CONFIG_FILE).read_text())
    del meta["weights_sha256"]
    (path / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="cannot be read"):
        load_model_dir(path)
    (path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model_dir(path)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model_dir(tmp_path / "nothing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ModelFileError, match="not a swifthydra model directory"):
        load_model_dir(tmp_path / "file.txt")


def test_newer_format_and_other_kind(tmp_path):
    path = _save(tmp_path / "m")
    with pytest.raises(ModelFileError, match="holds a 'swifthydra.Test', not a 'swifthydra.SwiftHydra'"):
        load_model_dir(path, "swifthydra.SwiftHydra")
    meta = json.loads((path / CONFIG_FILE).read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (path / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="upgrade swifthydra"):
        load_model_dir(path)
