"""The ``swifthydra`` command line (Typer): :data:`app` and the console script's :func:`main`.

One module per command, all registered here in the order of ``swifthydra --help``:

- :mod:`~swifthydra.cli.datasets`: ``datasets list`` / ``download`` / ``info``;
- :mod:`~swifthydra.cli.demo`: ``demo``;
- :mod:`~swifthydra.cli.bench`: ``bench`` (``export``, ``models``) and ``report``, defined in
  :mod:`swifthydra.bench.cli` and imported only when one of them is used;
- :mod:`~swifthydra.cli.fit`, :mod:`~swifthydra.cli.score`, :mod:`~swifthydra.cli.explain`,
  :mod:`~swifthydra.cli.info`, :mod:`~swifthydra.cli.export` (``export-onnx``) and
  :mod:`~swifthydra.cli.evaluate`: from a CSV or Parquet table to a model, scores and metrics,
  on the shared model-directory and streaming helpers of :mod:`~swifthydra.cli._table`.

Every command turns a :class:`~swifthydra.exceptions.SwiftHydraError` into a one-line message on
standard error and a non-zero exit status (:mod:`~swifthydra.cli._common`); heavy libraries are
imported inside the commands so ``swifthydra --help`` stays fast. ``python -m swifthydra.cli``
runs :func:`main`.
"""

from __future__ import annotations

import gc
from typing import Annotated

import typer

from swifthydra.cli import bench, datasets, demo, evaluate, explain, export, fit, info, score
from swifthydra.cli._common import EXIT_USER_ERROR, fail, guarded

__all__ = ["EXIT_USER_ERROR", "app", "fail", "guarded", "main"]

app = typer.Typer(
    name="swifthydra",
    help="Swift Hydra anomaly detection: datasets, benchmark, fit and score.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=bench.LazyGroup,
)


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


# The help lists commands in the order they are added, then the groups (datasets, bench).
for _command in (datasets, demo, bench, fit, score, explain, info, export, evaluate):
    _command.register(app)
del _command


def main() -> None:
    """Entry point of the console script. A usage error (an unknown option, a missing argument,
    a bad value) is one ``error: ...`` line and exit status 2, like every other error; without
    arguments the help is printed (exit status 2, as before)."""
    import sys

    try:  # Typer >= 0.20 carries its own copy of Click
        from typer._click import exceptions as click_exceptions
    except ImportError:  # pragma: no cover - older Typer on Click
        from click import exceptions as click_exceptions

    try:
        code = app(standalone_mode=False)  # a typer.Exit's status comes back
        if isinstance(code, int) and not isinstance(code, bool) and code:
            sys.exit(code)
    except click_exceptions.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help())
        sys.exit(EXIT_USER_ERROR)
    except click_exceptions.UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        typer.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except click_exceptions.ClickException as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    finally:
        # The command is over (its files written and closed). With torch, scikit-learn and pandas
        # loaded, the interpreter's last garbage collections at exit walk ~400,000 objects several
        # times (measured: 0.7 s of a 6 s `swifthydra score`). Freezing them skips only those
        # cycle searches: modules are still torn down, atexit handlers run, stdout/stderr are
        # flushed.
        gc.freeze()
