"""Command-line commands of the benchmark: ``bench`` (with ``export`` and ``models``) and ``report``.

The main ``swifthydra`` app adds them with :func:`register`::

    from swifthydra.bench.cli import register
    register(app)

``python -m swifthydra.bench`` runs the same commands on their own.

``--labeled-ratio``, ``--seeds``, ``--datasets`` and ``--models`` take several values, written
either space-separated after one flag (``--seeds 1 2 3``), comma-separated (``--seeds 1,2,3``) or
by repeating the flag.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from typer.core import TyperGroup

from swifthydra.exceptions import SwiftHydraError

# Options that accept several space-separated values after one flag.
MULTI_VALUE_OPTIONS = ("--labeled-ratio", "-l", "--seeds", "-s", "--datasets", "-d", "--models",
                       "-m", "--protocol", "--anomaly-types", "--param", "-p", "--generators", "-g")


def expand_multi_value_args(args: list[str], options=MULTI_VALUE_OPTIONS) -> list[str]:
    """Rewrite ``--seeds 1 2 3`` as ``--seeds 1 --seeds 2 --seeds 3`` (Click takes one value)."""
    out: list[str] = []
    current: str | None = None  # the multi-value flag in effect
    fresh = False  # that flag was just written and has no value yet
    for arg in args:
        if arg == "--":
            current = None
            out.append(arg)
        elif arg.startswith("-") and not _is_number(arg):
            name, eq, value = arg.partition("=")
            if name in options:
                current = name
                out.extend([name, value] if eq else [name])
                fresh = not eq
            else:
                current = None
                out.append(arg)
        elif current is not None:
            out.extend([arg] if fresh else [current, arg])
            fresh = False
        else:
            out.append(arg)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


class BenchGroup(TyperGroup):
    """The ``bench`` group: runs the benchmark, or a subcommand (``export``, ``models``)."""

    def parse_args(self, ctx, args):  # noqa: D401 - Click API
        if args and args[0] in self.commands:
            return super().parse_args(ctx, args)
        return super().parse_args(ctx, expand_multi_value_args(list(args)))


def _fail(exc: BaseException) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=2)


def _progress(quiet: bool):
    def show(row, i, n):
        if quiet:
            return
        status = row["status"]
        if status == "ok":
            what = (f"AUC-ROC {row['auc_roc']:.4f}  AUC-PR {row['auc_pr']:.4f}  "
                    f"fit {row['fit_seconds']:.2f}s")
        else:
            what = (row.get("error") or "")[:120]
        ratio = f"{row['labeled_ratio']:g}"
        scen = "" if row["scenario"] == "standard" else f" {row['scenario']}"
        gen = row.get("generator") or "none"
        model = row["model"] if gen == "none" else f"{row['model']}+{gen}"
        typer.echo(f"[{i}/{n}] {row['dataset']} {row['protocol']}{scen} la={ratio} "
                   f"seed={row['seed']} {model}: {status}  {what}", err=True)

    return show


bench_app = typer.Typer(
    cls=BenchGroup,
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Run the ADBench benchmark (resumable), or export its results.",
)


@bench_app.callback()
def bench(
    ctx: typer.Context,
    datasets: list[str] = typer.Option(
        None, "--datasets", "-d",
        help="Dataset names/aliases (comma-separated), 'all-local', 'all', 'builtin:wine' or "
             ".npz paths.",
    ),
    labeled_ratio: list[str] = typer.Option(
        None, "--labeled-ratio", "-l", help="Labelled ratios, e.g. 0 0.01 0.05 0.1 (default 0.05)."
    ),
    seeds: list[str] = typer.Option(None, "--seeds", "-s", help="Seeds (default 1 2 3)."),
    models: list[str] = typer.Option(
        None, "--models", "-m",
        help="Models (comma-separated), 'peers' or 'all' (default peers); see `bench models`.",
    ),
    generators: list[str] = typer.Option(
        None, "--generators", "-g",
        help="Anomaly generators crossed with every model on identical splits: none, mixup, "
             "nngmix, cvae, rl (comma-separated; default: none, i.e. no augmentation; swifthydra "
             "runs its own default generator).",
    ),
    param: list[str] = typer.Option(
        None, "--param", "-p",
        help="Model setting MODEL.KEY=VALUE, or generator setting gen.NAME.KEY=VALUE "
             "(repeatable).",
    ),
    protocol: list[str] = typer.Option(None, "--protocol", help="adbench and/or clean (default adbench)."),
    scenario: str = typer.Option(
        "standard", "--scenario", help="standard, or unseen-type (train on one anomaly type)."
    ),
    anomaly_types: list[str] = typer.Option(
        None, "--anomaly-types", help="Training anomaly types of unseen-type (default all four)."
    ),
    data_dir: Path = typer.Option(None, "--data-dir", help="Directory searched for ADBench files."),
    no_download: bool = typer.Option(False, "--no-download", help="Never download datasets."),
    out: Path = typer.Option(Path("results.sqlite"), "--out", "-o", help="SQLite results file."),
    backend: str = typer.Option("local", "--backend", help="local or ray."),
    address: str = typer.Option(None, "--address", help="Ray cluster address (ray backend)."),
    jobs: int = typer.Option(
        1, "--jobs", "-j", help="Worker processes (local; 0 = in this process, no isolation)."
    ),
    threads: int = typer.Option(None, "--threads", help="Threads per cell (default cores / jobs)."),
    timeout: float = typer.Option(None, "--timeout", help="Seconds per cell before it is killed."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="Re-run failed cells."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only count the cells."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No line per cell."),
) -> None:
    """Run (or resume) the benchmark; finished cells already in --out are skipped."""
    if ctx.invoked_subcommand is not None:
        return
    if not datasets:
        typer.echo(ctx.get_help())
        typer.echo("\nerror: pass --datasets (names, 'all-local' or 'all').", err=True)
        raise typer.Exit(code=2)
    from swifthydra.bench.runner import run_benchmark

    try:
        summary = run_benchmark(
            datasets,
            out=out,
            labeled_ratios=labeled_ratio or ["0.05"],
            seeds=seeds or ["1", "2", "3"],
            models=models or "peers",
            params=param or None,
            generators=generators or None,
            protocols=protocol or ["adbench"],
            scenario=scenario,
            anomaly_types=anomaly_types or None,
            data_dir=data_dir,
            download=not no_download,
            backend=backend,
            jobs=jobs,
            threads=threads,
            timeout=timeout,
            address=address,
            retry_errors=retry_errors,
            dry_run=dry_run,
            progress=_progress(quiet),
            command="swifthydra bench " + " ".join(sys.argv[2:] if len(sys.argv) > 2 else []),
        )
    except SwiftHydraError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: finished cells are stored; run the same command to resume.",
                   err=True)
        raise typer.Exit(code=130) from None
    if dry_run:
        typer.echo(f"{summary.total} cells, {summary.already_done} already in {out}, "
                   f"{summary.total - summary.already_done} to run.")
    else:
        typer.echo(summary.line())
    if summary.failed_datasets:  # bad data: one line each, non-zero exit (the run went on)
        for name, error in summary.failed_datasets.items():
            typer.echo(f"error: dataset {name}: {error} (its cells are stored as errors; fix the "
                       "data, then run again with --retry-errors)", err=True)
        raise typer.Exit(code=1)


@bench_app.command("export")
def export(
    results: Path = typer.Argument(..., help="SQLite results file."),
    format: str = typer.Option("csv", "--format", "-f", help="csv, markdown or parquet."),
    out: Path = typer.Option(None, "--out", "-o", help="Output file (default stdout; parquet: "
                             "RESULTS.parquet)."),
    history: bool = typer.Option(False, "--history", help="Include the history JSON column."),
) -> None:
    """Export a results file as CSV, Markdown or Parquet."""
    from swifthydra.bench.report import export_results

    try:
        text = export_results(results, format=format, out=out, history=history)
    except SwiftHydraError as exc:
        raise _fail(exc) from None
    if text is not None:
        sys.stdout.write(text)
    else:
        typer.echo(f"wrote {out or Path(results).with_suffix('.parquet')}", err=True)


@bench_app.command("models")
def models_cmd() -> None:
    """List the registered models."""
    from swifthydra.bench.models import list_models

    for spec in list_models():
        tag = "peer" if spec.peer else "    "
        typer.echo(f"{spec.name:12s} {tag} {spec.supervision:16s} {spec.description}")


def report(
    results: Path = typer.Argument(..., help="SQLite results file."),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="Output directory."),
    reference: str = typer.Option(
        None, "--reference", help="Model the others are compared with (default swifthydra if "
        "present, else the best by average rank)."
    ),
    metric: str = typer.Option("auc_roc", "--metric", help="auc_roc or auc_pr (ranks, tests)."),
) -> None:
    """Write a Markdown and HTML report (tables and plots) of a results file."""
    from swifthydra.bench.report import make_report

    try:
        path = make_report(results, out, reference=reference, metric=metric)
    except SwiftHydraError as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {path} and {Path(path).with_suffix('.html')}")


def register(app: typer.Typer) -> None:
    """Add ``bench`` (with ``export`` and ``models``) and ``report`` to a Typer app."""
    app.add_typer(bench_app, name="bench")
    app.command("report")(report)


def make_app() -> typer.Typer:
    """A stand-alone app with the benchmark commands (``python -m swifthydra.bench``)."""
    app = typer.Typer(name="swifthydra-bench", no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False)
    register(app)
    return app
