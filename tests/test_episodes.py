"""The self-reinforcing loop exists once (swifthydra.generators._episodes) and behaves as
docs/design.md §8.4 says: the best episode by validation score is kept, the loop stops after
``patience`` episodes without a better one, and without a score every episode runs."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from swifthydra.generators._core import LatentProposer, make_reward
from swifthydra.generators._episodes import Episodes, hold_out

SRC = Path(__file__).resolve().parents[1] / "src" / "swifthydra"


def _loop(patience: int = 2, seed: int = 0) -> Episodes:
    rng = np.random.RandomState(seed)
    normals = rng.randn(200, 4).astype(np.float32)
    anchors = (rng.randn(6, 4) + 4).astype(np.float32)

    def detector(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x.sum(1) - 4.0)

    reward = make_reward(anchors, normals, detector, lam=1.0, gamma=0.9, seed=seed)
    both = np.vstack([normals, anchors])
    return Episodes(
        reward=reward, proposer=LatentProposer("mixup", num_envs=8, horizon=2, ppo_iterations=1), anchors=anchors, normals=normals,
        bounds=(both.min(0), both.max(0)), top_l=4, seed=seed, patience=patience,
    )


def _scripted(scores):
    it = iter(scores)
    return lambda: next(it)


def test_keeps_the_best_episode_and_stops_after_patience_episodes_without_a_better_one():
    loop = _loop(patience=2)
    loop.best, loop.best_score = "episode 0", 0.5
    seen = []
    loop.run(6, after_keep=lambda e, generated: seen.append((e, len(generated))),
             evaluate=_scripted([0.55, 0.7, 0.7 + 5e-5, 0.69, 0.99, 0.99]), snapshot=lambda: f"episode {seen[-1][0]}")
    # episode 3 does not beat episode 2 by more than 1e-4; episodes 3 and 4 are two without a better one
    assert [e for e, _ in seen] == [1, 2, 3, 4]
    assert loop.best == "episode 2" and loop.best_episode == 2 and loop.best_score == 0.7
    assert [row["episode"] for row in loop.rows] == [1, 2, 3, 4]
    # every episode's kept rows join the anomalies for good
    sizes = [n for _, n in seen]
    assert sizes == sorted(sizes) and sizes[0] > 0 and len(loop.generated) == sizes[-1]


def test_without_a_validation_score_every_episode_runs_and_the_last_is_kept():
    loop = _loop(patience=1)
    loop.best, loop.best_score = "episode 0", math.nan
    done = []
    loop.run(3, after_keep=lambda e, generated: done.append(e), evaluate=lambda: math.nan,
             snapshot=lambda: f"episode {done[-1]}")
    assert done == [1, 2, 3] and loop.best == "episode 3" and loop.best_episode == 3


def test_episode_zero_can_stay_the_best():
    loop = _loop(patience=1)
    loop.best, loop.best_score = "episode 0", 0.9
    loop.run(4, evaluate=_scripted([0.8, 0.95]), snapshot=lambda: "later")
    assert loop.best == "episode 0" and loop.best_episode == 0 and len(loop.rows) == 1


def test_record_rows_carry_the_episode_and_its_kept_means():
    loop = _loop()
    loop.run(2, record=lambda ep: {"episode": ep.index, "kept": len(ep.kept), "reward": ep.kept_mean("reward"),
                                   "score": ep.score, "seconds": ep.seconds})
    assert [r["episode"] for r in loop.rows] == [1, 2]
    for r in loop.rows:
        assert r["kept"] > 0 and math.isfinite(r["reward"]) and math.isnan(r["score"]) and r["seconds"] >= 0


def test_same_seed_same_rows():
    a, b = _loop(seed=3).run(2), _loop(seed=3).run(2)
    np.testing.assert_array_equal(a.generated, b.generated)


@pytest.mark.parametrize(
    "n_anomalies, enabled, fraction, held",
    [(30, True, 0.2, True), (30, False, 0.2, False), (24, True, 0.2, False), (30, True, 0.0, False)],
)
def test_hold_out_rule(n_anomalies, enabled, fraction, held):
    y = np.zeros(500, dtype=np.int64)
    y[:n_anomalies] = 1
    train, val = hold_out(y, fraction=fraction, min_anomalies=25, enabled=enabled, seed=0)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(500))
    if held:
        assert 0 < len(val) < 500 and y[val].sum() > 0 and y[train].sum() > 0
        np.testing.assert_array_equal(val, hold_out(y, fraction=fraction, min_anomalies=25, enabled=True, seed=0)[1])
    else:
        assert len(val) == 0


def test_the_loop_is_written_once():
    """No module but _episodes proposes candidates or selects among them in a loop of its own."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "_episodes.py":
            continue
        text = path.read_text()
        if re.search(r"\.propose\(", text) or re.search(r"(?<!def )\bselect\(\s*(self\.)?reward", text):
            offenders.append(str(path.relative_to(SRC)))
    assert offenders == []
