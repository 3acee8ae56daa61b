"""The self-reinforcing loop, written once (docs/design.md §6-§8).

:class:`SwiftHydra <swifthydra.hydra.SwiftHydra>`, :class:`~swifthydra.generators.SelfReinforcingClassifier`
(the loop around any classifier) and the latent samplers (``"rl"`` and ``"cvae"`` of
:mod:`swifthydra.generators`) all run their episodes through :class:`Episodes`. One episode is::

    reward.update(anomaly set so far, episode e, **reward_update(e))   # §7: the reward follows them
    candidates = proposer.propose(...)                                   # §6.4: agent, C-VAE or mixes
    kept = select(reward, candidates, top_l)                             # §8.1: best accepted, spread
    generated += kept                                                    # §8.2: they join the anomalies
    after_keep(e, generated)      # §8.3: fine-tune W and G, refit a classifier, or nothing
    score = evaluate()            # §8.4: validation AUC of the held-out rows, or NaN without them
    keep the best episode         # one rule, :meth:`Episodes._keep_best`

and :func:`hold_out` is the one rule for which rows are held out to choose the best episode.
What differs between the three users is only what the hooks do.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from swifthydra.detectors._training import single_threaded_ops
from swifthydra.generators._core import select

# a validation score must beat the best so far by more than this to count as better
IMPROVEMENT = 1e-4


def hold_out(y: np.ndarray, *, fraction: float, min_anomalies: int, enabled: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train rows, held-out rows)`` as indices: a stratified ``fraction`` of the rows is held out
    to choose the best episode only when there are episodes to choose from (``enabled``) and at
    least ``min_anomalies`` known anomalies to rank them; otherwise every row trains and none is
    held out (docs/design.md §8.4)."""
    rng = np.random.RandomState(seed)
    if enabled and fraction > 0 and int(y.sum()) >= int(min_anomalies):
        from swifthydra.detectors import stratified_split

        return stratified_split(y, float(fraction), rng)
    return np.arange(len(y)), np.empty(0, dtype=np.int64)


@dataclass
class Episode:
    """What one episode produced (given to the ``record`` hook)."""

    index: int
    candidates: torch.Tensor  # (n, d) every proposed candidate, in the networks' space
    kept: np.ndarray  # (top_l or fewer, d) the selected ones
    keep: torch.Tensor  # indices of the kept candidates
    terms: dict[str, Any]  # the reward's terms of every candidate (select's third value)
    stats: dict[str, float]  # the proposer's statistics (PPO's last iteration, or {})
    generated: np.ndarray  # every row kept so far, this episode's included
    score: float = math.nan  # the ``evaluate`` hook's value after ``after_keep``
    seconds: float = 0.0  # the episode's wall time, evaluation included

    def row(self) -> dict[str, Any]:
        """The history fields every user of the loop records: the episode, candidates proposed,
        accepted and kept, the mean reward and ``W`` of the kept ones, the proposer's statistics
        (the default ``record``; SwiftHydra and the wrapper add their own fields)."""
        return {
            "episode": self.index, "candidates": int(self.candidates.shape[0]),
            "accepted": int(self.terms["accepted"].sum()), "kept": int(len(self.kept)),
            "reward_mean_kept": self.kept_mean("reward"), "w_mean_kept": self.kept_mean("w"), **self.stats,
        }

    def kept_mean(self, term: str) -> float:
        """Mean of one reward term over the kept candidates' finite values (NaN when none)."""
        values = self.terms[term][self.keep.detach().cpu()]
        values = values[torch.isfinite(values)]
        return float(values.mean()) if values.numel() else float("nan")


