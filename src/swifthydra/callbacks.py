"""Training callbacks: how a fit reports its progress.

Every trainer of the library (the Mamba detector, the mixture of experts, the C-VAE, the PPO agent
and the Swift Hydra loop around them) reports through the same small protocol, in the style of
skorch's and Keras' callbacks: a *stage* (one model trained for some epochs) begins, ends epochs
and ends; an *episode* of the self-reinforcing loop begins and ends. Callbacks receive the numbers
the trainer records (the same dicts that end up in ``history_``), never parsed text, so a renamed
loss term cannot silently break a display.

Pass callbacks to ``fit``::

    from swifthydra import SwiftHydra
    from swifthydra.callbacks import Callback

    class Losses(Callback):
        def on_epoch_end(self, stage, record):
            print(stage, record["epoch"], record.get("train_loss"))

    SwiftHydra().fit(X, y, callbacks=[Losses()])

Built in: :class:`PrintLog` (one line per epoch and per episode: what ``verbose`` prints),
:class:`ProgressBar` (rich progress bars with totals and ETA, for a terminal) and
:class:`EpisodeLog` (one line per stage and per episode, for logs).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

# The stages the library's trainers report (the ``stage`` argument of every hook).
DETECTOR = "detector"
DETECTOR_FINETUNE = "detector fine-tuning"
MOME = "mixture of experts"
CVAE = "C-VAE"
CVAE_FINETUNE = "C-VAE fine-tuning"
PPO = "PPO agent"


class Callback:
    """Base class: every hook does nothing. Override the ones you need.

    Hooks are called in this order: ``on_episode_begin`` (Swift Hydra's loop only), then for each
    model trained in it ``on_stage_begin``, ``on_epoch_end`` once per epoch (per PPO iteration for
    the agent), ``on_stage_end``; then ``on_episode_end`` with the episode's ``history_`` row.
    """

    def on_stage_begin(self, stage: str, total: int | None = None) -> None:
        """A model starts training; ``total`` is its largest number of epochs (early stopping
        may end it sooner), or ``None`` when unknown."""

    def on_epoch_end(self, stage: str, record: Mapping[str, Any]) -> None:
        """One epoch (or PPO iteration) ended; ``record`` holds its numbers (``epoch``, losses,
        validation AUC, ...)."""

    def on_stage_end(self, stage: str) -> None:
        """The model of ``stage`` finished training."""

    def on_episode_begin(self, episode: int, total: int) -> None:
        """Episode ``episode`` (0-based; episode 0 trains the models on the real rows) of
        ``total`` starts."""

    def on_episode_end(self, episode: int, total: int, record: Mapping[str, Any]) -> None:
        """Episode ``episode`` ended; ``record`` is its row of ``SwiftHydra.history_``."""


class CallbackList(Callback):
    """Several callbacks called in order, as one."""

    def __init__(self, callbacks: Iterable[Callback | None] = ()) -> None:
        self.callbacks = [c for c in callbacks if c is not None]
        for c in self.callbacks:
            if not isinstance(c, Callback):
                from swifthydra.exceptions import InvalidInputError

                raise InvalidInputError(
                    f"callbacks must be swifthydra.callbacks.Callback instances, got {type(c).__name__}."
                )

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def on_stage_begin(self, stage, total=None):
        for c in self.callbacks:
            c.on_stage_begin(stage, total)

    def on_epoch_end(self, stage, record):
        for c in self.callbacks:
            c.on_epoch_end(stage, record)

    def on_stage_end(self, stage):
        for c in self.callbacks:
            c.on_stage_end(stage)

    def on_episode_begin(self, episode, total):
        for c in self.callbacks:
            c.on_episode_begin(episode, total)

    def on_episode_end(self, episode, total, record):
        for c in self.callbacks:
            c.on_episode_end(episode, total, record)


def as_callback_list(callbacks: Callback | Iterable[Callback] | None, *extra: Callback | None) -> CallbackList:
    """``callbacks`` (one, several or none) plus ``extra`` as one :class:`CallbackList`."""
    if callbacks is None:
        callbacks = []
    elif isinstance(callbacks, Callback):
        callbacks = [callbacks]
    return CallbackList([*callbacks, *extra])


def _fmt(record: Mapping[str, Any], keys: Iterable[str] | None = None) -> str:
    keys = record.keys() if keys is None else [k for k in keys if k in record]
    out = []
    for k in keys:
        v = record[k]
        out.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(out)


class PrintLog(Callback):
    """Print one line per epoch (``epochs=True``) and per episode to ``stream`` (standard output
    by default): what ``verbose`` prints. ``episode_keys`` picks the numbers of an episode's line
    (default: all of them)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        epochs: bool = True,
        episodes: bool = True,
        episode_keys: Iterable[str] | None = None,
    ) -> None:
        self.stream = stream
        self.epochs = epochs
        self.episodes = episodes
        self.episode_keys = None if episode_keys is None else tuple(episode_keys)

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stdout, flush=True)

    def on_epoch_end(self, stage, record):
        if self.epochs:
            self._print(_fmt(record))

    def on_episode_end(self, episode, total, record):
        if self.episodes:
            self._print("[swifthydra] " + _fmt(record, self.episode_keys))


