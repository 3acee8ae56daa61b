"""The ``swifthydra`` command line (Typer).

Every command turns a :class:`~swifthydra.exceptions.SwiftHydraError` into a one-line message on
standard error and a non-zero exit status; heavy libraries are imported inside the commands so
``swifthydra --help`` stays fast.
"""

from __future__ import annotations

import functools
import gc
import sys
from pathlib import Path
from typing import Annotated

import typer

from swifthydra.exceptions import SwiftHydraError

app = typer.Typer(
    name="swifthydra",
    help="Swift Hydra anomaly detection: datasets, benchmark, fit and score.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
datasets_app = typer.Typer(help="List, download and inspect ADBench datasets.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")

EXIT_USER_ERROR = 2


def fail(message: str, code: int = EXIT_USER_ERROR) -> typer.Exit:
    """Print ``error: message`` on standard error and return the exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def guarded(fn):
    """Run a command, turning swifthydra errors (and Ctrl-C) into one line and an exit status."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SwiftHydraError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper


def _version_callback(value: bool) -> None:
    if value:
        from swifthydra import __version__

        typer.echo(f"swifthydra {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Swift Hydra anomaly detection: datasets, benchmark, fit and score."""


# --------------------------------------------------------------------------------------- datasets
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


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


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


# ------------------------------------------------------------------------------------------- demo
@app.command()
@guarded
def demo(
    dataset: Annotated[str, typer.Option(help="Built-in dataset: wdbc or wine.")] = "wdbc",
    labeled_ratio: Annotated[float, typer.Option(help="Fraction of training anomalies that keep their label.")] = 0.05,
    seed: Annotated[int, typer.Option(help="ADBench split seed.")] = 1,
    protocol: Annotated[str, typer.Option(help="adbench or clean.")] = "adbench",
    quick: Annotated[bool, typer.Option(help="A smaller Swift Hydra (fewer episodes and epochs).")] = False,
) -> None:
    """Run the main job on a built-in dataset: ADBench split, then detectors side by side."""
    from swifthydra.demo import run_demo
    from swifthydra.presets import QUICK_PARAMS

    run_demo(
        dataset=dataset, labeled_ratio=labeled_ratio, seed=seed, protocol=protocol,
        params=QUICK_PARAMS if quick else None,
    )


def _register_subcommands() -> None:
    from swifthydra.bench.cli import register
    from swifthydra.cli_evaluate import register as register_evaluate
    from swifthydra.cli_model import register as register_model

    register(app)
    register_model(app, guarded)
    register_evaluate(app, guarded)


_register_subcommands()


def main() -> None:
    """Entry point of the console script."""
    try:
        app()
    finally:
        # The command is over (its files written and closed). With torch, scikit-learn and pandas
        # loaded, the interpreter's last garbage collections at exit walk ~400,000 objects several
        # times (measured: 0.7 s of a 6 s `swifthydra score`). Freezing them skips only those
        # cycle searches: modules are still torn down, atexit handlers run, stdout/stderr are
        # flushed.
        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    main()
