"""``swifthydra explain``: for the top-scored rows of a table, which columns push the score up
(attribution against a typical row, :mod:`swifthydra.explain`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from swifthydra.cli._common import _has_tabulate, guarded
from swifthydra.cli._table import (
    _resolve_id_column,
    _scored_chunks,
    _StartupGC,
    _table_chunks,
    _threads,
    load_table_estimator,
    read_table_state,
)
from swifthydra.exceptions import InvalidInputError


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
    from swifthydra.tabular.table import table_columns

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


def register(app: typer.Typer) -> None:
    """Add ``explain`` to a Typer app, wrapped by :func:`~swifthydra.cli._common.guarded` (one-line errors)."""
    app.command("explain")(guarded(explain))
