"""What ``fit``, ``score``, ``explain``, ``info``, ``export-onnx`` and ``evaluate`` share: the model
directory, the table read in chunks, the score writer, threads and garbage collection.

A model directory written by ``fit`` is a :meth:`SwiftHydra.save` directory plus
``preprocessing.json`` (covered by a checksum in ``config.json``): the fitted
:class:`~swifthydra.tabular.table.TablePreprocessor`, the label and id columns and where the
model was trained. It is read by the library module :mod:`swifthydra.tabular.model` (also behind
:func:`swifthydra.load_model`), re-exported here: :func:`read_table_state` reads and checks it
without torch; :func:`load_table_estimator` / :func:`load_table_model` load the model beside it.
``score``, ``explain`` and ``evaluate`` apply exactly that preprocessing, matching columns by name,
and read the input in chunks (:func:`swifthydra.tabular.model.table_chunks`, read ahead in a thread
by :class:`~swifthydra.tabular.model.Prefetch`; here also as ``_table_chunks`` and ``_Prefetch``)
so a file larger than memory streams through; ``score`` appends each scored chunk to its output
with :class:`_ScoreWriter`. The distributed scorers (:mod:`swifthydra.distributed`) and the
self-check of ``fit`` (:mod:`swifthydra._fit_check`) use the same library functions (from
:mod:`swifthydra.tabular.model`, never from here), so a row gets the same score everywhere.

Heavy libraries (pandas, pyarrow, torch) are imported inside the functions.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

from swifthydra.exceptions import InvalidInputError
from swifthydra.tabular.model import (  # noqa: F401 - re-exported: the commands, tests and cli_model use them here
    _MODEL_KIND,
    PREPROCESSING_FILE,
    PREPROCESSING_FORMAT,
    Prefetch,
    _prepared_chunks,
    _read_plan,
    _resolve_id_column,
    load_table_estimator,
    load_table_model,
    read_table_state,
)
from swifthydra.tabular.model import Prefetch as _Prefetch  # noqa: F401 - the names the commands use
from swifthydra.tabular.model import probability as _probability  # noqa: F401
from swifthydra.tabular.model import table_chunks as _table_chunks  # noqa: F401

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


def _scored_chunks(est, chunks: Prefetch, data: Path):
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
