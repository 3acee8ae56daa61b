"""Find, download, verify and load ADBench dataset files.

Search order for a dataset file (first hit wins):

1. ``data_dir`` passed by the caller;
2. the directory in the ``SWIFTHYDRA_DATA`` environment variable;
3. the user cache, ``platformdirs.user_cache_dir("swifthydra")/adbench`` (e.g.
   ``~/.cache/swifthydra/adbench`` on Linux).

Inside each directory a file may sit directly (``DIR/6_cardio.npz``) or in the ADBench folder of
its group (``DIR/Classical/6_cardio.npz``, matched case-insensitively, so ``DIR/classical/``
works too). When the file is nowhere and downloading is allowed, it is fetched from ADBench's
public GitHub repository (or ``SWIFTHYDRA_ADBENCH_URL``), checked, and written atomically into the
cache: a failed or partial download never leaves a file behind that a later call would load.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from swifthydra.datasets.registry import DATASETS, DatasetInfo, get_dataset_info
from swifthydra.exceptions import (
    CorruptFileError,
    DatasetNotAvailableError,
    DownloadError,
    InvalidInputError,
)

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/Minqi824/ADBench/main/adbench/datasets"
ENV_DATA = "SWIFTHYDRA_DATA"
ENV_URL = "SWIFTHYDRA_ADBENCH_URL"
_CHUNK = 1 << 16


def cache_dir() -> Path:
    """The user cache directory for downloaded ADBench files."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("swifthydra")) / "adbench"


def _search_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir).expanduser())
    env = os.environ.get(ENV_DATA)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(cache_dir())
    return dirs


def _candidates(root: Path, info: DatasetInfo) -> list[Path]:
    out = [root / info.file, root / info.folder / info.file]
    if root.is_dir():  # the group folder, whatever its case (shared copies use "classical")
        for child in root.iterdir():
            if child.is_dir() and child.name.lower() == info.folder.lower() and child.name != info.folder:
                out.append(child / info.file)
    return out


def find_dataset_file(name: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """Return the path of a dataset's file if it is on disk, else ``None``."""
    info = get_dataset_info(name)
    for root in _search_dirs(data_dir):
        for path in _candidates(root, info):
            if path.is_file():
                return path
    return None


def local_datasets(data_dir: str | os.PathLike | None = None) -> list[str]:
    """Canonical names of the registered datasets whose files are on disk, in registry order."""
    return [d.name for d in DATASETS if find_dataset_file(d.name, data_dir) is not None]


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _read_npz(path: Path, info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    """Read ``X`` and ``y`` from an ADBench ``.npz`` file, refusing anything else."""
    try:
        # allow_pickle=False: a file is data, never code.
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):  # a bare .npy array
            raise CorruptFileError(
                f"{path} is a single .npy array, not an .npz archive with arrays X and y."
            )
        with data:
            if "X" not in data.files or "y" not in data.files:
                raise CorruptFileError(
                    f"{path} is not an ADBench dataset file (arrays {data.files}, expected X and y)."
                )
            X = np.asarray(data["X"])
            y = np.asarray(data["y"])
    except CorruptFileError:
        raise
    except ValueError as exc:
        if "pickle" not in str(exc):
            raise CorruptFileError(
                f"{path} cannot be read as an ADBench .npz file (ValueError: {exc}); "
                "delete it and load again to re-download."
            ) from None
        # not a zip of plain arrays (e.g. object arrays, or no archive at all): numpy would have to
        # unpickle it, which is never done here
        raise CorruptFileError(
            f"{path} cannot be read as an ADBench .npz file: it is not an archive of numeric arrays "
            "(reading it would need pickle, which swifthydra never uses); delete it and load again "
            "to re-download."
        ) from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise CorruptFileError(
            f"{path} cannot be read as an ADBench .npz file ({type(exc).__name__}: {exc}); "
            "delete it and load again to re-download."
        ) from None
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise CorruptFileError(f"{path} has X of shape {X.shape} and y of shape {y.shape}; expected (n, d) and (n,).")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise CorruptFileError(f"{path} holds no data (X has shape {X.shape}).")
    if X.dtype.kind not in "biuf" or y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
        raise CorruptFileError(f"{path} does not hold numeric X and 0/1 labels y.")
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).sum())
        raise CorruptFileError(
            f"{path} holds {bad} NaN or infinite values in X; ADBench files are complete: "
            "delete it and load again to re-download, or clean your own file."
        )
    if (info.rows is not None and X.shape[0] != info.rows) or (
        info.features is not None and X.shape[1] != info.features
    ):
        raise CorruptFileError(
            f"{path} has shape {X.shape} but {info.name} has {info.rows} rows and "
            f"{info.features} features; delete it and load again to re-download."
        )
    if info.sha256 is None and info.anomalies is not None and int(y.sum()) != info.anomalies:
        # no checksum to pin the file: the published anomaly count is the next best check
        raise CorruptFileError(
            f"{path} has {int(y.sum())} anomalies but {info.name} has {info.anomalies}; "
            "delete it and load again to re-download."
        )
    return X.astype(np.float64, copy=False), y.astype(np.int64, copy=False)


