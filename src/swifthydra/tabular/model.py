"""Model directories written by ``swifthydra fit``, read and scored from Python.

A model directory written by ``swifthydra fit`` is a :meth:`SwiftHydra.save` directory plus
``preprocessing.json`` (covered by a checksum in ``config.json``): the fitted
:class:`~swifthydra.tabular.table.TablePreprocessor`, the label and id columns and where the
model was trained. :func:`read_table_state` reads and checks it without torch;
:func:`load_table_estimator` / :func:`load_table_model` load the model beside it.
:func:`table_chunks` reads a table file in chunks through that preprocessing (read ahead in a
thread by :class:`Prefetch`); :func:`probability` turns scores into the ``probability`` column.

:func:`load_model` returns a :class:`TableModel`: the model with its saved preprocessing, whose
:meth:`~TableModel.decision_function`, :meth:`~TableModel.predict`,
:meth:`~TableModel.predict_proba` and :meth:`~TableModel.score_samples` take the raw table (a
pandas DataFrame, or the path of a CSV/TSV/Parquet file) and score it exactly as
``swifthydra score`` does: the same column checks, the same preprocessing, the same chunks and
the same ``on_bad_rows`` choices (see docs/usage.md §2.2)::

    import swifthydra

    model = swifthydra.load_model("model_dir")       # written by `swifthydra fit ... --out model_dir`
    scores = model.decision_function(new_df)         # = the `score` column of `swifthydra score`
    flags = model.predict(new_df)                    # = its `is_anomaly` column, as 0/1

The command line (:mod:`swifthydra.cli`), the distributed scorers (:mod:`swifthydra.distributed`)
and the self-check of ``fit`` (:mod:`swifthydra._fit_check`) read model directories and tables
with these same functions, so a row gets the same score everywhere; this module imports nothing
from the command line.
Heavy libraries (pandas, torch) are imported inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from swifthydra.exceptions import InvalidInputError, ModelFileError

PREPROCESSING_FILE = "preprocessing.json"
PREPROCESSING_FORMAT = 1
_MODEL_KIND = "swifthydra.SwiftHydra"  # swifthydra.hydra.MODEL_KIND, named here without importing torch
#: rows read, preprocessed and scored at a time: ``swifthydra score``'s default ``--chunk-rows``
#: (scores are float32 network outputs, rounded alike only for batches of the same rows)
CHUNK_ROWS = 100_000


def read_table_state(model_dir: Path, *, need_preprocessing: bool = True):
    """``(config meta, preprocessing state)`` of a model directory, checked, without loading the
    model (no torch): the state's ``"preprocessor"`` is a :class:`TablePreprocessor`.

    The state is ``None`` for a model saved from Python without one (allowed only when
    ``need_preprocessing`` is false).
    """
    from swifthydra.io import read_model_config, read_model_json
    from swifthydra.tabular.table import TablePreprocessor

    meta = read_model_config(model_dir, _MODEL_KIND)
    state = read_model_json(model_dir, PREPROCESSING_FILE, _MODEL_KIND)
    if state is None and need_preprocessing:
        raise ModelFileError(
            f"{model_dir} was saved without table preprocessing (SwiftHydra.save from Python): "
            "score it from Python with SwiftHydra.load(...).decision_function, or fit it with `swifthydra fit`."
        )
    if state is not None:
        try:
            state["preprocessor"] = TablePreprocessor.from_dict(state["preprocessor"])
        except (KeyError, TypeError, InvalidInputError) as exc:
            raise ModelFileError(f"{model_dir / PREPROCESSING_FILE} is not a valid preprocessing ({exc}).") from None
    return meta, state


def load_table_estimator(model_dir: Path, state: dict | None):
    """The SwiftHydra of a model directory (on the CPU), checked against its preprocessing state
    (from :func:`read_table_state`)."""
    from swifthydra.hydra import SwiftHydra

    est = SwiftHydra.load(model_dir, device="cpu")
    if state is not None and len(state["preprocessor"].feature_names_) != est.n_features_in_:
        raise ModelFileError(
            f"{model_dir}: the preprocessing makes {len(state['preprocessor'].feature_names_)} features but the "
            f"model expects {est.n_features_in_}; the model directory is inconsistent."
        )
    return est


def load_table_model(model_dir: Path, *, need_preprocessing: bool = True):
    """``(estimator, config meta, preprocessing state)`` of a model directory.

    The preprocessing state is ``None`` for a model saved from Python without one (allowed only
    when ``need_preprocessing`` is false).
    """
    meta, state = read_table_state(model_dir, need_preprocessing=need_preprocessing)
    return load_table_estimator(model_dir, state), meta, state


def _resolve_id_column(columns: list[str], id_column: str | None, state: dict, path) -> str | None:
    """The id column to carry into the output: the one given, else the training id column when
    the table has it (``path`` names the table in the message)."""
    if id_column is not None:
        if id_column not in columns:
            raise InvalidInputError(f"id column {id_column!r} is not in {path}; columns are {columns[:20]}.")
        return id_column
    trained = state.get("id_column")
    return trained if trained is not None and trained in columns else None


def _read_plan(pre, id_column: str | None) -> tuple[list[str], list[str]]:
    """``(columns to read, columns to read from CSV as text)`` of a file scored with ``pre``:
    categorical, timestamp and id columns as text, so every chunk types them as in the whole file."""
    extra_id = [id_column] if id_column and id_column not in pre.input_columns_ else []
    return list(pre.input_columns_) + extra_id, list(pre.categories_) + list(pre.datetimes_) + extra_id


def _prepared_chunks(pre, data: Path, wanted: list[str], chunk_rows: int, strings: list[str],
                     on_bad_rows: str | None = None):
    """Yield ``(start_row, chunk DataFrame, X)``: each chunk of the file and its features; with
    ``on_bad_rows`` (fail, skip or nan) ``(start_row, chunk DataFrame, Prepared)`` instead
    (:meth:`TablePreprocessor.transform_checked`: the features, the rows with a bad value, the
    values outside the training range). Numbers beyond ±1e30 are bad values."""
    from swifthydra._validation import MAX_ABS_VALUE
    from swifthydra.tabular.table import iter_table

    start = 0
    for chunk in iter_table(data, wanted, chunk_rows=chunk_rows, string_columns=strings):
        if len(chunk) == 0:
            continue
        try:
            prepared = pre.transform_checked(
                chunk[pre.input_columns_], on_bad_rows=on_bad_rows or "fail", first_row=start + 1,
                max_abs=MAX_ABS_VALUE,
            )
        except InvalidInputError as exc:
            raise InvalidInputError(f"{data}, data rows {start + 1}-{start + len(chunk)}: {exc}") from None
        yield start, chunk, (prepared.X if on_bad_rows is None else prepared)
        start += len(chunk)


def probability(scores):
    """``predict_proba(X)[:, 1]`` of SwiftHydra from its scores (sigmoid of the clipped logit):
    the ``probability`` column of ``swifthydra score``."""
    from swifthydra._scoring import sigmoid

    return sigmoid(scores)


class Prefetch:
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

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def table_chunks(state: dict, data: Path, columns: list[str], chunk_rows: int, id_column: str | None,
                 on_bad_rows: str | None = None) -> Prefetch:
    """Check the table's ``columns`` against the preprocessing and start reading it: a
    :class:`Prefetch` of ``(start_row, chunk DataFrame, X)`` (use it in a ``with`` block); with
    ``on_bad_rows``, of ``(start_row, chunk DataFrame, Prepared)`` (see :func:`_prepared_chunks`).

    This is how ``swifthydra score``, ``explain`` and ``evaluate`` and the self-check of ``fit``
    read a table file."""
    return Prefetch(_checked_chunks(state["preprocessor"], data, columns, chunk_rows, id_column, on_bad_rows))


def _checked_chunks(pre, data: Path, columns: list[str], chunk_rows: int, id_column: str | None,
                    on_bad_rows: str | None = None):
    """:func:`_prepared_chunks` of ``data`` after checking its ``columns`` against ``pre`` (now,
    not on the first chunk): what :func:`table_chunks` reads ahead in a thread."""
    pre.check_columns(columns, allowed_extra=[id_column] if id_column else [])
    wanted, strings = _read_plan(pre, id_column)
    return _prepared_chunks(pre, data, wanted, chunk_rows, strings, on_bad_rows)


class TableModel:
    """A model directory written by ``swifthydra fit``: the :class:`~swifthydra.SwiftHydra` with
    its saved preprocessing, scoring raw tables as ``swifthydra score`` does. Made by
    :func:`load_model`.

    Every scoring method takes ``X``: a pandas DataFrame with the training columns (matched by
    name, in any order; the training label and id columns and columns dropped at fit may be
    there too), or the path of a CSV, TSV or Parquet file (read in chunks exactly as the command
    reads it). Missing, unexpected or duplicated columns are one :class:`InvalidInputError`
    naming them all. ``on_bad_rows`` decides what a value that cannot be used does (text in a
    numeric column, an infinite or huge number, a date that does not parse): ``"fail"`` (default)
    raises an error naming the column and the 1-based row, ``"skip"`` leaves the row out of the
    result (fewer rows than ``X``), ``"nan"`` keeps it with NaN (a NaN score, probabilities and,
    from :meth:`predict`, a float array with NaN).

    Attributes
    ----------
    estimator : SwiftHydra
        The model (on the CPU); it scores preprocessed feature matrices.
    preprocessor : swifthydra.tabular.table.TablePreprocessor
        The fitted preprocessing.
    feature_names : list of str
        The names of the features the preprocessing makes (the estimator's columns).
    input_columns : list of str
        The table columns the model needs.
    label_column, id_column : str or None
        The training label and id columns (they may be present in ``X``; they are not features).
    threshold_ : float
        ``predict`` is 1 where the score is above it (the training contamination quantile).
    training : dict
        Where and how the model was trained (file, rows, known anomalies, seconds, command).
    path : pathlib.Path
        The model directory.
    """

    def __init__(self, path: Path, estimator, state: dict) -> None:
        self.path = path
        self.estimator = estimator
        self.preprocessor = state["preprocessor"]
        self.label_column: str | None = state.get("label_column")
        self.id_column: str | None = state.get("id_column")
        self.training: dict = dict(state.get("training") or {})
        self._state = state

    @property
    def feature_names(self) -> list[str]:
        return list(self.preprocessor.feature_names_)

    @property
    def input_columns(self) -> list[str]:
        return list(self.preprocessor.input_columns_)

    @property
    def threshold_(self) -> float:
        return float(self.estimator.threshold_)

    @property
    def contamination(self) -> float:
        return float(self.estimator.contamination)

    def __repr__(self) -> str:
        return (f"TableModel({str(self.path)!r}: {len(self.input_columns)} columns -> "
                f"{len(self.feature_names)} features, threshold {self.threshold_:.4g})")

    # -- reading -------------------------------------------------------------------------------
    def _prepared(self, X: Any, on_bad_rows: str, id_column: str | None = None, resolve_id: bool = False):
        """``(id column or None, iterator of (start row, chunk DataFrame, Prepared, where))`` of
        ``X``; ``where`` prefixes messages about the chunk (the file and its rows), or is ``None``."""
        from swifthydra._validation import MAX_ABS_VALUE
        from swifthydra.tabular.table import BAD_ROWS, table_columns

        if on_bad_rows not in BAD_ROWS:
            raise InvalidInputError(f"on_bad_rows must be one of {list(BAD_ROWS)}, got {on_bad_rows!r}.")
        pre = self.preprocessor
        if isinstance(X, (str, os.PathLike)):
            data = Path(X).expanduser()
            columns = table_columns(data)
            if resolve_id:
                id_column = _resolve_id_column(columns, id_column, self._state, data)
            prepared_chunks = _checked_chunks(pre, data, columns, CHUNK_ROWS, id_column, on_bad_rows)

            def chunks():
                for start, chunk, prepared in prepared_chunks:
                    yield start, chunk, prepared, f"{data}, data rows {start + 1}-{start + len(chunk)}"

            return id_column, chunks()
        if not (hasattr(X, "columns") and hasattr(X, "iloc")):
            raise InvalidInputError(
                f"X is a {type(X).__name__}: pass a pandas DataFrame with the training columns "
                f"{pre.input_columns_[:20]} (or the path of a CSV or Parquet file); a matrix of preprocessed "
                "features goes to model.estimator.decision_function."
            )
        columns = [str(c) for c in X.columns]
        if resolve_id:
            id_column = _resolve_id_column(columns, id_column, self._state, "the DataFrame")
        pre.check_columns(columns, allowed_extra=[id_column] if id_column else [])
        df = X.rename(columns=str) if any(not isinstance(c, str) for c in X.columns) else X

        def frames():
            for start in range(0, len(df), CHUNK_ROWS):
                chunk = df.iloc[start:start + CHUNK_ROWS]
                prepared = pre.transform_checked(chunk[pre.input_columns_], on_bad_rows=on_bad_rows,
                                                 first_row=start + 1, max_abs=MAX_ABS_VALUE)
                yield start, chunk, prepared, None

        return id_column, frames()

    def _apply(self, X: Any, on_bad_rows: str, fn, width: int | None = None):
        """``fn`` (an estimator method on features) over the chunks of ``X``, concatenated, with
        bad rows left out (skip) or NaN (nan)."""
        import numpy as np

        parts = []
        for _, _, prepared, where in self._prepared(X, on_bad_rows)[1]:
            try:
                out = np.asarray(fn(prepared.X))
            except InvalidInputError as exc:
                if where is None:
                    raise
                raise InvalidInputError(f"{where}: {exc}") from None
            bad = prepared.bad
            if bad.any():
                if on_bad_rows == "skip":
                    out = out[~bad]
                else:
                    out = out.astype(np.float64)
                    out[bad] = np.nan
            parts.append(out)
        if not parts:
            return np.empty((0,) if width is None else (0, width), dtype=np.float64)
        return np.concatenate(parts)

    # -- scoring -------------------------------------------------------------------------------
    def transform(self, X: Any, *, on_bad_rows: str = "fail"):
        """The preprocessed features of ``X`` (float64, shape ``(n_rows, len(feature_names))``),
        as the model sees them."""
        return self._apply(X, on_bad_rows, lambda F: F, width=len(self.feature_names))

    def decision_function(self, X: Any, *, on_bad_rows: str = "fail"):
        """Anomaly score per row (higher = more anomalous): the ``score`` column of
        ``swifthydra score``."""
        return self._apply(X, on_bad_rows, self.estimator.decision_function)

    def score_samples(self, X: Any, *, on_bad_rows: str = "fail"):
        """Opposite of :meth:`decision_function` (scikit-learn convention: lower = more abnormal)."""
        return -self.decision_function(X, on_bad_rows=on_bad_rows)

    def predict(self, X: Any, *, on_bad_rows: str = "fail"):
        """1 where the score is above :attr:`threshold_`, else 0 (int64): the ``is_anomaly``
        column of ``swifthydra score``. With ``on_bad_rows="nan"`` a float array, NaN at bad rows."""
        import numpy as np

        scores = self.decision_function(X, on_bad_rows=on_bad_rows)
        flagged = (scores > self.estimator.threshold_).astype(np.int64)
        if on_bad_rows == "nan":
            return np.where(np.isnan(scores), np.nan, flagged)
        return flagged

    def predict_proba(self, X: Any, method: str = "sigmoid", *, on_bad_rows: str = "fail"):
        """``[P(normal), P(anomaly)]`` per row (see :meth:`SwiftHydra.predict_proba`); with the
        default ``method="sigmoid"`` the second column is the ``probability`` column of
        ``swifthydra score``."""
        return self._apply(X, on_bad_rows, lambda F: self.estimator.predict_proba(F, method=method), width=2)

    def score(self, X: Any, *, id_column: str | None = None, on_bad_rows: str = "fail"):
        """What ``swifthydra score`` writes, as a DataFrame: the id column (``id_column``, else the
        training id column when ``X`` has it), ``score``, ``is_anomaly`` and ``probability``, one
        row per row of ``X`` (a DataFrame keeps ``X``'s index). With ``on_bad_rows="skip"`` bad
        rows are left out; with ``"nan"`` their score, is_anomaly (nullable boolean) and
        probability are empty."""
        import numpy as np
        import pandas as pd

        from swifthydra._scoring import sigmoid

        est = self.estimator
        id_column, chunks = self._prepared(X, on_bad_rows, id_column, resolve_id=True)
        frames = []
        for start, chunk, prepared, where in chunks:
            try:
                scores = est.decision_function(prepared.X)
            except InvalidInputError as exc:
                if where is None:
                    raise
                raise InvalidInputError(f"{where}: {exc}") from None
            frame = {} if id_column is None else {id_column: chunk[id_column].to_numpy()}
            frame.update({"score": scores, "is_anomaly": scores > est.threshold_, "probability": sigmoid(scores)})
            # a DataFrame keeps its index; a file's rows are numbered from 0 in file order
            index = chunk.index if where is None else pd.RangeIndex(start, start + len(chunk))
            frame = pd.DataFrame(frame, index=index)
            bad = prepared.bad
            if bad.any():
                if on_bad_rows == "skip":
                    frame = frame.loc[~bad]
                else:  # nan: empty score, flag and probability, as the command writes them
                    frame["is_anomaly"] = frame["is_anomaly"].astype("boolean")
                    frame.loc[bad, ["score", "probability"]] = np.nan
                    frame.loc[bad, "is_anomaly"] = pd.NA
            frames.append(frame)
        if not frames:
            empty = {} if id_column is None else {id_column: pd.Series([], dtype=object)}
            empty.update({"score": pd.Series([], dtype="float64"), "is_anomaly": pd.Series([], dtype="bool"),
                          "probability": pd.Series([], dtype="float64")})
            return pd.DataFrame(empty)
        return pd.concat(frames) if len(frames) > 1 else frames[0]


def load_model(path: str | os.PathLike) -> TableModel:
    """Load a model directory written by ``swifthydra fit`` with its saved preprocessing.

    The returned :class:`TableModel` scores raw tables (pandas DataFrames or CSV/TSV/Parquet files)
    exactly as ``swifthydra score`` does. A path that is not such a model directory, a damaged or
    foreign file, or a model saved from Python without table preprocessing (use
    :meth:`SwiftHydra.load` for those) is a :class:`~swifthydra.exceptions.ModelFileError`.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"path must be the path of a model directory, got a {type(path).__name__}.")
    model_dir = Path(path).expanduser()
    _, state = read_table_state(model_dir)
    return TableModel(model_dir, load_table_estimator(model_dir, state), state)
