"""Save and load models as a directory: ``model.safetensors`` + ``config.json``. No pickle.

A model directory holds

* ``model.safetensors``: every tensor (network weights, scaler statistics, generated rows), in the
  safetensors format, which stores raw arrays only — loading it never executes code;
* ``config.json``: what the model is (``kind``), the ``format_version`` of this layout, the
  package version that wrote it, the creation time, the SHA-256 of ``model.safetensors``, and the
  model's own JSON-serialisable configuration and state;
* optionally, more JSON files saved with the model (e.g. ``preprocessing.json``: the table
  preprocessing of a model fitted with ``swifthydra fit``), each listed with its SHA-256 under
  ``files_sha256`` in ``config.json`` and verified on load (:func:`read_model_json`).

Saving is atomic: everything is written into a temporary directory beside the target, which is then
renamed into place. Overwriting first moves the old directory aside and only deletes it once the
new one is in place, so a crash at any moment leaves either the old model or the new one. A
``verify`` callable given to :func:`save_model_dir` runs on the complete temporary directory
before the rename (``swifthydra fit`` reloads and re-scores the model there): when it raises,
the temporary directory is removed and any old model at the path is left untouched.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swifthydra.exceptions import ModelFileError

# 2: a MoME's expert weights are stacked (one tensor per parameter, ``experts.stacked.<name>``);
# format 1 files (``experts.<e>.<name>``) still load
# 3: SwiftHydra's density prior may have a far tail (``prior.tail_scale``, ``prior.tail_from``; version
# 0.4), which an older reader would ignore and score differently; format 2 files load with none
FORMAT_VERSION = 3
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def to_jsonable(value: Any) -> Any:
    """Plain JSON data: dicts and lists recursively, numpy scalars as Python numbers, NaN/inf as
    None, a torch device as its name, a RandomState as None (it cannot be stored)."""
    import numpy as np
    import torch

    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, np.random.RandomState):
        return None
    return value


def save_model_dir(
    path: str | os.PathLike,
    kind: str,
    config: dict[str, Any],
    tensors: dict[str, Any],
    *,
    overwrite: bool = False,
    extra_files: dict[str, Any] | None = None,
    verify: Callable[[Path], None] | None = None,
) -> Path:
    """Write a model directory atomically.

    Parameters
    ----------
    path : path
        Target directory.
    kind : str
        What the model is, e.g. ``"swifthydra.SwiftHydra"``; checked on load.
    config : dict
        JSON-serialisable configuration and state.
    tensors : dict of str -> torch.Tensor
        Tensors to store (made contiguous and moved to the CPU).
    overwrite : bool
        Replace an existing model directory. Without it an existing path is an error.
    extra_files : dict of str -> JSON-serialisable, optional
        More JSON files to write into the directory (plain file names ending in ``.json``), each
        covered by a SHA-256 in ``config.json``.
    verify : callable, optional
        Called with the path of the complete, checksummed temporary directory before it is
        renamed into place (load it from there to check what was written). When it raises, the
        directory is removed, nothing appears at ``path`` (an old model there is kept) and the
        exception propagates.

    Returns
    -------
    pathlib.Path
    """
    import torch
    from safetensors.torch import save_file

    from swifthydra import __version__

    path = Path(path).expanduser()
    extra_files = dict(extra_files or {})
    for name in extra_files:
        if (
            not isinstance(name, str) or not name.endswith(".json") or Path(name).name != name
            or name in (CONFIG_FILE, WEIGHTS_FILE) or name.startswith(".")
        ):
            raise ValueError(f"extra file name {name!r} must be a plain file name ending in .json")
    if path.exists() and not overwrite:
        raise ModelFileError(f"{path} already exists: choose another path or pass overwrite=True (--force).")
    if path.exists() and not (path / CONFIG_FILE).is_file():
        raise ModelFileError(f"{path} exists and is not a swifthydra model directory: refusing to replace it.")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise ModelFileError(f"cannot write into {parent} ({exc.strerror}).") from None
    try:
        clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        for name, t in clean.items():
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"tensor {name!r} is a {type(t).__name__}")
        save_file(clean, str(tmp / WEIGHTS_FILE))
        files_sha256 = {}
        for name, content in sorted(extra_files.items()):
            _write_json(tmp / name, content)
            files_sha256[name] = _sha256(tmp / name)
        meta = {
            "kind": kind,
            "format_version": FORMAT_VERSION,
            "swifthydra_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "weights_sha256": _sha256(tmp / WEIGHTS_FILE),
            "config": config,
        }
        if files_sha256:
            meta["files_sha256"] = files_sha256
        _write_json(tmp / CONFIG_FILE, meta)
        if verify is not None:
            verify(tmp)
        if path.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=parent))
            aside.rmdir()
            os.replace(path, aside)
            os.replace(tmp, path)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _write_json(path: Path, content: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f, indent=2, allow_nan=False)  # keys in insertion order: order can carry meaning
        f.flush()
        os.fsync(f.fileno())


def read_model_config(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Read and check ``config.json`` of a model directory (without loading the weights)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelFileError(f"{path} does not exist.")
    if not path.is_dir() or not (path / CONFIG_FILE).is_file():
        raise ModelFileError(f"{path} is not a swifthydra model directory (no {CONFIG_FILE}).")
    try:
        meta = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path / CONFIG_FILE} is not valid JSON ({exc}); the model is damaged.") from None
    if not isinstance(meta, dict) or "kind" not in meta or "format_version" not in meta:
        raise ModelFileError(f"{path / CONFIG_FILE} is not a swifthydra model configuration.")
    if kind is not None and meta["kind"] != kind:
        raise ModelFileError(f"{path} holds a {meta['kind']!r}, not a {kind!r}.")
    version = meta["format_version"]
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path} has an invalid format_version {version!r}.")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written in model format {version} by swifthydra {meta.get('swifthydra_version')}; "
            f"this swifthydra reads format {FORMAT_VERSION} and older: upgrade swifthydra."
        )
    return meta


def load_model_dir(path: str | os.PathLike, kind: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load and verify a model directory.

    Returns
    -------
    meta : dict
        The parsed ``config.json`` (the model's own configuration is ``meta["config"]``).
    tensors : dict of str -> torch.Tensor
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_model_config(path, kind)
    weights = Path(path).expanduser() / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelFileError(f"{weights} is missing; the model directory is incomplete.")
    expected = meta.get("weights_sha256")
    if expected is not None and _sha256(weights) != expected:
        raise ModelFileError(
            f"{weights} does not match the checksum in {CONFIG_FILE}: the file is damaged or was modified."
        )
    try:
        tensors = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{weights} cannot be read ({exc}).") from None
    for name in _listed_files(path, meta):
        _read_listed_json(Path(path).expanduser(), meta, name)
    return meta, tensors


def _listed_files(path, meta: dict[str, Any]) -> dict[str, str]:
    files = meta.get("files_sha256", {})
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and Path(k).name == k for k, v in files.items()
    ):
        raise ModelFileError(f"{Path(path) / CONFIG_FILE} has an invalid files_sha256 entry; the model is damaged.")
    return files


def _read_listed_json(path: Path, meta: dict[str, Any], name: str) -> Any:
    file = path / name
    if not file.is_file():
        raise ModelFileError(f"{file} is missing; the model directory is incomplete.")
    if _sha256(file) != meta["files_sha256"][name]:
        raise ModelFileError(
            f"{file} does not match the checksum in {CONFIG_FILE}: the file is damaged or was modified."
        )
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{file} is not valid JSON ({exc}); the model is damaged.") from None


def read_model_json(path: str | os.PathLike, name: str, kind: str | None = None) -> Any | None:
    """One extra JSON file of a model directory (see ``extra_files`` of :func:`save_model_dir`),
    checked against its SHA-256 in ``config.json``; ``None`` when the model was saved without it."""
    meta = read_model_config(path, kind)
    if name not in _listed_files(path, meta):
        return None
    return _read_listed_json(Path(path).expanduser(), meta, name)
