"""``swifthydra evaluate MODEL DATA --truth-column C``: how well a model finds the anomalies of a
user's own labelled table, without writing Python.

The table is scored exactly as ``swifthydra score`` scores it (the model's saved preprocessing,
columns matched by name, read in chunks); the truth column is read beside the features and is not
one of them (it may be the label column the model was trained with). Reported: AUC-ROC, AUC-PR
(average precision, as in the benchmark), precision@k with k the number of true anomalies,
precision and recall at the model's threshold (``score > threshold`` = anomaly), and the confusion
matrix; with ``--out-dir`` also ``roc_curve.png``, ``pr_curve.png`` (matplotlib, the ``bench``
extra) and ``metrics.json``.

The table is read with the helpers of ``score`` (:mod:`swifthydra.cli._table`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from swifthydra.cli._common import guarded
from swifthydra.cli._table import (
    _scored_chunks,
    _StartupGC,
    _table_chunks,
    _threads,
    load_table_estimator,
    read_table_state,
)
from swifthydra.exceptions import InvalidInputError

#: truth values read as "anomaly" / "normal" without --positive-label (trimmed, any case): the same
#: vocabulary as fit's label column (swifthydra.tabular.table.POSITIVE_LABELS / NEGATIVE_LABELS;
#: spelt out here so the command line starts without importing the table module, and a test
#: checks the two are equal)
TRUE_ANOMALY = ("1", "1.0", "true", "yes", "y", "anomaly", "anomalous", "outlier")
TRUE_NORMAL = ("0", "0.0", "false", "no", "n", "normal", "inlier")
PLOT_FILES = ("roc_curve.png", "pr_curve.png")


def truth_labels(values, column: str, positive_label: str | None = None):
    """``(y, known)`` from the raw values of a truth column: ``y`` 1 = anomaly, 0 = normal;
    ``known`` is false where the value is missing (those rows are left out of the metrics).

    Without ``positive_label`` every value must be one of :data:`TRUE_ANOMALY` or
    :data:`TRUE_NORMAL`; with it, the values equal to it (as text in any case, or as numbers) are
    anomalies and every other value is normal.
    """
    import numpy as np

    from swifthydra.tabular.table import label_text, matches_label

    text = label_text(values)
    known = text.notna().to_numpy(dtype=bool)
    low = text.str.lower()
    present = text.dropna()
    if positive_label is not None:
        y = matches_label(text, positive_label, where=f"truth column {column!r}", listing=_most_frequent)
    else:
        unknown = present[~present.str.lower().isin(TRUE_ANOMALY + TRUE_NORMAL)]
        if len(unknown):
            raise InvalidInputError(
                f"truth column {column!r} has values {_most_frequent(present)}, not all read as anomaly "
                f"({', '.join(TRUE_ANOMALY)}) or normal ({', '.join(TRUE_NORMAL)}): pass --positive-label VALUE "
                f"with the value that marks an anomaly, e.g. --positive-label {unknown.value_counts().index[-1]}."
            )
        y = low.isin(TRUE_ANOMALY).fillna(False).to_numpy(dtype=bool)
    return y.astype(np.int64), known


def _most_frequent(values, n: int = 6) -> str:
    counts = values.value_counts()
    shown = ", ".join(f"{v!r} ({k})" for v, k in counts.iloc[:n].items())
    return shown + (f", ... ({len(counts) - n} more)" if len(counts) > n else "") if len(counts) else "none"


def evaluation_metrics(y, scores, threshold: float) -> dict[str, Any]:
    """The numbers of ``swifthydra evaluate`` for truth ``y`` (0/1, both present) and ``scores``."""
    import numpy as np
    from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

    y = np.asarray(y, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    k = int(y.sum())
    top = np.argsort(-scores, kind="stable")[:k]  # highest scores first, ties in row order
    predicted = scores > threshold
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, predicted.astype(np.int64), labels=[0, 1]).ravel())
    return {
        "rows": int(len(y)),
        "anomalies": k,
        "anomaly_share": k / len(y),
        "auc_roc": float(roc_auc_score(y, scores)),
        "auc_pr": float(average_precision_score(y, scores)),
        "k": k,
        "precision_at_k": float(y[top].mean()),
        "threshold": float(threshold),
        "flagged": int(predicted.sum()),
        "flagged_share": float(predicted.mean()),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def _plots(y, scores, m: dict[str, Any], out_dir: Path, title: str) -> list[Path]:
    """ROC and precision-recall curves as PNG files in ``out_dir``; the model's threshold is marked."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    cm = m["confusion_matrix"]
    fpr_at = cm["fp"] / max(cm["fp"] + cm["tn"], 1)
    paths = []
    fig, ax = plt.subplots(figsize=(5, 4.6))
    fpr, tpr, _ = roc_curve(y, scores)
    ax.plot(fpr, tpr, color="tab:blue", lw=1.6, label=f"model (AUC-ROC {m['auc_roc']:.3f})")
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="random ranking (0.5)")
    ax.scatter([fpr_at], [m["recall"]], color="tab:red", zorder=3, label=f"threshold {m['threshold']:.4g}")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="false positive rate (normal rows flagged)",
           ylabel="true positive rate (recall)")
    paths.append(_save(plt, fig, ax, f"ROC: {title}", "lower right", out_dir / PLOT_FILES[0]))

    fig, ax = plt.subplots(figsize=(5, 4.6))
    precision, recall, _ = precision_recall_curve(y, scores)
    ax.step(recall, precision, where="post", color="tab:blue", lw=1.6, label=f"model (AUC-PR {m['auc_pr']:.3f})")
    ax.axhline(m["anomaly_share"], color="0.6", lw=1, ls="--",
               label=f"random ranking ({m['anomaly_share']:.3f})")
    ax.scatter([m["recall"]], [m["precision"]], color="tab:red", zorder=3, label=f"threshold {m['threshold']:.4g}")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="recall (anomalies found)",
           ylabel="precision (flagged rows that are anomalies)")
    paths.append(_save(plt, fig, ax, f"Precision-recall: {title}", "best", out_dir / PLOT_FILES[1]))
    return paths


