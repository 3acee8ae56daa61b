"""Running the command line in process, shared by test files (imported as a plain module:
tests/ is on sys.path)."""

from __future__ import annotations

from typer.testing import CliRunner

from swifthydra.cli import app

runner = CliRunner()


def invoke(*args):
    """``swifthydra ARGS`` in this process (every argument as text)."""
    return runner.invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    """The one ``error: ...`` line a failed command ends with (exit status 2, no traceback)."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line]
    assert lines[-1].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[-1]
