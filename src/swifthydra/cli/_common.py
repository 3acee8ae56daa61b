"""What every command of the ``swifthydra`` command line shares: one-line errors and exit statuses.

:func:`guarded` wraps each command so that a :class:`~swifthydra.exceptions.SwiftHydraError`
becomes ``error: message`` on standard error and exit status :data:`EXIT_USER_ERROR`, and Ctrl-C
becomes ``error: interrupted`` and 130, never a traceback; a Python warning raised meanwhile (the
table's :class:`~swifthydra.exceptions.DataWarning`, a library's) is one ``warning: ...`` line.
"""

from __future__ import annotations

import functools
import warnings

import typer

from swifthydra.exceptions import DataWarning, SwiftHydraError

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
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                warnings.filterwarnings("always", category=DataWarning)  # every time, in every command
                return fn(*args, **kwargs)
        except SwiftHydraError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A Python warning raised while a command runs, as one ``warning: ...`` line on standard
    error (its first line; no file path or source line of the library that raised it)."""
    text = str(message).strip().splitlines()
    typer.echo(f"warning: {text[0] if text else category.__name__}", err=True)


def _echo_err(message: str) -> None:
    typer.echo(message, err=True)


def _has_tabulate() -> bool:
    """Whether pandas can write Markdown (``--format markdown``; else a plain text table)."""
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
