"""``swifthydra bench`` (with ``export`` and ``models``) and ``swifthydra report``: the
benchmark's commands, loaded only when they are used.

The commands themselves are defined in :mod:`swifthydra.bench.cli` (``python -m swifthydra.bench``
runs them on their own). :func:`register` puts placeholders named ``bench`` and ``report`` into the
app, at the places the real ones take in ``swifthydra --help``; the app's root group
(:class:`LazyGroup`) replaces both with the real commands the first time either is looked up: to
run it, to list it in ``swifthydra --help``, or to suggest it for a misspelled command. So
``import swifthydra.cli`` and the product commands (``fit``, ``score``, ``explain``, ``info``,
``export-onnx``, ``evaluate``) never import :mod:`swifthydra.bench`.
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

#: the commands that :mod:`swifthydra.bench.cli` adds to the app
LAZY_COMMANDS = ("bench", "report")


class LazyGroup(TyperGroup):
    """The root group of the ``swifthydra`` app: the placeholders of :data:`LAZY_COMMANDS` become
    the benchmark's real commands (same names, same places) on the first lookup of one of them."""

    _bench_loaded = False

    def get_command(self, ctx, cmd_name: str):
        if cmd_name in LAZY_COMMANDS and cmd_name in self.commands and not self._bench_loaded:
            self.commands.update(_bench_commands())  # replacing a key keeps its place
            self._bench_loaded = True
        return super().get_command(ctx, cmd_name)


def _bench_commands() -> dict:
    """The Click commands ``bench`` and ``report`` of :mod:`swifthydra.bench.cli`."""
    from swifthydra.bench.cli import register as register_bench

    bench = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register_bench(bench)
    group = typer.main.get_command(bench)
    return {name: group.commands[name] for name in LAZY_COMMANDS}


def _placeholder() -> None:  # pragma: no cover - LazyGroup never hands it out
    raise RuntimeError("the benchmark commands were not loaded: the app's root group must be LazyGroup")


def register(app: typer.Typer) -> None:
    """Add placeholders for ``bench`` (a group) and ``report`` to a Typer app whose ``cls`` is
    :class:`LazyGroup`."""
    app.add_typer(typer.Typer(callback=_placeholder), name="bench")
    app.command("report")(_placeholder)
