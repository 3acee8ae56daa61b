"""``swifthydra fit`` / ``score`` / ``explain`` / ``info`` / ``export-onnx``: from a CSV or Parquet
file to anomaly scores without writing Python.

A model directory written by ``fit`` is a :meth:`SwiftHydra.save` directory plus
``preprocessing.json`` (covered by a checksum in ``config.json``): the fitted
:class:`~swifthydra.datasets.table.TablePreprocessor`, the label and id columns and where the
model was trained. ``score`` and ``explain`` apply exactly that preprocessing, matching columns
by name, and read the input in chunks so a file larger than memory streams through.

The main app adds these commands with :func:`register` (``register(app, guarded)``); heavy
libraries are imported inside the commands.
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from swifthydra.exceptions import InvalidInputError, ModelFileError

PREPROCESSING_FILE = "preprocessing.json"
PREPROCESSING_FORMAT = 1
_OUTPUT_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv"}


# ---------------------------------------------------------------------------------- helpers
def _echo_err(message: str) -> None:
    typer.echo(message, err=True)


def _check_new_model_dir(out: Path, force: bool) -> None:
    """Fail before training when ``out`` cannot be written (exists without --force, not a model)."""
    from swifthydra.io import CONFIG_FILE

    if out.exists():
        if not force:
            raise InvalidInputError(f"{out} already exists: choose another --out or pass --force to replace it.")
        if not out.is_dir() or not (out / CONFIG_FILE).is_file():
            raise InvalidInputError(
                f"{out} exists and is not a swifthydra model directory: refusing to replace it, even with --force."
            )


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


_MODEL_KIND = "swifthydra.SwiftHydra"  # swifthydra.hydra.MODEL_KIND, named here without importing torch


def read_table_state(model_dir: Path, *, need_preprocessing: bool = True):
    """``(config meta, preprocessing state)`` of a model directory, checked, without loading the
    model (no torch): the state's ``"preprocessor"`` is a :class:`TablePreprocessor`.

    The state is ``None`` for a model saved from Python without one (allowed only when
    ``need_preprocessing`` is false).
    """
    from swifthydra.datasets.table import TablePreprocessor
    from swifthydra.io import read_model_config, read_model_json

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


def _probability(scores):
    """``predict_proba(X)[:, 1]`` of SwiftHydra from its scores (sigmoid of the clipped logit)."""
    from swifthydra._scoring import sigmoid

    return sigmoid(scores)


def _resolve_id_column(columns: list[str], id_column: str | None, state: dict, path: Path) -> str | None:
    """The id column to carry into the output: the one given, else the training id column when
    the file has it."""
    if id_column is not None:
        if id_column not in columns:
            raise InvalidInputError(f"id column {id_column!r} is not in {path}; columns are {columns[:20]}.")
        return id_column
    trained = state.get("id_column")
    return trained if trained is not None and trained in columns else None


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


def _prepared_chunks(pre, data: Path, wanted: list[str], chunk_rows: int, strings: list[str],
                     on_bad_rows: str | None = None):
    """Yield ``(start_row, chunk DataFrame, X)``: each chunk of the file and its features; with
    ``on_bad_rows`` (fail, skip or nan) ``(start_row, chunk DataFrame, Prepared)`` instead
    (:meth:`TablePreprocessor.transform_checked`: the features, the rows with a bad value, the
    values outside the training range). Numbers beyond ±1e30 are bad values."""
    from swifthydra._validation import MAX_ABS_VALUE
    from swifthydra.datasets.table import iter_table

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


def _table_chunks(state: dict, data: Path, columns: list[str], chunk_rows: int, id_column: str | None,
                  on_bad_rows: str | None = None) -> _Prefetch:
    """Check the table's ``columns`` against the preprocessing and start reading it: a
    :class:`_Prefetch` of ``(start_row, chunk DataFrame, X)`` (use it in a ``with`` block); with
    ``on_bad_rows``, of ``(start_row, chunk DataFrame, Prepared)`` (see :func:`_prepared_chunks`)."""
    pre = state["preprocessor"]
    pre.check_columns(columns, allowed_extra=[id_column] if id_column else [])
    wanted = list(pre.input_columns_) + ([id_column] if id_column and id_column not in pre.input_columns_ else [])
    # CSV: categorical, timestamp and id columns as text, so every chunk types them as in the whole file
    strings = list(pre.categories_) + list(pre.datetimes_)
    strings += [id_column] if id_column and id_column not in pre.input_columns_ else []
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


def fit(
    data: Annotated[Path, typer.Argument(help="Training table: .csv, .tsv or .parquet with a header row.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.")],
    label_column: Annotated[
        str | None,
        typer.Option(help="Column of known anomalies: 1 (or true/yes/anomaly, or --positive-label) = anomaly, "
                     "anything else or empty = unlabeled."),
    ] = None,
    positive_label: Annotated[
        str | None, typer.Option(help="The value of --label-column that marks a known anomaly, e.g. fraud.")
    ] = None,
    id_column: Annotated[str | None, typer.Option(help="Column of row ids: kept out of the features.")] = None,
    contamination: Annotated[float, typer.Option(help="Expected share of anomalies: sets the threshold of is_anomaly.")] = 0.1,
    episodes: Annotated[int | None, typer.Option(help="Generation episodes after episode 0 (default 4; 2 with --quick).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same data, same model.")] = 0,
    drop_non_numeric: Annotated[bool, typer.Option(help="Drop non-numeric columns instead of one-hot encoding them.")] = False,
    reject_missing: Annotated[bool, typer.Option(help="Refuse missing values instead of imputing them.")] = False,
    quick: Annotated[bool, typer.Option(help="A smaller, faster Swift Hydra (as `swifthydra demo --quick`).")] = False,
    max_rows: Annotated[
        int | None, typer.Option(help="Train on a random sample of this many rows (every labelled anomaly is kept).")
    ] = None,
    threads: Annotated[int, typer.Option(help="PyTorch threads while fitting (0 = all cores; 1 is fastest for these small networks).")] = 1,
    force: Annotated[bool, typer.Option(help="Replace an existing model directory (only once the new one is complete).")] = False,
) -> None:
    """Fit Swift Hydra on a CSV or Parquet table and save the model with its preprocessing."""
    import numpy as np

    from swifthydra.callbacks import EpisodeLog, ProgressBar
    from swifthydra.datasets.table import _MAX_CATEGORIES, read_table
    from swifthydra.hydra import SwiftHydra
    from swifthydra.presets import QUICK_PARAMS

    _check_new_model_dir(out, force)
    if episodes is not None and episodes < 0:
        raise InvalidInputError(f"--episodes must be >= 0, got {episodes}.")
    if max_rows is not None and max_rows < 8:
        raise InvalidInputError(f"--max-rows must be at least 8, got {max_rows}.")
    if not 0 < contamination <= 0.5:
        raise InvalidInputError(f"--contamination must be in (0, 0.5], got {contamination}.")
    if label_column is not None and label_column == id_column:
        raise InvalidInputError("--label-column and --id-column must be different columns.")
    if positive_label is not None and label_column is None:
        raise InvalidInputError("--positive-label needs --label-column: the column whose value it is.")
    t0 = time.perf_counter()
    table = read_table(
        data, label_column, id_column=id_column,
        categorical="drop" if drop_non_numeric else "onehot",
        missing="reject" if reject_missing else "impute",
        positive_label=positive_label,
    )
    X, y = table.X, table.y
    n_rows = X.shape[0]
    if max_rows is not None and n_rows > max_rows:
        rng = np.random.RandomState(seed)
        known = np.flatnonzero(y == 1) if y is not None else np.empty(0, dtype=np.int64)
        if len(known) >= max_rows:
            raise InvalidInputError(f"--max-rows {max_rows} is not more than the {len(known)} labelled anomalies.")
        rest = np.setdiff1d(np.arange(n_rows), known)
        keep = np.sort(np.concatenate([known, rng.choice(rest, max_rows - len(known), replace=False)]))
        X = X[keep]
        y = y[keep] if y is not None else None
    n_known = int(y.sum()) if y is not None else 0
    pre = table.preprocessor
    _echo_err(
        f"{data}: {n_rows} rows, {len(pre.input_columns_)} columns -> {X.shape[1]} features"
        + (f"; training on a sample of {X.shape[0]} rows" if X.shape[0] < n_rows else "")
        + (f"; {n_known} known anomalies" if label_column else "; no label column")
        + ("" if n_known else " (unsupervised: IForest+ECOD pseudo-labels seed the loop)")
        + (f"; dropped non-numeric columns {pre.dropped_columns_}" if pre.dropped_columns_ else "")
        + (f"; timestamps {pre.datetime_columns_} -> hour, weekday, elapsed_days" if pre.datetimes_ else "")
    )
    for c, cats in pre.categories_.items():
        if len(cats) >= _MAX_CATEGORIES:
            _echo_err(
                f"warning: column {c!r} has more than {_MAX_CATEGORIES} distinct values: only the {_MAX_CATEGORIES} most "
                "frequent get a one-hot feature (the rest share __other__); if it identifies rows, pass --id-column "
                f"{c}, or --drop-non-numeric."
            )
    params: dict[str, Any] = dict(QUICK_PARAMS["swifthydra"]) if quick else {}
    if episodes is not None:
        params["episodes"] = episodes
    est = SwiftHydra(contamination=contamination, random_state=seed, n_jobs=_threads(threads), **params)
    # progress bars on a terminal, one line per stage and episode otherwise (logs, pipes)
    progress = ProgressBar(sys.stderr) if sys.stderr.isatty() else EpisodeLog(sys.stderr)
    try:
        est.fit(X, y, callbacks=[progress])
    finally:
        if isinstance(progress, ProgressBar):
            progress.close()
    fit_seconds = time.perf_counter() - t0
    state = {
        "format": PREPROCESSING_FORMAT,
        "preprocessor": pre.to_dict(),
        "feature_names": pre.feature_names_,
        "label_column": label_column,
        "id_column": id_column,
        "training": {
            "file": str(Path(data).resolve()),
            "rows": int(n_rows),
            "rows_used": int(X.shape[0]),
            "known_anomalies": n_known,
            "seconds": round(fit_seconds, 3),
            "command": "swifthydra " + " ".join(sys.argv[1:]) if sys.argv and "swifthydra" in sys.argv[0] else None,
        },
    }
    # Self-check before the model is moved into place: reload it, score a sample of the training
    # rows as `score` would, compare with the model in memory (a failure keeps any old model).
    from swifthydra._fit_check import check_saved_model

    checked: dict = {}
    replacing = out.exists()
    est.save(out, overwrite=force, extra_files={PREPROCESSING_FILE: state}, verify=lambda tmp: checked.update(
        check_saved_model(tmp, est, table.X, Path(data), target=out, replacing=replacing)))
    flagged = float(np.mean(est.labels_))
    typer.echo(
        f"saved {out}: {X.shape[1]} features, {len(est.history_) - 1} episodes (best {est.best_episode_}), "
        f"threshold {est.threshold_:.4g} ({flagged:.1%} of training rows above it), {fit_seconds:.1f} s; "
        f"self-check ok ({checked['rows']} training rows re-read and re-scored from the saved files, max |score "
        f"difference| {checked['max_difference']:.1e})"
    )


# ------------------------------------------------------------------------------------ score
def score(
    model_dir: Annotated[Path, typer.Argument(help="Model directory written by `swifthydra fit`.")],
    data: Annotated[Path, typer.Argument(help="Table to score: .csv, .tsv or .parquet, same columns as in training.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file: .parquet, .csv or .tsv.")],
    chunk_rows: Annotated[int, typer.Option(help="Rows read, scored and written at a time (memory stays flat).")] = 100_000,
    id_column: Annotated[
        str | None, typer.Option(help="Column copied to the output to identify rows (default: the training id column, when present).")
    ] = None,
    threads: Annotated[int, typer.Option(help="PyTorch threads for scoring (0 = all cores).")] = 0,
    force: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    on_bad_rows: Annotated[
        str,
        typer.Option(help="A row with a value that cannot be used (text in a numeric column, inf, a date that does "
                     "not parse): fail (stop with an error naming it), skip (leave the row out of the output) or "
                     "nan (keep the row with empty score, is_anomaly and probability)."),
    ] = "fail",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    engine: Annotated[
        str,
        typer.Option(help="local, or ray: DATA is Parquet files (a glob such as 'data/part-*.parquet' or a directory), "
                     "scored on a Ray actor pool; --out is a directory, one output file per input file."),
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address with --engine ray (default: RAY_ADDRESS or a local Ray).")
    ] = None,
) -> None:
    """Score a table in chunks: writes score, is_anomaly (score > threshold) and probability per row.

    The summary counts, per numeric column, the values outside the training range; a warning on
    standard error says when the share of rows above the threshold is more than 3 times the
    training contamination or less than a third of it (with at least 10 rows expected above it).
    """
    from swifthydra.datasets.table import BAD_ROWS

    if engine != "local":
        from swifthydra.distributed.ray import score_command

        score_command(model_dir, str(data), out, engine=engine, address=address, id_column=id_column,
                      chunk_rows=chunk_rows, on_bad_rows=on_bad_rows, force=force, as_json=as_json)
        return
    out_kind = _output_kind(out)
    if chunk_rows < 1:
        raise InvalidInputError(f"--chunk-rows must be >= 1, got {chunk_rows}.")
    if on_bad_rows not in BAD_ROWS:
        raise InvalidInputError(f"--on-bad-rows must be one of {', '.join(BAD_ROWS)}, got {on_bad_rows!r}.")
    if out.exists() and not force:
        raise InvalidInputError(f"{out} already exists: choose another --out or pass --force to replace it.")
    if out.is_dir():
        raise InvalidInputError(f"--out {out} is a directory: give the path of the file to write.")
    if data.exists() and out.exists() and out.resolve() == data.resolve():
        raise InvalidInputError("--out must not be the input file.")
    n_jobs = _threads(threads)
    from swifthydra.datasets.table import table_columns

    with _StartupGC() as startup:
        columns = table_columns(data)  # a missing or unreadable file fails now, before the model loads
        _, state = read_table_state(model_dir)
        id_column = _resolve_id_column(columns, id_column, state, data)
        # the first chunks are read and preprocessed while torch & co. are imported and the model loads
        with _table_chunks(state, data, columns, chunk_rows, id_column, on_bad_rows) as chunks:
            est = load_table_estimator(model_dir, state)
            startup.done()
            est.n_jobs = n_jobs
            t0 = time.perf_counter()
            out.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
            os.close(fd)
            tmp = Path(tmp_name)
            n_rows = n_scored = n_flagged = n_bad = 0
            first_bad = None
            outside = {c: 0 for c in state["preprocessor"].ranges_}
            try:
                with _ScoreWriter(tmp, out_kind, id_column) as writer:
                    for _, chunk, prepared, scores in _scored_chunks(est, chunks, data):
                        bad = prepared.bad
                        ids = chunk[id_column] if id_column else None
                        flagged = scores > est.threshold_
                        probability = _probability(scores)
                        n_rows += len(scores)
                        if bad.any():
                            n_bad += int(bad.sum())
                            first_bad = first_bad or prepared.first_bad
                            if on_bad_rows == "skip":
                                keep = ~bad
                                ids = ids[keep] if ids is not None else None
                                scores, flagged, probability, bad = scores[keep], flagged[keep], probability[keep], bad[keep]
                        writer.write(ids, scores, flagged, probability, missing=bad if bad.any() else None)
                        n_scored += int((~bad).sum())
                        n_flagged += int((flagged & ~bad).sum())
                        for c, k in prepared.out_of_range.items():
                            outside[c] = outside.get(c, 0) + k
                os.replace(tmp, out)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
    seconds = time.perf_counter() - t0
    share = n_flagged / n_scored if n_scored else 0.0
    contamination = float(est.contamination)
    warnings = []
    if n_bad:
        one = n_bad == 1
        what = (f"{'was' if one else 'were'} left out of the output" if on_bad_rows == "skip"
                else f"{'has' if one else 'have'} an empty score, is_anomaly and probability")
        warnings.append(f"{n_bad} row{'' if one else 's'} with a bad value {what}; the first: {first_bad}")
    if n_scored * contamination >= 10 and not contamination / 3 <= share <= 3 * contamination:
        warnings.append(
            f"{share:.1%} of the rows scored are above the threshold, far from the {contamination:.1%} the model "
            f"flags on its training data (contamination): these rows differ from the training data (drift, a "
            "column with other units or meaning, another population); check the values outside the training range"
        )
    for w in warnings:
        _echo_err(f"warning: {w}")
    if as_json:
        import json

        typer.echo(json.dumps({
            "output": str(out), "rows": n_rows, "scored": n_scored, "flagged": n_flagged, "flagged_share": share,
            "contamination": contamination, "threshold": float(est.threshold_),
            "bad_rows": {"policy": on_bad_rows, "count": n_bad, "first": first_bad},
            "outside_training_range": outside, "warnings": warnings, "seconds": round(seconds, 3),
        }, indent=2))
        return
    shown = {c: k for c, k in outside.items() if k}
    typer.echo(
        f"scored {n_rows} rows -> {out}: {n_flagged} above the threshold ({share:.2%}), "
        f"{seconds:.1f} s ({n_rows / max(seconds, 1e-9):,.0f} rows/s); "
        + (f"values outside the training range: {', '.join(f'{c} {k}' for c, k in shown.items())}" if shown
           else "no value outside the training range")
        + (f"; {n_bad} row{'' if n_bad == 1 else 's'} with bad values {'left out' if on_bad_rows == 'skip' else 'without a score'}"
           if n_bad else "")
    )


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


# ---------------------------------------------------------------------------------- explain
def explain(
    model_dir: Annotated[Path, typer.Argument(help="Model directory written by `swifthydra fit`.")],
    data: Annotated[Path, typer.Argument(help="Table to explain: .csv, .tsv or .parquet.")],
    top: Annotated[int, typer.Option(help="Explain this many of the top-scored rows.")] = 10,
    features: Annotated[int, typer.Option(help="Columns shown per row, largest contribution first.")] = 5,
    method: Annotated[
        str,
        typer.Option(help="occlusion (score drop when the column takes its typical value), integrated-gradients, or gradient (gradient x input)."),
    ] = "occlusion",
    id_column: Annotated[str | None, typer.Option(help="Column that identifies rows (default: the training id column, when present).")] = None,
    chunk_rows: Annotated[int, typer.Option(help="Rows read and scored at a time.")] = 100_000,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or markdown.")] = "table",
    threads: Annotated[int, typer.Option(help="PyTorch threads for scoring (0 = all cores).")] = 0,
) -> None:
    """For the top-scored rows, which columns push the score up (attribution against a typical row)."""
    import numpy as np
    import pandas as pd

    from swifthydra.explain import METHODS, attribute

    if top < 1 or features < 1:
        raise InvalidInputError(f"--top and --features must be >= 1, got {top} and {features}.")
    if method not in METHODS:
        raise InvalidInputError(f"--method must be one of {list(METHODS)}, got {method!r}.")
    if fmt not in ("table", "csv", "markdown"):
        raise InvalidInputError(f"--format must be table, csv or markdown, got {fmt!r}.")
    if chunk_rows < 1:
        raise InvalidInputError(f"--chunk-rows must be >= 1, got {chunk_rows}.")
    n_jobs = _threads(threads)
    from swifthydra.datasets.table import table_columns

    with _StartupGC() as startup:
        columns = table_columns(data)  # a missing or unreadable file fails now, before the model loads
        _, state = read_table_state(model_dir)
        id_col = _resolve_id_column(columns, id_column, state, data)
        chunks = _table_chunks(state, data, columns, chunk_rows, id_col)  # read while the model loads
        try:
            est = load_table_estimator(model_dir, state)
        except BaseException:
            chunks.close()
            raise
        startup.done()
    est.n_jobs = n_jobs
    pre = state["preprocessor"]
    # keep only the running top rows: their position, score, features and raw values
    best_rows = np.empty(0, dtype=np.int64)
    best_scores = np.empty(0)
    best_X = np.empty((0, est.n_features_in_))
    best_raw: pd.DataFrame | None = None
    with chunks:
        for start, chunk, X, scores in _scored_chunks(est, chunks, data):
            k = min(top, len(scores))
            idx = np.argpartition(-scores, k - 1)[:k]
            raw = chunk.iloc[idx].reset_index(drop=True)
            best_rows = np.concatenate([best_rows, start + idx])
            best_scores = np.concatenate([best_scores, scores[idx]])
            best_X = np.vstack([best_X, X[idx]])
            best_raw = raw if best_raw is None else pd.concat([best_raw, raw], ignore_index=True)
            order = np.lexsort((best_rows, -best_scores))[:top]  # highest score first, ties by row
            best_rows, best_scores, best_X = best_rows[order], best_scores[order], best_X[order]
            best_raw = best_raw.iloc[order].reset_index(drop=True)
    if best_raw is None:
        raise InvalidInputError(f"{data} has no data rows to explain.")
    groups = pre.feature_groups_
    contrib = attribute(est, best_X, baseline=pre.baseline_(), groups=groups, method=method)
    names = [g[0] for g in groups]
    baseline_text = pre.typical_values_()  # median, median timestamp, most frequent category
    records = []
    for r in range(len(best_rows)):
        order = np.argsort(-contrib[r], kind="stable")[:features]
        for j in order:
            col = names[j]
            records.append({
                "rank": r + 1,
                "row": int(best_rows[r]),
                **({id_col: best_raw[id_col].iloc[r]} if id_col else {}),
                "score": float(best_scores[r]),
                "is_anomaly": bool(best_scores[r] > est.threshold_),
                "column": col,
                "value": _fmt_value(best_raw[col].iloc[r]),
                "typical": baseline_text.get(col, ""),
                "contribution": float(contrib[r, j]),
            })
    df = pd.DataFrame.from_records(records)
    if fmt == "csv":
        typer.echo(df.to_csv(index=False), nl=False)
        return
    if fmt == "markdown":
        typer.echo(df.to_markdown(index=False, floatfmt=".4g") if _has_tabulate() else df.to_string(index=False))
        return
    from rich.console import Console
    from rich.table import Table

    what = "score drop when the column takes its typical value" if method == "occlusion" else (
        f"{method} estimate of the score drop when the column takes its typical value")
    title = f"Top {len(best_rows)} rows of {data.name} by score (threshold {est.threshold_:.4g}); contribution = {what}"
    table = Table(title=title, title_justify="left")
    for c in df.columns:
        table.add_column(str(c), justify="right" if c in ("rank", "row", "score", "contribution") else "left")
    previous = None
    for rec in df.to_dict("records"):
        first = rec["rank"] != previous
        previous = rec["rank"]
        cells = []
        for c in df.columns:
            v = rec[c]
            if c in ("rank", "row", "score", "is_anomaly") or c == id_col:
                v = ("" if not first else (f"{v:.4g}" if c == "score" else str(v)))
            elif c == "contribution":
                v = f"{v:+.4g}"
            cells.append(str(v))
        table.add_row(*cells, end_section=False)
    Console(width=max(120, len(title) + 4)).print(table)


def _fmt_value(v) -> str:
    import pandas as pd

    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return "<missing>"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------------- info
def info(
    model_dir: Annotated[Path, typer.Argument(help="Model directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as one JSON object.")] = False,
) -> None:
    """What a model is: kind, version, when and on what it was trained, threshold, history."""
    import json

    from swifthydra.hydra import MODEL_KIND
    from swifthydra.io import load_model_dir, read_model_json

    meta, tensors = load_model_dir(model_dir, MODEL_KIND)  # verifies every checksum
    power_columns = [int(j) for j in tensors["power.columns"].tolist()] if "power.columns" in tensors else []
    del tensors
    state = read_model_json(model_dir, PREPROCESSING_FILE, MODEL_KIND)
    names = (state or {}).get("feature_names") or []
    power_features = [names[j] if j < len(names) else f"x{j}" for j in power_columns]
    cfg = meta["config"]
    params = cfg.get("params", {})
    mome = cfg.get("mome")
    scorer = (
        f"MoME, {mome.get('architecture', {}).get('n_experts', '?')} experts "
        f"(top-{mome.get('params', {}).get('top_k', 1)}, {mome.get('params', {}).get('tokenizer', '?')} tokens)"
        if mome else "MambaDetector (large)"
    )
    history = cfg.get("history", [])
    summary = {
        "path": str(model_dir),
        "kind": meta["kind"],
        "format_version": meta["format_version"],
        "swifthydra_version": meta.get("swifthydra_version"),
        "created": meta.get("created"),
        "scorer": scorer,
        "n_features": cfg.get("n_features_in"),
        "threshold": cfg.get("threshold"),
        "contamination": params.get("contamination"),
        "episodes": params.get("episodes"),
        "generator": params.get("generator"),
        "best_episode": cfg.get("best_episode"),
        "pseudo_labels": cfg.get("used_pseudo_labels"),
        "power_transformed_features": power_features,
        "checksums": "ok",
        "history": history,
    }
    if state is not None:
        pre = state.get("preprocessor", {})
        summary["table"] = {
            "training": state.get("training"),
            "label_column": state.get("label_column"),
            "id_column": state.get("id_column"),
            "numeric_columns": pre.get("numeric_columns"),
            "categorical_columns": {c: len(v) for c, v in _categories(pre).items()},
            "datetime_columns": [c for c, _ in pre.get("datetimes", [])],
            "dropped_columns": pre.get("dropped_columns", []),
            "non_numeric": pre.get("categorical"),
            "missing": pre.get("missing"),
            "feature_names": state.get("feature_names"),
        }
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    lines = [
        f"model          {summary['kind']} (format {summary['format_version']}), written by swifthydra "
        f"{summary['swifthydra_version']} on {summary['created']}",
        f"scorer         {scorer}; {summary['n_features']} features",
        f"threshold      {summary['threshold']:.6g} (score > threshold = anomaly; contamination {summary['contamination']})",
        f"training       {max(len(history) - 1, 0)} of {summary['episodes']} episodes run (generator {summary['generator']}), "
        f"best episode {summary['best_episode']}, pseudo-labels {'yes' if summary['pseudo_labels'] else 'no'}",
    ]
    lines.append(
        f"skewed columns Yeo-Johnson on {len(power_features)}: {_short_list(power_features)}"
        if power_features else "skewed columns none transformed (standardisation only)"
    )
    if state is not None:
        t = summary["table"]
        tr = t["training"] or {}
        lines.append(
            f"trained on     {tr.get('file')}: {tr.get('rows')} rows ({tr.get('rows_used')} used), "
            f"{tr.get('known_anomalies')} known anomalies, {tr.get('seconds')} s"
        )
        lines.append(f"label column   {t['label_column'] or '(none)'}; id column {t['id_column'] or '(none)'}")
        lines.append(f"numeric        {len(t['numeric_columns'])}: {_short_list(t['numeric_columns'])}")
        cats = t["categorical_columns"]
        lines.append(
            f"categorical    {len(cats)}: "
            + (_short_list([f"{c} ({n} categories + __other__)" for c, n in cats.items()]) if cats else "-")
        )
        if t["datetime_columns"]:
            lines.append(
                f"datetime       {len(t['datetime_columns'])}: {_short_list(t['datetime_columns'])} "
                "(each -> hour, weekday, elapsed_days)"
            )
        if t["dropped_columns"]:
            lines.append(f"dropped        {_short_list(t['dropped_columns'])}")
        lines.append(
            f"missing values {'imputed (training median; __missing__ category)' if t['missing'] == 'impute' else 'rejected'}"
        )
        if tr.get("command"):
            lines.append(f"command        {tr['command']}")
    else:
        lines.append("table          (saved from Python: no table preprocessing; `swifthydra score` cannot use it)")
    lines.append("checksums      ok")
    lines.append("history")
    keys = ("episode", "kept", "generated_total", "detector_loss", "val_auc", "seconds")
    lines.append("  " + "  ".join(f"{k:>15s}" for k in keys))
    for row in history:
        cells = []
        for k in keys:
            v = row.get(k)
            cells.append(f"{'-' if v is None else (f'{v:.4g}' if isinstance(v, float) else v):>15}")
        lines.append("  " + "  ".join(cells))
    typer.echo("\n".join(lines))


def _categories(pre: dict) -> dict[str, list]:
    """The categories of a stored preprocessing, in feature order (a list of pairs; older files:
    an object)."""
    from swifthydra.datasets.table import TablePreprocessor

    try:
        return TablePreprocessor.from_dict(pre).categories_
    except InvalidInputError:
        return {}


def _short_list(items: list[str], n: int = 12) -> str:
    items = [str(i) for i in items]
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


# -------------------------------------------------------------------------------- export-onnx
def export_onnx(
    model_dir: Annotated[Path, typer.Argument(help="Model directory written by `swifthydra fit` (or SwiftHydra.save).")],
    out: Annotated[Path, typer.Argument(help="ONNX file to write.")],
    features_only: Annotated[
        bool, typer.Option(help="Graph input is the preprocessed feature matrix instead of the table's columns.")
    ] = False,
    check: Annotated[bool, typer.Option(help="Compare onnxruntime's scores with PyTorch's on synthetic rows.")] = True,
    force: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
) -> None:
    """Export the scorer (with the table preprocessing) to ONNX; checks it against PyTorch."""
    import importlib.util

    from swifthydra.onnx_export import check_export
    from swifthydra.onnx_export import export_onnx as do_export

    if out.exists() and not force:
        raise InvalidInputError(f"{out} already exists: choose another path or pass --force to replace it.")
    est, _, state = load_table_model(model_dir, need_preprocessing=False)
    pre = None if (features_only or state is None) else state["preprocessor"]
    names = state.get("feature_names") if state is not None else None
    do_export(est, out, preprocessor=pre, overwrite=force, feature_names=names,
              metadata={"swifthydra.model_dir": str(model_dir)})
    if pre is not None:
        inputs = f"{len(pre.numeric_columns_)} numeric columns (float64) and {len(pre.categories_)} categorical (string), by name"
    else:
        inputs = f"'features', float64 (batch, {est.n_features_in_})"
    typer.echo(f"wrote {out}: inputs {inputs}; outputs score, is_anomaly, probability")
    if check:
        if importlib.util.find_spec("onnxruntime") is None:
            typer.echo("onnxruntime is not installed: the export was not checked (pip install onnxruntime).")
            return
        diff = check_export(out, est, pre, n=512)
        typer.echo(f"onnxruntime agrees with PyTorch: max |score difference| {diff:.2e} on 512 synthetic rows")
        if diff > 1e-4:
            raise InvalidInputError(f"the exported graph differs from PyTorch by {diff:.2e}: please report this.")


def register(app: typer.Typer, guarded) -> None:
    """Add ``fit``, ``score``, ``explain``, ``info`` and ``export-onnx`` to a Typer app, each
    wrapped by ``guarded`` (one-line errors)."""
    app.command("fit")(guarded(fit))
    app.command("score")(guarded(score))
    app.command("explain")(guarded(explain))
    app.command("info")(guarded(info))
    app.command("export-onnx")(guarded(export_onnx))