class EpisodeLog(Callback):
    """One line per trained stage and per episode, with elapsed seconds: for logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._stages: dict[str, list] = {}  # stage -> [epochs, start]; two may run side by side

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)

    def on_stage_begin(self, stage, total=None):
        self._stages[stage] = [0, time.perf_counter()]

    def on_epoch_end(self, stage, record):
        if stage in self._stages:
            self._stages[stage][0] += 1

    def on_stage_end(self, stage):
        epochs, start = self._stages.pop(stage, [0, time.perf_counter()])
        self._print(f"  {stage}: {epochs} epochs, {time.perf_counter() - start:.1f} s")

    def on_episode_begin(self, episode, total):
        self._print(f"episode {episode}/{total - 1} ...")

    def on_episode_end(self, episode, total, record):
        parts = [f"episode {episode}/{total - 1} done", _fmt(record, ("kept", "generated_total", "val_auc")),
                 f"[{record.get('seconds', 0.0):.1f} s]"]
        self._print(" ".join(p for p in parts if p))


class ProgressBar(Callback):
    """Rich progress bars on a terminal: the episodes of the loop, and the epochs of the model
    being trained (with its total and an estimate of the time left)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._progress = None
        self._episodes = None
        self._stages: dict[str, Any] = {}  # stage -> its bar; two stages may run side by side
        self._episode = 0

    def _start(self):
        if self._progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(),
                console=Console(file=self.stream or sys.stderr), transient=True,
            )
            self._progress.start()
        return self._progress

    def on_episode_begin(self, episode, total):
        bar = self._start()
        self._episode = episode
        if self._episodes is None:
            self._episodes = bar.add_task("Swift Hydra episodes", total=total)
        bar.update(self._episodes, completed=episode)

    def on_stage_begin(self, stage, total=None):
        bar = self._start()
        where = f"episode {self._episode}: " if self._episodes is not None else ""
        if stage in self._stages:
            bar.remove_task(self._stages.pop(stage))
        self._stages[stage] = bar.add_task(f"{where}{stage}", total=total)

    def on_epoch_end(self, stage, record):
        task = self._stages.get(stage)
        if task is not None and self._progress is not None:
            self._progress.update(task, advance=1)

    def on_stage_end(self, stage):
        task = self._stages.pop(stage, None)
        if task is not None and self._progress is not None:
            self._progress.remove_task(task)

    def on_episode_end(self, episode, total, record):
        if self._episodes is not None:
            self._progress.update(self._episodes, completed=episode + 1)

    def log(self, message: str) -> None:
        """Print ``message`` above the bars (or plainly when none is shown)."""
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=self.stream or sys.stderr, flush=True)

    def close(self) -> None:
        """Stop the display (the owner of the bar calls this once the fit is over)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._episodes = None
            self._stages = {}
