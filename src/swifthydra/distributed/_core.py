"""The scoring of one pandas batch with a model directory, shared by the Ray and Spark paths."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from swifthydra.exceptions import InvalidInputError

OUTPUT_COLUMNS = ("score", "is_anomaly", "probability")  #: what ``swifthydra score`` writes per row

_CACHE: dict[tuple[str, int | None], FrameScorer] = {}
_LOCK = threading.Lock()


class FrameScorer:
    """A model directory loaded once: scores pandas DataFrames with the model's saved
    preprocessing, as ``swifthydra score`` does for each chunk of a file.

    Parameters
    ----------
    model_dir : path
        Written by ``swifthydra fit``.
    threads : int, optional
        PyTorch threads for scoring (default 1: one worker process per core).
    """

    def __init__(self, model_dir: str | os.PathLike, threads: int | None = 1) -> None:
        from swifthydra.tabular.model import load_table_estimator, read_table_state

        self.model_dir = Path(model_dir)
        _, self.state = read_table_state(self.model_dir)
        self.preprocessor = self.state["preprocessor"]
        self.estimator = load_table_estimator(self.model_dir, self.state)
        if threads:
            self.estimator.n_jobs = int(threads)

    def check_columns(self, columns, id_column: str | None = None) -> None:
        """Raise the command line's error when ``columns`` do not fit the model."""
        self.preprocessor.check_columns(list(columns), allowed_extra=[id_column] if id_column else [])

    def score_frame(self, df, *, id_column: str | None = None, on_bad_rows: str = "fail",
                    first_row: int = 1, keep: tuple[str, ...] = ()):
        """``df`` scored: a DataFrame with ``id_column`` (when given), ``score``, ``is_anomaly`` and
        ``probability`` (and the ``keep`` columns of ``df`` first), one row per row of ``df``.

        ``on_bad_rows`` as in ``swifthydra score``: ``"fail"`` raises on a bad value, ``"skip"``
        leaves its row out, ``"nan"`` keeps it with an empty score, flag and probability.
        """
        import numpy as np
        import pandas as pd

        from swifthydra._validation import MAX_ABS_VALUE
        from swifthydra.tabular.model import probability as to_probability

        pre, est = self.preprocessor, self.estimator
        if id_column is not None and id_column not in df.columns:
            raise InvalidInputError(f"id column {id_column!r} is not in the data; columns are {list(df.columns)[:20]}.")
        self.check_columns([c for c in df.columns if c not in keep], id_column)
        out = {c: df[c].to_numpy() for c in keep}
        if id_column is not None:
            out[id_column] = df[id_column].to_numpy()
        if len(df) == 0:
            frame = pd.DataFrame(out)
            frame["score"] = pd.Series([], dtype="float64")
            frame["is_anomaly"] = pd.Series([], dtype="bool")
            frame["probability"] = pd.Series([], dtype="float64")
            return frame
        prepared = pre.transform_checked(df[pre.input_columns_], on_bad_rows=on_bad_rows, first_row=first_row,
                                         max_abs=MAX_ABS_VALUE)
        scores = est.decision_function(prepared.X)
        flagged = scores > est.threshold_
        probability = to_probability(scores)
        bad = prepared.bad
        out.update({"score": scores, "is_anomaly": flagged, "probability": probability})
        frame = pd.DataFrame(out, index=pd.RangeIndex(len(df)))
        if bad.any():
            if on_bad_rows == "skip":
                frame = frame.loc[~bad].reset_index(drop=True)
            else:  # nan: empty score, flag and probability, as the local command writes them
                frame["score"] = frame["score"].mask(bad, np.nan)
                frame["probability"] = frame["probability"].mask(bad, np.nan)
                frame["is_anomaly"] = pd.array(flagged, dtype="boolean")
                frame.loc[bad, "is_anomaly"] = pd.NA
        return frame


def model_scorer(model_dir: str | os.PathLike, threads: int | None = 1) -> FrameScorer:
    """The :class:`FrameScorer` of ``model_dir``, loaded once per process (cached by the resolved
    path and the modification time of its ``config.json``: a model refitted in place is reloaded)."""
    path = Path(model_dir).expanduser().resolve()
    try:
        stamp = (path / "config.json").stat().st_mtime_ns
    except OSError:
        stamp = None
    key = (str(path), stamp)
    with _LOCK:
        scorer = _CACHE.get(key)
        if scorer is None:
            scorer = FrameScorer(path, threads)
            for old in [k for k in _CACHE if k[0] == key[0]]:
                del _CACHE[old]
            _CACHE[key] = scorer
        return scorer
