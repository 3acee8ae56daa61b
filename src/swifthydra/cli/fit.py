"""``swifthydra fit``: train Swift Hydra on a CSV or Parquet table and save the model directory
with its preprocessing (``preprocessing.json``, see :mod:`swifthydra.cli._table`); the saved model
is re-read and re-scored before it is moved into place (:mod:`swifthydra._fit_check`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from swifthydra.cli._common import _echo_err, guarded
from swifthydra.cli._table import PREPROCESSING_FILE, PREPROCESSING_FORMAT, _threads
from swifthydra.exceptions import InvalidInputError


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
    generator: Annotated[
        str,
        typer.Option(help="Generated training anomalies: none (the default; measured level with rl at half the fit "
                     "time) or rl (the paper's PPO agent); cvae, nngmix and mixup are ablations."),
    ] = "none",
    episodes: Annotated[
        int | None, typer.Option(help="Generation episodes after episode 0, with --generator (default 4; 2 with --quick).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same data, same model.")] = 0,
    drop_non_numeric: Annotated[bool, typer.Option(help="Drop non-numeric columns instead of one-hot encoding them.")] = False,
    reject_missing: Annotated[bool, typer.Option(help="Refuse missing values instead of imputing them.")] = False,
    quick: Annotated[bool, typer.Option(help="A smaller, faster Swift Hydra (as `swifthydra demo --quick`).")] = False,
    max_rows: Annotated[
        int | None, typer.Option(help="Train on a random sample of this many rows (every labelled anomaly is kept).")
    ] = None,
    threads: Annotated[int, typer.Option(help="Threads while fitting (0 = all cores): training ops run on one thread each; with 2 or more the C-VAE trains beside the detector.")] = 1,
    force: Annotated[bool, typer.Option(help="Replace an existing model directory (only once the new one is complete).")] = False,
) -> None:
    """Fit Swift Hydra on a CSV or Parquet table and save the model with its preprocessing."""
    import numpy as np

    from swifthydra.callbacks import EpisodeLog, ProgressBar
    from swifthydra.hydra import _GENERATORS, SwiftHydra
    from swifthydra.presets import QUICK_PARAMS
    from swifthydra.tabular.table import _MAX_CATEGORIES, read_table

    _check_new_model_dir(out, force)
    if episodes is not None and episodes < 0:
        raise InvalidInputError(f"--episodes must be >= 0, got {episodes}.")
    if generator not in _GENERATORS:
        raise InvalidInputError(f"--generator must be one of {', '.join(_GENERATORS)}, got {generator!r}.")
    if episodes and generator == "none":
        raise InvalidInputError(f"--episodes {episodes} runs generation episodes, which --generator none (the default) "
                                "does not have: add --generator rl (the paper's agent).")
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
        from swifthydra.detectors import sample_rows

        n_known = int(y.sum()) if y is not None else 0
        if n_known >= max_rows:
            raise InvalidInputError(f"--max-rows {max_rows} is not more than the {n_known} labelled anomalies.")
        labels = y if y is not None else np.zeros(n_rows, dtype=np.int64)
        keep = sample_rows(labels, max_rows, np.random.RandomState(seed))
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
        + (f"; numbers with separators or a currency sign {list(pre.number_formats_)}" if pre.number_formats_ else "")
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
    params["generator"] = generator
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
        f"saved {out}: {X.shape[1]} features, "
        + (f"{len(est.history_) - 1} {generator} episodes (best {est.best_episode_}), " if generator != "none" else "")
        + f"threshold {est.threshold_:.4g} ({flagged:.1%} of training rows above it), {fit_seconds:.1f} s; "
        f"self-check ok ({checked['rows']} training rows re-read and re-scored from the saved files, max |score "
        f"difference| {checked['max_difference']:.1e})"
    )


def register(app: typer.Typer) -> None:
    """Add ``fit`` to a Typer app, wrapped by :func:`~swifthydra.cli._common.guarded` (one-line errors)."""
    app.command("fit")(guarded(fit))
