"""Score with a model saved by ``swifthydra fit`` on Ray: a ``ray.data.Dataset``, or Parquet files
(``swifthydra score MODEL 'data/part-*.parquet' --engine ray --out scores/``).

    import ray
    from swifthydra.distributed.ray import score_dataset

    ds = ray.data.read_parquet("s3://bucket/transactions/")
    scored = score_dataset(ds, "model/", id_column="tx_id")   # lazy: tx_id, score, is_anomaly, probability
    scored.write_parquet("scores/")

:func:`score_dataset` maps the batches of the dataset through a pool of actors, each of which
loads the model once: the model directory travels with the actors (packed on the driver), so the
workers need no shared file system. Each batch is scored with the model's saved preprocessing and
estimator exactly as ``swifthydra score`` scores a chunk of a file, so a row gets the same score.
:func:`score_files` is ``swifthydra score --engine ray``: it reads the files with Ray Data (order
kept), scores them on the actor pool and writes one Parquet file per input file, named like it,
with the columns and row order that ``swifthydra score`` writes for that file. Needs the ``ray``
extra (``pip install 'swifthydra[ray]'``).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

from swifthydra.distributed._core import OUTPUT_COLUMNS, model_scorer
from swifthydra.exceptions import InvalidInputError, SwiftHydraError

__all__ = ["score_dataset", "score_files"]

PATH_COLUMN = "__swifthydra_path"
_UNPACKED: dict[str, str] = {}


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise SwiftHydraError("scoring on Ray needs ray[data]: pip install 'swifthydra[ray]'.") from None
    return ray


def _pack(model_dir: Path) -> bytes:
    """The model directory as tar bytes (small: the network weights and a few JSON files)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(model_dir), arcname="model")
    return buf.getvalue()


def _private_dir(path: str) -> bool:
    """``path`` is a real folder (not a link) of this user that no one else may write to."""
    import stat

    try:
        st = os.lstat(path)
    except OSError:
        return False
    owner = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    return stat.S_ISDIR(st.st_mode) and owner and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _unpack(packed: bytes) -> str:
    """Unpack a packed model once per machine; returns its directory.

    The directory is named by the content's digest in the temporary folder, so every worker
    process (and every later run) with the same model shares one copy instead of leaving a new one
    behind each time. A worker unpacks into a private folder and renames it into place; when two
    race, the loser removes its copy and uses the winner's.
    """
    digest = hashlib.sha1(packed).hexdigest()
    cached = _UNPACKED.get(digest)
    if cached is not None and os.path.isdir(cached):
        return cached
    root = os.path.join(tempfile.gettempdir(), f"swifthydra-model-{digest}")
    shared = not os.path.lexists(root) or _private_dir(root)  # someone else's folder: never trust it
    model = os.path.join(root, "model")
    if not (shared and os.path.isdir(model)):
        staging = tempfile.mkdtemp(prefix=f".swifthydra-model-{digest[:12]}-")
        try:
            with tarfile.open(fileobj=io.BytesIO(packed), mode="r") as tar:
                tar.extractall(staging, filter="data")
            if not shared:  # a copy of this process's own
                model = os.path.join(staging, "model")
            else:
                try:
                    os.rename(staging, root)  # atomic; fails when another worker got there first
                except OSError:
                    if not os.path.isdir(model):
                        raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if shared:  # the staging folder is gone when the rename won
            shutil.rmtree(staging, ignore_errors=True)
    _UNPACKED[digest] = model
    return model


class _BatchScorer:
    """The actor of :func:`score_dataset`: loads the model once, then scores pandas batches."""

    def __init__(self, packed: bytes, id_column: str | None, on_bad_rows: str, threads: int,
                 keep: tuple[str, ...]) -> None:
        self.scorer = model_scorer(_unpack(packed), threads)
        self.id_column, self.on_bad_rows, self.keep = id_column, on_bad_rows, keep

    def __call__(self, batch):
        return self.scorer.score_frame(batch, id_column=self.id_column, on_bad_rows=self.on_bad_rows, keep=self.keep)