def _save(plt, fig, ax, title: str, legend_loc: str, path: Path) -> Path:
    """Title, grid and legend of one evaluation plot; write it as PNG and close it."""
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc=legend_loc)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="Model directory written by `swifthydra fit`.")],
    data: Annotated[Path, typer.Argument(help="Labelled table: .csv, .tsv or .parquet with the training columns.")],
    truth_column: Annotated[
        str, typer.Option(help="Column of the true answer per row: 1 (or true/yes/anomaly) = anomaly, 0 (or "
                          "false/no/normal) = normal, empty = unknown (left out). Not a feature.")
    ],
    positive_label: Annotated[
        str | None, typer.Option(help="The value of --truth-column that marks an anomaly (e.g. fraud); every other "
                                 "value is normal.")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option(help="Write roc_curve.png, pr_curve.png and metrics.json into this directory.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as one JSON object.")] = False,
    id_column: Annotated[
        str | None, typer.Option(help="A column that identifies rows, allowed in the table beside the features.")
    ] = None,
    chunk_rows: Annotated[int, typer.Option(help="Rows read and scored at a time.")] = 100_000,
    threads: Annotated[int, typer.Option(help="PyTorch threads for scoring (0 = all cores).")] = 0,
) -> None:
    """Judge a model on your own labelled table: AUC-ROC, AUC-PR, precision@k, precision and recall at
    the threshold, confusion matrix, ROC and PR plots."""
    import importlib.util

    import numpy as np

    from swifthydra.tabular.table import table_columns

    if chunk_rows < 1:
        raise InvalidInputError(f"--chunk-rows must be >= 1, got {chunk_rows}.")
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise InvalidInputError(f"--out-dir {out_dir} exists and is not a directory.")
    n_jobs = _threads(threads)
    with _StartupGC() as startup:
        columns = table_columns(data)  # a missing or unreadable file fails now, before the model loads
        if truth_column not in columns:
            raise InvalidInputError(
                f"truth column {truth_column!r} is not in {data}; columns are {columns[:20]}."
            )
        _, state = read_table_state(model_dir)
        pre = state["preprocessor"]
        if truth_column in pre.input_columns_:
            raise InvalidInputError(
                f"truth column {truth_column!r} is a feature of the model in {model_dir} (it was trained on it): a "
                "model that sees the answer cannot be judged by it; fit it with --label-column "
                f"{truth_column} (or on a table without that column)."
            )
        extra = [c for c in (id_column,) if c is not None and c != truth_column]
        if extra and extra[0] not in columns:
            raise InvalidInputError(f"id column {extra[0]!r} is not in {data}; columns are {columns[:20]}.")
        # the truth column travels beside the features like an id column: read, never a feature
        pre.check_columns(columns, allowed_extra=[truth_column, *extra])
        with _table_chunks(state, data, [c for c in columns if c not in extra], chunk_rows, truth_column) as chunks:
            est = load_table_estimator(model_dir, state)
            startup.done()
            est.n_jobs = n_jobs
            score_parts, truth_parts = [], []
            for _, chunk, _, scores in _scored_chunks(est, chunks, data):
                score_parts.append(np.asarray(scores, dtype=np.float64))
                truth_parts.append(chunk[truth_column].to_numpy(dtype=object))
    scores = np.concatenate(score_parts) if score_parts else np.empty(0)
    truth = np.concatenate(truth_parts) if truth_parts else np.empty(0, dtype=object)
    if len(scores) == 0:
        raise InvalidInputError(f"{data} has no data rows to evaluate.")
    y, known = truth_labels(truth, truth_column, positive_label)
    n_unknown = int((~known).sum())
    y, scores = y[known], scores[known]
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        only = "anomalies" if n_pos else "normal rows"
        raise InvalidInputError(
            f"truth column {truth_column!r} holds only {only} ({len(y)} rows with a value"
            + (f", {n_unknown} empty" if n_unknown else "")
            + "): AUC and precision need both classes; evaluate on a table with known anomalies and known normal rows"
            + ("" if positive_label else " (or pass --positive-label VALUE with the value that marks an anomaly)")
            + "."
        )
    m = evaluation_metrics(y, scores, est.threshold_)
    m = {"model": str(model_dir), "data": str(data), "truth_column": truth_column, "positive_label": positive_label,
         "rows_without_truth": n_unknown, **m, "contamination": float(est.contamination)}
    notes = []
    if n_pos > len(y) / 2:
        notes.append(f"more than half the rows are anomalies by the truth column ({n_pos} of {len(y)}): is the label "
                     "inverted (e.g. -1/1 with 1 = normal)? check --positive-label")
    plots: list[Path] = []
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if importlib.util.find_spec("matplotlib") is None:
            notes.append("matplotlib is not installed: no ROC/PR plots written (pip install 'swifthydra[bench]')")
        else:
            plots = _plots(y, scores, m, out_dir, f"{Path(model_dir).name} on {Path(data).name}")
        m["plots"] = [str(p) for p in plots]
        (out_dir / "metrics.json").write_text(json.dumps({**m, "notes": notes}, indent=2) + "\n", encoding="utf-8")
    m["notes"] = notes
    if as_json:
        typer.echo(json.dumps(m, indent=2))
        for note in notes:
            typer.echo(f"note: {note}", err=True)
        return
    cm = m["confusion_matrix"]
    digits = max(len(f"{v:,}") for v in cm.values())
    w1, w2 = max(digits, len("flagged")) + 4, max(digits, len("not flagged")) + 4
    lines = [
        f"evaluated {model_dir} on {data}: {m['rows']} rows with a truth value, {n_pos} anomalies "
        f"({m['anomaly_share']:.1%})" + (f"; {n_unknown} rows without one left out" if n_unknown else ""),
        f"AUC-ROC          {m['auc_roc']:.4f}   (0.5 = random ranking, 1 = every anomaly above every normal row)",
        f"AUC-PR           {m['auc_pr']:.4f}   (average precision; random ranking: {m['anomaly_share']:.4f})",
        f"precision@{m['k']:<6d} {m['precision_at_k']:.4f}   (share of anomalies among the {m['k']} top-scored rows, "
        "k = number of true anomalies)",
        f"at the threshold {m['threshold']:.4g} (score > threshold = anomaly; {m['flagged']} rows flagged, "
        f"{m['flagged_share']:.1%}, trained for {m['contamination']:.1%}):",
        f"  precision      {m['precision']:.4f}   (flagged rows that are anomalies)",
        f"  recall         {m['recall']:.4f}   (anomalies that are flagged)",
        "confusion matrix",
        f"  {'truth':10s}{'flagged':>{w1}s}{'not flagged':>{w2}s}",
        f"  {'anomaly':10s}{cm['tp']:>{w1},}{cm['fn']:>{w2},}",
        f"  {'normal':10s}{cm['fp']:>{w1},}{cm['tn']:>{w2},}",
    ]
    if out_dir is not None:
        lines.append(f"wrote {', '.join(str(p) for p in [*plots, out_dir / 'metrics.json'])}")
    else:
        lines.append("(pass --out-dir DIR for ROC and PR plots)")
    typer.echo("\n".join(lines))
    for note in notes:
        typer.echo(f"note: {note}", err=True)


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to a Typer app, wrapped by :func:`~swifthydra.cli._common.guarded` (one-line errors)."""
    app.command("evaluate")(guarded(evaluate))
