"""Score a Spark DataFrame with a model saved by ``swifthydra fit`` (``DataFrame.mapInPandas``).

    from swifthydra.distributed.spark import score_dataframe

    scored = score_dataframe(spark.read.parquet("transactions/"), "model/", id_column="tx_id")
    scored.write.parquet("scores/")

:func:`score_dataframe` ships the model directory to the executors (``SparkContext.addFile``, so no
shared file system is needed) and returns ``df.mapInPandas(scoring_function(...), schema)``: the
columns ``swifthydra score`` writes (the id column when given, ``score``, ``is_anomaly``,
``probability``), one output row per input row in the same order within each partition. Each
Python worker loads the model once (cached across batches and tasks while Spark reuses the worker,
its default) and scores each Arrow batch with the model's saved preprocessing, so the scores equal
the local command's. :func:`scoring_function` is the function itself, for your own
``mapInPandas`` call. Needs the ``spark`` extra (``pip install 'swifthydra[spark]'``) and Java.
"""

from __future__ import annotations

import os
from pathlib import Path

from swifthydra.distributed._core import OUTPUT_COLUMNS, model_scorer
from swifthydra.exceptions import InvalidInputError, SwiftHydraError

__all__ = ["output_schema", "score_dataframe", "scoring_function"]


def _require_pyspark():
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise SwiftHydraError("Spark scoring needs pyspark: pip install 'swifthydra[spark]'.") from None


def _worker_path(model_dir: str, shipped: str | None) -> str:
    """The model directory on this worker: the copy shipped with ``addFile`` when there is one."""
    if shipped is not None:
        from pyspark import SparkFiles

        local = SparkFiles.get(shipped)
        if os.path.isdir(local):
            return local
    return model_dir


def scoring_function(model_dir: str | os.PathLike, *, id_column: str | None = None, on_bad_rows: str = "fail",
                     threads: int = 1, shipped_name: str | None = None):
    """A function for ``DataFrame.mapInPandas``: an iterator of pandas batches -> their scores.

    Parameters
    ----------
    model_dir : path
        The model directory, as seen by the workers (a shared path), or on the driver when it was
        shipped with ``SparkContext.addFile(model_dir, recursive=True)`` and ``shipped_name`` is
        its base name.
    id_column : str, optional
        Input column copied to the output first.
    on_bad_rows : {"fail", "skip", "nan"}
        As ``swifthydra score --on-bad-rows``.
    threads : int
        PyTorch threads per Python worker (Spark runs one worker per task slot).
    shipped_name : str, optional
        The base name given to ``addFile``.

    The output schema is :func:`output_schema`.
    """
    model_dir = str(model_dir)

    def score_batches(batches):
        scorer = model_scorer(_worker_path(model_dir, shipped_name), threads)
        for batch in batches:
            yield scorer.score_frame(batch, id_column=id_column, on_bad_rows=on_bad_rows)

    return score_batches


def output_schema(df=None, id_column: str | None = None, on_bad_rows: str = "fail") -> str:
    """The DDL schema of the scored DataFrame (``is_anomaly`` may be null with ``on_bad_rows='nan'``)."""
    cols = []
    if id_column is not None:
        if df is None:
            raise InvalidInputError("output_schema needs the input DataFrame to type the id column.")
        cols.append(f"`{id_column}` {df.schema[id_column].dataType.simpleString()}")
    cols += ["score double", "is_anomaly boolean", "probability double"]
    assert len(cols) - (id_column is not None) == len(OUTPUT_COLUMNS)
    return ", ".join(cols)


_SHIPPED: dict[tuple[str, str, int], str] = {}


def _ship(sc, path: Path) -> str:
    """Send the model directory to the executors under a name unique to this model and version
    (``addFile`` keys files by base name: two models both called ``model`` would collide)."""
    import atexit
    import hashlib
    import shutil
    import tempfile

    stamp = (path / "config.json").stat().st_mtime_ns
    key = (str(sc.applicationId), str(path), stamp)
    if key not in _SHIPPED:
        digest = hashlib.sha1(f"{path}:{stamp}".encode()).hexdigest()[:12]
        name = f"{path.name}-{digest}"
        folder = tempfile.mkdtemp(prefix="swifthydra-ship-")
        # Spark serves the copy from here until this driver ends; then it goes.
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        copy = Path(folder) / name
        shutil.copytree(path, copy)  # a frozen copy: refitting the model later does not change what runs
        sc.addFile(str(copy), recursive=True)
        _SHIPPED[key] = name
    return _SHIPPED[key]


def score_dataframe(df, model_dir: str | os.PathLike, *, id_column: str | None = None, on_bad_rows: str = "fail",
                    threads: int = 1, ship: bool = True):
    """``df`` (a Spark DataFrame) scored by the model in ``model_dir``: a lazy DataFrame with the
    columns of ``swifthydra score``.

    The columns are checked against the model on the driver first (the same one-line error as the
    command line). With ``ship`` (default) the directory is sent to every executor with
    ``SparkContext.addFile``; ``ship=False`` when it is on a path every worker sees.
    """
    _require_pyspark()
    from swifthydra.tabular.model import read_table_state
    from swifthydra.tabular.table import BAD_ROWS

    if on_bad_rows not in BAD_ROWS:
        raise InvalidInputError(f"on_bad_rows must be one of {', '.join(BAD_ROWS)}, got {on_bad_rows!r}.")
    path = Path(model_dir).expanduser().resolve()
    _, state = read_table_state(path)  # a missing or broken model fails here, on the driver
    if id_column is not None and id_column not in df.columns:
        raise InvalidInputError(f"id column {id_column!r} is not in the DataFrame; columns are {df.columns[:20]}.")
    state["preprocessor"].check_columns(list(df.columns), allowed_extra=[id_column] if id_column else [])
    shipped = _ship(df.sparkSession.sparkContext, path) if ship else None
    fn = scoring_function(str(path), id_column=id_column, on_bad_rows=on_bad_rows, threads=threads,
                          shipped_name=shipped)
    return df.mapInPandas(fn, output_schema(df, id_column, on_bad_rows))
