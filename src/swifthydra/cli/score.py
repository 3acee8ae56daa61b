"""``swifthydra score``: score a table in chunks (memory stays flat) into a Parquet, CSV or TSV
file: score, is_anomaly and probability per row, with the model's saved preprocessing; with
``--engine ray``, Parquet files on a Ray actor pool (:mod:`swifthydra.distributed.ray`)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from swifthydra.cli._common import _echo_err, guarded
from swifthydra.cli._table import (
    _output_kind,
    _probability,
    _resolve_id_column,
    _scored_chunks,
    _ScoreWriter,
    _StartupGC,
    _table_chunks,
    _threads,
    load_table_estimator,
    read_table_state,
)
from swifthydra.exceptions import InvalidInputError


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
    from swifthydra.tabular.table import BAD_ROWS

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
    from swifthydra.tabular.table import table_columns

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
        f"scored {n_rows} row{'' if n_rows == 1 else 's'} -> {out}: {n_flagged} above the threshold ({share:.2%}), "
        f"{seconds:.1f} s ({n_rows / max(seconds, 1e-9):,.0f} rows/s); "
        + (f"values outside the training range: {', '.join(f'{c} {k}' for c, k in shown.items())}" if shown
           else "no value outside the training range")
        + (f"; {n_bad} row{'' if n_bad == 1 else 's'} with bad values {'left out' if on_bad_rows == 'skip' else 'without a score'}"
           if n_bad else "")
    )


def register(app: typer.Typer) -> None:
    """Add ``score`` to a Typer app, wrapped by :func:`~swifthydra.cli._common.guarded` (one-line errors)."""
    app.command("score")(guarded(score))
