"""What every command of the ``swifthydra`` command line shares: one-line errors and exit statuses.

:func:`guarded` wraps each command so that a :class:`~swifthydra.exceptions.SwiftHydraError`
becomes ``error: message`` on standard error and exit status :data:`EXIT_USER_ERROR`, and Ctrl-C
becomes ``error: interrupted`` and 130, never a traceback.
"""

from __future__ import annotations

import functools

import typer

from swifthydra.exceptions import SwiftHydraError

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


def _echo_err(message: str) -> None:
    typer.echo(message, err=True)


def _has_tabulate() -> bool:
    """Whether pandas can write Markdown (``--format markdown``; else a plain text table)."""
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