def _check(model_dir: Path, columns: list[str], id_column: str | None, keep=()):
    from swifthydra.tabular.model import read_table_state

    _, state = read_table_state(model_dir)  # a missing or broken model fails on the driver
    if id_column is not None and id_column not in columns:
        raise InvalidInputError(f"id column {id_column!r} is not in the data; columns are {columns[:20]}.")
    state["preprocessor"].check_columns([c for c in columns if c not in keep],
                                        allowed_extra=[id_column] if id_column else [])
    return state


def score_dataset(ds, model_dir: str | os.PathLike, *, id_column: str | None = None, on_bad_rows: str = "fail",
                  concurrency: int | None = None, threads: int = 1, batch_size: int | None = 50_000,
                  keep: tuple[str, ...] = (), num_cpus: float | None = None):
    """``ds`` (a ``ray.data.Dataset``) scored by the model in ``model_dir``: a lazy Dataset with
    ``keep`` columns, ``id_column`` (when given), ``score``, ``is_anomaly`` and ``probability``.

    Parameters
    ----------
    ds : ray.data.Dataset
        Rows with the training table's columns (matched by name).
    model_dir : path
        Written by ``swifthydra fit``; read on the driver and shipped to the actors.
    id_column : str, optional
        Column copied to the output.
    on_bad_rows : {"fail", "skip", "nan"}
        As ``swifthydra score --on-bad-rows``.
    concurrency : int, optional
        Actors in the pool, each loading the model once. Default: the cluster's CPUs less one (at
        least one), so that the tasks reading ``ds`` (one CPU each by default) can still run; when
        the reads ask for no CPU (``ray_remote_args={"num_cpus": 0}``, as :func:`score_files` does),
        pass the cluster's CPUs.
    threads : int
        PyTorch threads per actor (each actor asks Ray for that many CPUs).
    batch_size : int or None
        Rows per scored batch (``None``: whole blocks).
    keep : tuple of str
        Other input columns passed through to the output, first.
    num_cpus : float, optional
        CPUs each actor asks Ray for (default ``threads``).
    """
    from swifthydra.tabular.table import BAD_ROWS

    ray = _ray()
    if on_bad_rows not in BAD_ROWS:
        raise InvalidInputError(f"on_bad_rows must be one of {', '.join(BAD_ROWS)}, got {on_bad_rows!r}.")
    path = Path(model_dir).expanduser().resolve()
    _check(path, list(ds.schema().names), id_column, keep)
    if concurrency is None:
        concurrency = max(1, int(ray.cluster_resources().get("CPU", 1) - 1) // max(threads, 1))
    return ds.map_batches(
        _BatchScorer, batch_format="pandas", batch_size=batch_size, num_cpus=threads if num_cpus is None else num_cpus,
        compute=ray.data.ActorPoolStrategy(size=int(concurrency)), scheduling_strategy="SPREAD",
        fn_constructor_kwargs={"packed": _pack(path), "id_column": id_column, "on_bad_rows": on_bad_rows,
                               "threads": threads, "keep": tuple(keep)},
    )


def expand_files(pattern: str) -> list[Path]:
    """The Parquet files of a glob pattern, a directory (its ``*.parquet`` files) or one file, sorted."""
    p = Path(pattern).expanduser()
    if p.is_dir():
        files = sorted(p.glob("*.parquet")) + sorted(p.glob("*.pq"))
    elif p.is_file():
        files = [p]
    else:
        files = sorted(Path(f) for f in glob.glob(os.path.expanduser(pattern)))
    files = [f for f in files if f.is_file()]
    if not files:
        raise InvalidInputError(f"no file matches {pattern!r}: give Parquet files, a glob such as 'data/part-*.parquet' "
                                "or a directory of them.")
    bad = [f.name for f in files if f.suffix.lower() not in (".parquet", ".pq")]
    if bad:
        raise InvalidInputError(f"--engine ray reads Parquet files; {bad[:5]} are not .parquet.")
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise InvalidInputError("the input files must have distinct names: each one's scores go to a file of that name.")
    return files


def score_files(model_dir: str | os.PathLike, files: list[Path], out_dir: str | os.PathLike, *,
                address: str | None = None, id_column: str | None = None, on_bad_rows: str = "fail",
                force: bool = False, batch_size: int = 50_000, concurrency: int | None = None) -> dict:
    """Score Parquet ``files`` on Ray and write ``out_dir/<name of each file>``: returns a summary
    (``rows``, ``scored``, ``flagged``, ``seconds``, ``files``).

    Connects to ``address`` (``ray.init(address=...)``; ``None``: ``RAY_ADDRESS`` or a new local
    instance). Rows are read, scored and written in order, so each output file has the rows of its
    input file in the same order, with the columns of ``swifthydra score``. The results are written
    by this process as they stream back (memory stays flat); the files appear when all are done.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from swifthydra.tabular.model import _resolve_id_column, read_table_state

    ray = _ray()
    model_dir = Path(model_dir).expanduser().resolve()
    out_dir = Path(out_dir).expanduser()
    files = [Path(f).resolve() for f in files]
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidInputError(f"--out {out_dir} is a file: with --engine ray give the directory to write into.")
    targets = {str(f): out_dir / f.name for f in files}
    existing = [t.name for t in targets.values() if t.exists()]
    if existing and not force:
        raise InvalidInputError(f"{out_dir} already holds {existing[:5]}: choose another --out or pass --force.")
    if any(t.resolve() == Path(f) for f, t in targets.items() if t.exists()):
        raise InvalidInputError("--out must not be the directory of the input files.")
    columns = pq.read_schema(files[0]).names
    if PATH_COLUMN in columns:
        raise InvalidInputError(f"the column name {PATH_COLUMN!r} is reserved by --engine ray.")
    _, state = read_table_state(model_dir)
    id_column = _resolve_id_column(columns, id_column, state, files[0])
    pre = state["preprocessor"]
    _check(model_dir, columns, id_column)
    wanted = list(pre.input_columns_) + ([id_column] if id_column and id_column not in pre.input_columns_ else [])
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False,
                 configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    t0 = time.perf_counter()
    from pyarrow import fs

    with contextlib.suppress(ImportError):  # imported here once: Ray's listing threads race on it
        import fsspec.implementations.http  # noqa: F401
    # the reads ask for no CPU: an actor pool holding every CPU would otherwise starve them (they
    # are light next to scoring, and Ray Data's backpressure bounds how far they run ahead)
    ds = ray.data.read_parquet([str(f) for f in files], columns=wanted, include_paths=True,
                               filesystem=fs.LocalFileSystem(), ray_remote_args={"num_cpus": 0})
    # One actor per CPU, spread over the nodes, asking Ray for no CPU: Ray Data's file listing and
    # reading tasks need a whole CPU each, and a pool holding every CPU (or leaving only fractions of
    # one on each node) would starve them forever. Logical CPUs only steer scheduling.
    if concurrency is None:
        concurrency = max(1, int(ray.cluster_resources().get("CPU", 1)))
    # the renaming asks for no CPU either, so Ray Data fuses it into the read tasks; asking for one
    # (the default) made it a task of its own that copied every block once more through the object
    # store and took a CPU from the actors
    ds = ds.rename_columns({"path": PATH_COLUMN}, num_cpus=0)
    scored = score_dataset(ds, model_dir, id_column=id_column, on_bad_rows=on_bad_rows, batch_size=batch_size,
                           concurrency=concurrency, keep=(PATH_COLUMN,), num_cpus=0)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = {f: out_dir / f".{t.name}.{os.getpid()}.tmp" for f, t in targets.items()}
    writers: dict[str, pq.ParquetWriter] = {}
    by_name = {os.path.basename(f): f for f in targets}
    rows = scored_rows = flagged = 0
    try:
        for batch in scored.iter_batches(batch_format="pandas", batch_size=None):
            if len(batch) == 0:
                continue
            paths = batch[PATH_COLUMN].to_numpy()
            frame = batch.drop(columns=[PATH_COLUMN])
            starts = [0] + [i for i in range(1, len(paths)) if paths[i] != paths[i - 1]] + [len(paths)]
            for a, b in zip(starts[:-1], starts[1:], strict=True):
                key = _input_key(paths[a], targets, by_name)
                part = frame.iloc[a:b]
                table = _output_table(part, id_column)
                if key not in writers:
                    writers[key] = pq.ParquetWriter(tmp[key], table.schema)
                elif table.schema != writers[key].schema:
                    table = table.cast(writers[key].schema)
                writers[key].write_table(table)
                rows += len(part)
                scored_rows += int(part["score"].notna().sum())
                flagged += int(part["is_anomaly"].fillna(False).astype(bool).sum())
                del part, table
            # this block's frames go once written, before the next block is fetched
            del batch, frame, paths
        for w in writers.values():
            w.close()
        for f, target in targets.items():
            if f not in writers:  # no rows: an empty file with the columns, like the local command
                cols = {id_column: pa.array([], pa.string())} if id_column else {}
                cols.update({"score": pa.array([], pa.float64()), "is_anomaly": pa.array([], pa.bool_()),
                             "probability": pa.array([], pa.float64())})
                pq.write_table(pa.table(cols), tmp[f])
            os.replace(tmp[f], target)
    except BaseException:
        for w in writers.values():
            try:
                w.close()
            except Exception:  # noqa: BLE001, S110 - already failing
                pass
        for t in tmp.values():
            t.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - t0
    return {"files": len(files), "rows": rows, "scored": scored_rows, "flagged": flagged, "seconds": seconds,
            "output": str(out_dir)}


def _input_key(path: str, targets: dict, by_name: dict) -> str:
    if path in targets:
        return path
    return by_name[os.path.basename(path)]  # Ray may report the path in another spelling


def _output_table(frame, id_column: str | None):
    """The batch as the Arrow table ``swifthydra score`` writes (id column, then the outputs)."""
    import pyarrow as pa

    cols = {}
    if id_column is not None:
        cols[id_column] = pa.array(frame[id_column].to_numpy(), from_pandas=True)
    for c in OUTPUT_COLUMNS:
        values = frame[c]
        if c == "is_anomaly" and values.isna().any():
            cols[c] = pa.array(values.to_numpy(dtype=object), type=pa.bool_(), from_pandas=True)
        else:
            cols[c] = pa.array(values.to_numpy(), from_pandas=True)
    return pa.table(cols)


def score_command(model_dir: Path, data: str, out: Path, *, engine: str, address: str | None, id_column: str | None,
                  chunk_rows: int, on_bad_rows: str, force: bool, as_json: bool) -> None:
    """``swifthydra score ... --engine ray``: score the files, print the summary line (or JSON)."""
    import typer

    from swifthydra.tabular.table import BAD_ROWS

    if engine != "ray":
        raise InvalidInputError(f"--engine must be local or ray, got {engine!r}.")
    if on_bad_rows not in BAD_ROWS:
        raise InvalidInputError(f"--on-bad-rows must be one of {', '.join(BAD_ROWS)}, got {on_bad_rows!r}.")
    if chunk_rows < 1:
        raise InvalidInputError(f"--chunk-rows must be >= 1, got {chunk_rows}.")
    _ray()
    files = expand_files(str(data))
    summary = score_files(model_dir, files, out, address=address, id_column=id_column, on_bad_rows=on_bad_rows,
                          force=force, batch_size=chunk_rows)
    if as_json:
        import json

        typer.echo(json.dumps({**summary, "engine": "ray", "seconds": round(summary["seconds"], 3)}, indent=2))
        return
    share = summary["flagged"] / summary["scored"] if summary["scored"] else 0.0
    typer.echo(
        f"scored {summary['rows']} rows in {summary['files']} files on Ray -> {out}/: {summary['flagged']} above the "
        f"threshold ({share:.2%}), {summary['seconds']:.1f} s ({summary['rows'] / max(summary['seconds'], 1e-9):,.0f} rows/s)"
    )
