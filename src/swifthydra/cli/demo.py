"""``swifthydra demo``: the main job on a built-in dataset (:mod:`swifthydra.demo`)."""

from __future__ import annotations

from typing import Annotated

import typer

from swifthydra.cli._common import guarded


@guarded
def demo(
    dataset: Annotated[str, typer.Option(help="Built-in dataset: wdbc or wine.")] = "wdbc",
    labeled_ratio: Annotated[float, typer.Option(help="Fraction of training anomalies that keep their label.")] = 0.05,
    seed: Annotated[
        list[int] | None,
        typer.Option("--seed", help="ADBench split seed; repeat it for several (default: 1, 2 and 3, "
                     "so the table shows the spread over splits)."),
    ] = None,
    protocol: Annotated[str, typer.Option(help="adbench or clean.")] = "adbench",
    quick: Annotated[bool, typer.Option(help="A smaller Swift Hydra (fewer episodes and epochs).")] = False,
) -> None:
    """Run the main job on a built-in dataset: ADBench split, then detectors side by side."""
    from swifthydra.demo import DEMO_SEEDS, run_demo
    from swifthydra.presets import QUICK_PARAMS

    run_demo(
        dataset=dataset, labeled_ratio=labeled_ratio, seeds=seed or DEMO_SEEDS, protocol=protocol,
        params=QUICK_PARAMS if quick else None,
    )


def register(app: typer.Typer) -> None:
    """Add ``demo`` to a Typer app."""
    app.command()(demo)