@dataclass
class Episodes:
    """Runs episodes 1..E of the loop and keeps the best one.

    Parameters
    ----------
    reward : HydraReward
        From :func:`~swifthydra.generators._core.make_reward`.
    proposer : LatentProposer or a proposer with the same ``propose``
    anchors, normals : ndarray
        The known anomalies and unlabeled rows, in the networks' space.
    bounds : (ndarray, ndarray)
        Per-column low and high of the training rows (candidates are clipped to them).
    top_l : int
        Candidates kept per episode.
    seed : int
    patience : int
        Episodes without a better validation score before the loop stops.
    generated : ndarray or None
        Rows kept before the first episode (none by default).
    cvae : CVAE or None
        The generative model the latent proposers decode with (``None`` for the mixing ones).
    callbacks : CallbackList or None
        Told of every episode's begin and end (``on_episode_end`` gets the ``record`` row).
    reward_update : callable ``e -> dict`` or None
        Extra arguments of ``reward.update`` for episode ``e`` (e.g. a new detector).
    stage : callable ``e -> context manager`` or None
        Wraps the proposal of episode ``e`` (SwiftHydra names the stage in errors).
    """

    reward: Any
    proposer: Any
    anchors: np.ndarray
    normals: np.ndarray
    bounds: tuple[np.ndarray, np.ndarray]
    top_l: int
    seed: int
    patience: int = 1
    generated: np.ndarray | None = None
    cvae: Any = None
    callbacks: Any = None
    reward_update: Callable[[int], dict] | None = None
    stage: Callable[[int], Any] | None = None
    best: Any = None
    best_score: float = math.nan
    best_episode: int = 0
    stall: int = 0
    rows: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.generated is None:
            self.generated = np.empty((0, self.anchors.shape[1]), dtype=np.float32)

    def run(
        self,
        episodes: int,
        *,
        after_keep: Callable[[int, np.ndarray], None] | None = None,
        evaluate: Callable[[], float] | None = None,
        snapshot: Callable[[], Any] | None = None,
        record: Callable[[Episode], dict] | None = None,
        total: int | None = None,
    ) -> Episodes:
        """Run up to ``episodes`` episodes; ``best`` / ``best_score`` / ``best_episode`` start as
        given (episode 0's) and end as the kept episode's, ``rows`` holds each ``record`` row.

        ``after_keep(e, generated)`` runs once the episode's rows are kept (fine-tuning or a refit),
        ``evaluate()`` scores the result (NaN: no validation set), ``snapshot()`` is what is kept
        of the best episode, ``record(episode)`` its history row (:meth:`Episode.row` without)."""
        total = episodes + 1 if total is None else total
        for e in range(1, int(episodes) + 1):
            if self.callbacks is not None:
                self.callbacks.on_episode_begin(e, total)
            t0 = time.perf_counter()
            episode = self._step(e, after_keep)
            episode.score = float(evaluate()) if evaluate is not None else math.nan
            episode.seconds = time.perf_counter() - t0
            row = record(episode) if record is not None else episode.row()
            self.rows.append(row)
            if self.callbacks is not None:
                self.callbacks.on_episode_end(e, total, row)
            if self._keep_best(e, episode.score, snapshot):
                break
        return self

    def _step(self, e: int, after_keep) -> Episode:
        # 1. the reward follows the anomaly set so far (and whatever the caller updates) (§7)
        extra = self.reward_update(e) if self.reward_update is not None else {}
        with single_threaded_ops():  # small ops: an intra-op pool only waits (§4.4)
            self.reward.update(anomalies=torch.from_numpy(np.vstack([self.anchors, self.generated])), episode=e,
                               **extra)
        # 2. candidates (§6.4)
        with self.stage(e) if self.stage is not None else contextlib.nullcontext():
            cand, stats = self.proposer.propose(
                cvae=self.cvae, anchors=self.anchors, reward=self.reward, bounds=self.bounds,
                episode=e, seed=self.seed, unlabeled=self.normals, callbacks=self.callbacks,
            )
        # 3. the top_l accepted candidates, spread apart (§8.1); 4. they join the anomalies (§8.2)
        with single_threaded_ops():
            kept, keep, terms = select(self.reward, cand, self.top_l)
        self.generated = np.vstack([self.generated, kept])
        # 5. what the caller does with them (§8.3)
        if after_keep is not None:
            after_keep(e, self.generated)
        return Episode(e, cand, kept, keep, terms, stats, self.generated)

    def _keep_best(self, e: int, score: float, snapshot) -> bool:
        """Keep the best episode by validation score and say whether to stop: after ``patience``
        episodes without a better one. Without a score (NaN: no held-out rows) every episode runs
        and the last is kept (§8.4)."""
        take = snapshot or (lambda: None)
        if math.isnan(score):
            self.best, self.best_episode = take(), e
            return False
        if math.isnan(self.best_score) or score > self.best_score + IMPROVEMENT:
            self.best_score, self.best_episode, self.stall = score, e, 0
            self.best = take()
            return False
        self.stall += 1
        return self.stall >= self.patience