def _verify_checksum(path: Path, info: DatasetInfo) -> None:
    if info.sha256 is None:
        return
    digest = sha256_file(path)
    if digest != info.sha256:
        raise CorruptFileError(
            f"{path} has SHA-256 {digest[:12]}..., expected {info.sha256[:12]}... for {info.name}: "
            "the file is corrupt or not the published one; delete it and download again."
        )


def download_dataset(
    name: str,
    dest_dir: str | os.PathLike | None = None,
    *,
    base_url: str | None = None,
    progress: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Download one dataset file, verify it, and move it into place atomically.

    Parameters
    ----------
    name : str
        Dataset name or alias.
    dest_dir : path, optional
        Directory to store into (default: the user cache). The file lands in
        ``dest_dir/<ADBench folder>/<file>``.
    base_url : str, optional
        Base address of ADBench's ``datasets`` folder; default ``$SWIFTHYDRA_ADBENCH_URL`` or
        ADBench's GitHub repository.
    progress : bool
        Show a progress bar (rich) on the terminal.
    timeout : float
        Seconds to wait for the server before giving up.

    Returns
    -------
    pathlib.Path
        Where the verified file now is.
    """
    info = get_dataset_info(name)
    base = (base_url or os.environ.get(ENV_URL) or DEFAULT_BASE_URL).rstrip("/")
    url = f"{base}/{info.folder}/{info.file}"
    target_dir = (Path(dest_dir).expanduser() if dest_dir is not None else cache_dir()) / info.folder
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {target_dir} ({exc.strerror}): pass a writable data_dir.") from None
    target = target_dir / info.file
    fd, tmp_name = tempfile.mkstemp(prefix=f".{info.file}.", suffix=".part", dir=target_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _fetch(url, out, progress=progress, timeout=timeout, label=info.name)
        _verify_checksum(tmp, info)
        _read_npz(tmp, info)  # refuse files that would not load
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _fetch(url: str, out, *, progress: bool, timeout: float, label: str) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "swifthydra"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http/https only)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"downloading {label} from {url} failed: HTTP {exc.code} {exc.reason}.") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"downloading {label} from {url} failed ({reason}); check the network or put the file "
            f"in a directory given by data_dir or ${ENV_DATA}."
        ) from None
    with response:
        total = response.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        received = 0
        bar = _progress_bar(label, total) if progress else None
        try:
            while True:
                try:
                    block = response.read(_CHUNK)
                except (OSError, ValueError) as exc:  # connection reset, IncompleteRead, timeout
                    raise DownloadError(
                        f"downloading {label} from {url} broke off after {received} bytes ({exc})."
                    ) from None
                if not block:
                    break
                out.write(block)
                received += len(block)
                if bar is not None:
                    bar[0].update(bar[1], completed=received)
        finally:
            if bar is not None:
                bar[0].stop()
    if total is not None and received != total:
        raise DownloadError(f"downloading {label} from {url} got {received} of {total} bytes; try again.")


def _progress_bar(label: str, total: int | None):
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), transient=False
    )
    task = bar.add_task(label, total=total)
    bar.start()
    return bar, task


def load_adbench(
    name: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    *,
    verify: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load an ADBench dataset as ``(X, y)``; ``y`` is 1 for anomalies, 0 for normal rows.

    Parameters
    ----------
    name : str
        Canonical name (``"6_cardio"``) or alias (``"cardio"``), case-insensitive.
    data_dir : path, optional
        Directory searched first (see the module docstring for the search order).
    download : bool
        Fetch the file from ADBench's repository into the cache when it is not on disk.
    verify : bool
        Check the file's SHA-256 against the registry, where the registry knows it.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float64
    y : ndarray of shape (n_samples,), int64

    Raises
    ------
    UnknownDatasetError
        Unknown name (the message lists close matches).
    DatasetNotAvailableError
        The file is not on disk and ``download`` is False.
    DownloadError, CorruptFileError
        The download failed, or a file does not verify.
    """
    info = get_dataset_info(name)
    path = find_dataset_file(info.name, data_dir)
    if path is None:
        if not download:
            searched = ", ".join(str(d) for d in _search_dirs(data_dir))
            raise DatasetNotAvailableError(
                f"{info.name} is not on disk (searched {searched}); pass download=True "
                "or put the file there."
            )
        path = download_dataset(info.name)
    if verify:
        _verify_checksum(path, info)
    return _read_npz(path, info)


def load_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Load any ADBench-style ``.npz`` file (arrays ``X`` and ``y``) from a path."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path} does not exist or is not a file.")
    info = DatasetInfo(path.stem, "custom", "", path.name, None, None, None, "")
    return _read_npz(path, info)
