"""``swifthydra export-onnx``: the scorer, with the table preprocessing, as an ONNX graph
(:mod:`swifthydra.onnx_export`), checked against PyTorch with onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from swifthydra.cli._common import guarded
from swifthydra.cli._table import load_table_model
from swifthydra.exceptions import InvalidInputError


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


def register(app: typer.Typer) -> None:
    """Add ``export-onnx`` to a Typer app, wrapped by :func:`~swifthydra.cli._common.guarded` (one-line errors)."""
    app.command("export-onnx")(guarded(export_onnx))
