"""``swifthydra datasets list`` / ``download`` / ``info``: the registry of ADBench datasets and
the files on disk."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from swifthydra.cli._common import _has_tabulate, fail, guarded
from swifthydra.exceptions import SwiftHydraError

datasets_app = typer.Typer(help="List, download and inspect ADBench datasets.", no_args_is_help=True)


@datasets_app.command("list")
@guarded
def datasets_list(
    group: Annotated[str | None, typer.Option(help="Only this group: classical, cv or nlp.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Also show which datasets are on disk here.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or markdown.")] = "table",
) -> None:
    """Print the registry of ADBench datasets (47 classical, plus CV and NLP embeddings)."""
    from swifthydra.datasets import find_dataset_file, list_datasets

    df = list_datasets(group)
    df["local"] = [find_dataset_file(n, data_dir) is not None for n in df["name"]]
    df["anomaly_ratio"] = (df["anomaly_ratio"] * 100).round(2)
    df = df.rename(columns={"anomaly_ratio": "anomaly_%"})
    df["sha256"] = df["sha256"].map(lambda s: s[:12] if isinstance(s, str) else "")
    if fmt == "csv":
        typer.echo(df.to_csv(index=False), nl=False)
        return
    if fmt == "markdown":
        typer.echo(df.to_markdown(index=False) if _has_tabulate() else df.to_string(index=False))
        return
    if fmt != "table":
        raise fail(f"unknown format {fmt!r}: choose table, csv or markdown.")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ADBench datasets ({len(df)})")
    for col in df.columns:
        table.add_column(col, justify="right" if col in ("rows", "features", "anomalies", "anomaly_%") else "left")
    for row in df.itertuples(index=False):
        table.add_row(*["" if (v is None or (isinstance(v, float) and v != v) or str(v) == "<NA>") else str(v) for v in row])
    Console(width=200).print(table)


@datasets_app.command("download")
@guarded
def datasets_download(
    names: Annotated[list[str], typer.Argument(help="Dataset names or aliases, or 'all' / 'classical'.")],
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Store here instead of the user cache.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Download again even when the file is already on disk.")] = False,
) -> None:
    """Download datasets from ADBench's repository, verify them and store them atomically."""
    from swifthydra.datasets import DATASETS, download_dataset, find_dataset_file, get_dataset_info

    wanted: list[str] = []
    for name in names:
        key = name.strip().lower()
        if key == "all":
            wanted.extend(d.name for d in DATASETS)
        elif key in ("classical", "cv", "nlp"):
            wanted.extend(d.name for d in DATASETS if d.group == key)
        else:
            wanted.append(get_dataset_info(name).name)
    failures = 0
    for name in dict.fromkeys(wanted):
        existing = find_dataset_file(name, data_dir)
        if existing is not None and not force:
            typer.echo(f"{name}: already at {existing}")
            continue
        try:
            path = download_dataset(name, data_dir, progress=sys.stderr.isatty())
        except SwiftHydraError as exc:
            failures += 1
            typer.echo(f"error: {exc}", err=True)
            continue
        typer.echo(f"{name}: {path}")
    if failures:
        raise typer.Exit(1)


@datasets_app.command("info")
@guarded
def datasets_info(
    name: Annotated[str, typer.Argument(help="Dataset name or alias.")],
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Directory searched first.")] = None,
) -> None:
    """Show one dataset's registry entry and, when it is on disk, its actual shape."""
    from swifthydra.datasets import find_dataset_file, get_dataset_info, load_adbench

    info = get_dataset_info(name)
    for key in ("name", "short", "group", "rows", "features", "anomalies", "domain", "sha256"):
        typer.echo(f"{key:10s} {getattr(info, key)}")
    path = find_dataset_file(info.name, data_dir)
    typer.echo(f"{'path':10s} {path if path else '(not on disk; `swifthydra datasets download ' + info.short + '`)'}")
    if path is not None:
        X, y = load_adbench(info.name, data_dir, download=False)
        if info.sha256:
            verified = "checksum ok"
        else:  # load_adbench then checks what the registry knows instead
            known = [what for what, value in (("shape", info.rows if info.rows is not None else info.features),
                                               ("anomaly count", info.anomalies)) if value is not None]
            verified = "checksum not checked (none registered)" + (
                f"; {' and '.join(known)} match the registry" if known else "")
        typer.echo(f"{'loaded':10s} X {X.shape}, {int(y.sum())} anomalies, {verified}")


def register(app: typer.Typer) -> None:
    """Add the ``datasets`` group to a Typer app."""
    app.add_typer(datasets_app, name="datasets")
