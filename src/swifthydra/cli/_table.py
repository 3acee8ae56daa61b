"""What ``fit``, ``score``, ``explain``, ``info``, ``export-onnx`` and ``evaluate`` share: the model
directory, the table read in chunks, the score writer, threads and garbage collection.

A model directory written by ``fit`` is a :meth:`SwiftHydra.save` directory plus
``preprocessing.json`` (covered by a checksum in ``config.json``): the fitted
:class:`~swifthydra.datasets.table.TablePreprocessor`, the label and id columns and where the
model was trained. It is read by the library module :mod:`swifthydra.table_model` (also behind
:func:`swifthydra.load_model`), re-exported here: :func:`read_table_state` reads and checks it
without torch; :func:`load_table_estimator` / :func:`load_table_model` load the model beside it.
``score``, ``explain`` and ``evaluate`` apply exactly that preprocessing, matching columns by name,
and read the input in chunks (:func:`_table_chunks`, read ahead in a thread by :class:`_Prefetch`)
so a file larger than memory streams through; ``score`` appends each scored chunk to its output
with :class:`_ScoreWriter`. The distributed scorers (:mod:`swifthydra.distributed`) and the
self-check of ``fit`` (:mod:`swifthydra._fit_check`) use the same helpers, so a row gets the same
score everywhere.

Heavy libraries (pandas, pyarrow, torch) are imported inside the functions.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

from swifthydra.exceptions import InvalidInputError
from swifthydra.table_model import (  # noqa: F401 - re-exported: the commands, tests and cli_model use them here
    _MODEL_KIND,
    PREPROCESSING_FILE,
    PREPROCESSING_FORMAT,
    _prepared_chunks,
    _read_plan,
    _resolve_id_column,
    load_table_estimator,
    load_table_model,
    read_table_state,
)

_OUTPUT_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv"}


class _StartupGC:
    """Garbage collection around a command that imports torch & co., then streams a table.

    Importing torch, scikit-learn and pandas creates ~600,000 long-lived objects; on the way the
    collector runs full collections that walk all of them (measured: about 0.5 s in all, more on
    a busy machine). Inside ``with _StartupGC() as startup:`` collection is off until
    :meth:`done` (call it once the model is loaded), which freezes what exists then (it lives
    until the end anyway) so the collections during streaming skip it, and turns collection back
    on. On leaving the block the objects are unfrozen again (unless something else had frozen
    objects before) and the collector is left as it was found.
    """

    def __enter__(self) -> _StartupGC:
        self.enabled = gc.isenabled()
        self.unfreeze = gc.get_freeze_count() == 0
        gc.disable()
        return self

    def done(self) -> None:
        gc.freeze()
        if self.enabled:
            gc.enable()

    def __exit__(self, *exc) -> None:
        if self.unfreeze:
            gc.unfreeze()
        if self.enabled:
            gc.enable()


def _threads(threads: int) -> int:
    if threads < 0:
        raise InvalidInputError(f"--threads must be >= 0 (0 = all cores), got {threads}.")
    return threads or (os.cpu_count() or 1)


def _probability(scores):
    """``predict_proba(X)[:, 1]`` of SwiftHydra from its scores (sigmoid of the clipped logit)."""
    from swifthydra._scoring import sigmoid

    return sigmoid(scores)


class _Prefetch:
    """Iterate ``items`` (a generator) in a background thread, at most ``depth`` items ahead;
    the thread starts at once.

    The next chunk is read and preprocessed while this one is scored (measured: about 30% faster
    end to end on 2 cores), and the first ones while the model loads. Memory stays bounded: at
    most ``depth + 2`` chunks exist at once. Exceptions reach the consumer. :meth:`close` (or
    leaving a ``with`` block) stops the producer, which closes the generator (and its file).
    """

    def __init__(self, items, depth: int = 1) -> None:
        import queue
        import threading

        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._full = queue.Full
        self._stop = threading.Event()
        self._done = object()
        self._items = items
        self._thread = threading.Thread(target=self._run, name="swifthydra-prefetch", daemon=True)
        self._thread.start()

    def _put(self, entry) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except self._full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put((True, item)):
                    break
            else:
                self._put((True, self._done))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put((False, exc))
        finally:
            self._items.close()

    def __iter__(self):
        while True:
            ok, item = self._queue.get()
            if not ok:
                raise item
            if item is self._done:
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> _Prefetch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _table_chunks(state: dict, data: Path, columns: list[str], chunk_rows: int, id_column: str | None,
                  on_bad_rows: str | None = None) -> _Prefetch:
    """Check the table's ``columns`` against the preprocessing and start reading it: a
    :class:`_Prefetch` of ``(start_row, chunk DataFrame, X)`` (use it in a ``with`` block); with
    ``on_bad_rows``, of ``(start_row, chunk DataFrame, Prepared)`` (see :func:`_prepared_chunks`)."""
    pre = state["preprocessor"]
    pre.check_columns(columns, allowed_extra=[id_column] if id_column else [])
    # CSV: categorical, timestamp and id columns as text, so every chunk types them as in the whole file
    wanted, strings = _read_plan(pre, id_column)
    return _Prefetch(_prepared_chunks(pre, data, wanted, chunk_rows, strings, on_bad_rows))


def _scored_chunks(est, chunks: _Prefetch, data: Path):
    """Yield ``(start_row, chunk DataFrame, X, scores)`` for the chunks of :func:`_table_chunks`
    (``X`` is the ``Prepared`` of the chunk when they were read with ``on_bad_rows``)."""
    for start, chunk, X in chunks:
        try:
            scores = est.decision_function(getattr(X, "X", X))
        except InvalidInputError as exc:
            raise InvalidInputError(f"{data}, data rows {start + 1}-{start + len(chunk)}: {exc}") from None
        yield start, chunk, X, scores


def _output_kind(out: Path) -> str:
    kind = _OUTPUT_SUFFIXES.get(out.suffix.lower())
    if kind is None:
        raise InvalidInputError(f"--out {out}: unsupported output type {out.suffix!r}; use .parquet, .csv or .tsv.")
    return kind


class _ScoreWriter:
    """Appends scored chunks to a Parquet file (one row group per chunk) or a CSV/TSV file."""

    def __init__(self, path: Path, kind: str, id_col: str | None) -> None:
        self.path, self.kind, self.id_col = path, kind, id_col
        self.writer = None
        self.file = None
        self.schema = None

    def __enter__(self) -> _ScoreWriter:
        return self

    def write(self, ids, scores, flagged, probability, missing=None) -> None:
        """Append rows; ``missing`` marks rows whose score, is_anomaly and probability are empty."""
        import numpy as np
        import pandas as pd

        id_col = self.id_col
        frame = {}
        if id_col is not None:
            frame[id_col] = ids.to_numpy() if hasattr(ids, "to_numpy") else ids
        frame.update({"score": scores, "is_anomaly": flagged, "probability": probability})
        if self.kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pydict(
                {k: (pa.array(v, from_pandas=True) if k == id_col
                     else v if missing is None else pa.array(v, mask=missing)) for k, v in frame.items()}
            )
            if self.writer is None:
                self.schema = table.schema
                self.writer = pq.ParquetWriter(self.path, self.schema)
            elif table.schema != self.schema:
                table = table.cast(self.schema)
            self.writer.write_table(table)
        else:
            df = pd.DataFrame(frame)
            if missing is not None:  # empty fields
                df["is_anomaly"] = df["is_anomaly"].astype(object).where(~missing, None)
                df.loc[missing, ["score", "probability"]] = np.nan
            if self.file is None:
                self.file = open(self.path, "w", encoding="utf-8", newline="")  # noqa: SIM115
                df.to_csv(self.file, index=False, sep="\t" if self.kind == "tsv" else ",")
            else:
                df.to_csv(self.file, index=False, header=False, sep="\t" if self.kind == "tsv" else ",")

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.kind == "parquet":
            if self.writer is None and exc_type is None:  # no rows: an empty file with the columns
                import pyarrow as pa
                import pyarrow.parquet as pq

                columns = {self.id_col: pa.array([], pa.string())} if self.id_col else {}
                columns.update({"score": pa.array([], pa.float64()), "is_anomaly": pa.array([], pa.bool_()),
                                "probability": pa.array([], pa.float64())})
                pq.write_table(pa.table(columns), self.path)
            elif self.writer is not None:
                self.writer.close()
        else:
            if self.file is None and exc_type is None:
                names = ([self.id_col] if self.id_col else []) + ["score", "is_anomaly", "probability"]
                header = ("\t" if self.kind == "tsv" else ",").join(names) + "\n"
                with open(self.path, "w", encoding="utf-8") as f:
                    f.write(header)
            elif self.file is not None:
                self.file.close()
