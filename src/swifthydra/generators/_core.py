"""The generation steps shared by the samplers and by :class:`~swifthydra.hydra.SwiftHydra`'s loop.

One episode of generation is two steps, whoever runs it:

* :func:`propose` (or :class:`LatentProposer` for the C-VAE and the agent): candidate anomalies,
  from the PPO agent's rollouts in the C-VAE latent space (``"rl"``), plain C-VAE samples
  (``"cvae"``), NNG-Mix (``"nngmix"``) or mixup (``"mixup"``);
* :func:`select`: the reward-based selection of Swift Hydra (:class:`~swifthydra.rl.HydraReward`
  terms, then :func:`~swifthydra.rl.reward.select_top`: the ``top_l`` best accepted candidates,
  spread at least half the anomaly set's typical radius apart).

:func:`generated_weight` is the per-row weight of generated anomalies (a total-weight cap
relative to the real anomalies).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from swifthydra.nn.optim import Adam

MAX_GUARD_NORMALS = 2000


def generated_weight(n_real: int, n_generated: int, total: float) -> float:
    """Weight of each of ``n_generated`` rows so that together they weigh at most ``total`` times
    the ``n_real`` real anomalies (at least one counted), each at most 1 (as much as a real row)."""
    if n_generated <= 0:
        return 1.0
    return min(1.0, float(total) * max(int(n_real), 1) / n_generated)


def default_top_l(n_anomalies: int) -> int:
    """Swift Hydra's default number of generated anomalies kept per episode."""
    return int(np.clip(4 * n_anomalies, 16, 128))


def guard_normals(normals: np.ndarray, seed: int) -> np.ndarray:
    """At most :data:`MAX_GUARD_NORMALS` unlabeled rows for the reward's label-noise guard."""
    if len(normals) > MAX_GUARD_NORMALS:
        normals = normals[np.random.RandomState(seed).choice(len(normals), MAX_GUARD_NORMALS, replace=False)]
    return normals


def make_reward(
    anchors: np.ndarray, normals: np.ndarray, detector: Callable, *, lam: float, gamma: float, seed: int,
    deception_mode: str = "log",
):
    """Swift Hydra's reward for the first episode (call ``.update(...)`` for the next ones);
    ``deception_mode`` as :class:`~swifthydra.rl.HydraReward`'s."""
    from swifthydra.rl import HydraReward

    return HydraReward(
        torch.from_numpy(np.ascontiguousarray(anchors, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(guard_normals(normals, seed), dtype=np.float32)),
        detector, episode=1, lam=float(lam), gamma=float(gamma), seed=seed, deception_mode=deception_mode,
    )


def select(reward, cand: torch.Tensor, top_l: int) -> tuple[np.ndarray, torch.Tensor, dict[str, torch.Tensor]]:
    """Swift Hydra's selection: ``(kept rows (float32), their indices, the reward terms)``."""
    from swifthydra.rl.reward import select_top

    terms = reward.terms(cand)
    keep = select_top(terms["reward"], top_l, terms["accepted"], x=cand, min_distance=0.5 * reward.anomaly_radius)
    kept = cand[keep].detach().cpu().numpy().astype(np.float32)
    return kept, keep, terms


# ------------------------------------------------------------------------------------- mixing
def _neighbours(queries: np.ndarray, reference: np.ndarray, k: int, exclude_self: bool = False) -> np.ndarray:
    """Indices (len(queries), k') of each query's nearest reference rows, nearest first.

    With ``exclude_self`` (queries are the reference rows), row ``i`` is not its own neighbour;
    with a single reference row it is (there is no other).
    """
    from sklearn.neighbors import NearestNeighbors

    n_ref = len(reference)
    if exclude_self and n_ref > 1:
        kk = min(k + 1, n_ref)
        idx = NearestNeighbors(n_neighbors=kk).fit(reference).kneighbors(queries, return_distance=False)
        out = np.empty((len(queries), kk - 1), dtype=np.int64)
        for i, row in enumerate(idx):
            others = row[row != i]
            out[i] = others[: kk - 1]
        return out
    kk = min(k, n_ref)
    return NearestNeighbors(n_neighbors=kk).fit(reference).kneighbors(queries, return_distance=False)


def _mix_coefficients(rng: np.random.Generator, n: int, alpha: float, beta: float, uniform: bool) -> np.ndarray:
    return rng.uniform(0.0, 1.0, n) if uniform else rng.beta(alpha, beta, n)


def nngmix_candidates(
    anomalies: np.ndarray,
    unlabeled: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    n_neighbors: int = 10,
    n_neighbors_anomaly: int = 10,
    alpha: float = 0.2,
    beta: float = 0.2,
    uniform: bool = False,
    noise_std: float = 0.01,
    noise_scale: np.ndarray | None = None,
    p_unlabeled: float = 0.5,
) -> np.ndarray:
    """NNG-Mix (Dong et al., 2023): ``n`` pseudo-anomalies from labelled anomalies.

    Each one picks a labelled anomaly ``a`` at random and, with probability ``p_unlabeled``, one of
    its ``n_neighbors`` nearest unlabeled rows, else one of its ``n_neighbors_anomaly`` nearest
    other labelled anomalies, as partner ``b``; it returns
    ``λ (a + ε₁) + (1 − λ)(b + ε₂)`` with ``λ ~ Beta(alpha, beta)`` (``uniform``: ``U(0, 1)``)
    and ``ε ~ N(0, (noise_std · noise_scale)²)`` per feature.
    """
    d = anomalies.shape[1]
    a_idx = rng.integers(0, len(anomalies), n)
    use_unlabeled = rng.random(n) < p_unlabeled
    nn_u = _neighbours(anomalies, unlabeled, n_neighbors)
    nn_a = _neighbours(anomalies, anomalies, n_neighbors_anomaly, exclude_self=True)
    pick_u = nn_u[a_idx, rng.integers(0, nn_u.shape[1], n)]
    pick_a = nn_a[a_idx, rng.integers(0, nn_a.shape[1], n)]
    partner = np.where(use_unlabeled[:, None], unlabeled[pick_u], anomalies[pick_a])
    lam = _mix_coefficients(rng, n, alpha, beta, uniform)[:, None]
    scale = np.ones(d) if noise_scale is None else np.asarray(noise_scale, dtype=np.float64)
    noise1 = rng.normal(size=(n, d)) * (noise_std * scale)
    noise2 = rng.normal(size=(n, d)) * (noise_std * scale)
    return lam * (anomalies[a_idx] + noise1) + (1.0 - lam) * (partner + noise2)


def mixup_candidates(
    anomalies: np.ndarray,
    unlabeled: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    alpha: float = 0.2,
    p_anomaly: float = 0.5,
    n_neighbors: int | None = None,
) -> np.ndarray:
    """Mixup (Zhang et al., 2018) of labelled anomalies: ``λ a + (1 − λ) b``, ``λ ~ Beta(α, α)``.

    With probability ``p_anomaly`` the partner ``b`` is another labelled anomaly drawn at random
    (anomaly–anomaly mixup; the anomaly itself when it is the only one), else an unlabeled row:
    any one (``n_neighbors=None``, the Mixup baseline of the NNG-Mix paper) or one of the
    anomaly's ``n_neighbors`` nearest unlabeled rows.
    """
    n_a = len(anomalies)
    a_idx = rng.integers(0, n_a, n)
    use_anomaly = rng.random(n) < p_anomaly
    if n_a > 1:  # another anomaly, uniformly: shift by 1..n_a-1
        b_idx = (a_idx + rng.integers(1, n_a, n)) % n_a
    else:
        b_idx = a_idx.copy()
        rng.integers(0, 1, n)  # same number of draws whatever n_a, for a stable stream
    if n_neighbors is None:
        u_idx = rng.integers(0, len(unlabeled), n)
    else:
        nn_u = _neighbours(anomalies, unlabeled, int(n_neighbors))
        u_idx = nn_u[a_idx, rng.integers(0, nn_u.shape[1], n)]
    partner = np.where(use_anomaly[:, None], anomalies[b_idx], unlabeled[u_idx])
    lam = rng.beta(alpha, alpha, n)[:, None]
    return lam * anomalies[a_idx] + (1.0 - lam) * partner


# -------------------------------------------------------------------------------- proposals
class LatentProposer:
    """Candidates of one episode, in the scaled space the C-VAE was trained in.

    ``kind="rl"``: the PPO agent (created in the first episode, then trained further every
    episode: ``policy`` and its optimizer persist) walks the C-VAE's latent space from the known
    anomalies' codes, rewarded by ``reward``; its rollouts are the candidates.
    ``kind="cvae"``: prior samples of the C-VAE decoded with ``y = 1``, clipped into ``bounds``.
    ``kind="nngmix"`` / ``"mixup"``: :func:`nngmix_candidates` / :func:`mixup_candidates` of the
    anchors and the ``unlabeled`` rows (``mix_params`` passes their parameters).
    Every kind proposes ``2 · num_envs · horizon`` candidates an episode.
    """

    KINDS = ("rl", "cvae", "nngmix", "mixup")

    def __init__(
        self,
        kind: str,
        *,
        num_envs: int,
        horizon: int,
        ppo_iterations: int,
        mix_params: dict | None = None,
    ) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown proposal kind {kind!r}")
        self.kind = kind
        self.num_envs = int(num_envs)
        self.horizon = int(horizon)
        self.ppo_iterations = int(ppo_iterations)
        self.mix_params = dict(mix_params or {})
        self.policy = None
        self.optimizer = None

    @property
    def n_candidates(self) -> int:
        return 2 * self.num_envs * self.horizon

    def propose(
        self,
        *,
        cvae: Any,
        anchors: np.ndarray,
        reward: Any,
        bounds: tuple[np.ndarray, np.ndarray],
        episode: int,
        seed: int,
        unlabeled: np.ndarray | None = None,
        callbacks: Any = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """``(candidates (float32 tensor), PPO statistics of the last iteration or {})``.

        ``seed + episode`` seeds the episode's environment, PPO run and sampling; ``seed`` the
        policy's initialisation. ``callbacks`` (:mod:`swifthydra.callbacks`) are told of each
        PPO iteration (stage ``"PPO agent"``).
        """
        if self.kind == "rl":
            from swifthydra.detectors._training import single_threaded_ops

            with single_threaded_ops():  # thousands of small ops: one thread is faster (§4.4)
                return self._rl(cvae, anchors, reward, bounds, episode, seed, callbacks)
        if self.kind == "cvae":
            sample = cvae.sample(self.n_candidates, 1, random_state=seed + episode)
            return torch.from_numpy(np.clip(sample, bounds[0], bounds[1]).astype(np.float32)), {}
        rng = np.random.default_rng(seed + episode)
        A = np.asarray(anchors, dtype=np.float64)
        U = np.asarray(unlabeled, dtype=np.float64)
        if self.kind == "nngmix":
            params = {"noise_scale": np.asarray(bounds[1], np.float64) - np.asarray(bounds[0], np.float64)}
            params.update(self.mix_params)
            cand = nngmix_candidates(A, U, self.n_candidates, rng, **params)
        else:
            cand = mixup_candidates(A, U, self.n_candidates, rng, **self.mix_params)
        return torch.from_numpy(cand.astype(np.float32)), {}

    def _rl(self, cvae, anchors, reward, bounds, episode, seed, callbacks=None):
        from swifthydra.callbacks import PPO, as_callback_list
        from swifthydra.rl import GaussianPolicy, PPOConfig, make_latent_env, train_agent
        from swifthydra.rl import generate_candidates as rollout

        env = make_latent_env(
            cvae, anchors, reward, num_envs=self.num_envs, horizon=self.horizon,
            x_bounds=bounds, seed=seed + episode,
        )
        if self.policy is None:
            # initialised on the CPU (the same weights whatever the device), then on the env's device
            self.policy = GaussianPolicy(env.observation_dim, env.action_dim, seed=seed).to(env.device)
            self.optimizer = Adam(self.policy.parameters(), lr=PPOConfig.learning_rate, eps=1e-5)
        config = PPOConfig(n_steps=2 * self.horizon, seed=seed + episode)
        cb = as_callback_list(callbacks)
        cb.on_stage_begin(PPO, self.ppo_iterations)
        logs = train_agent(
            env, self.policy, config, iterations=self.ppo_iterations, optimizer=self.optimizer,
            callback=lambda metrics: cb.on_epoch_end(PPO, metrics),
        )
        cb.on_stage_end(PPO)
        ppo_stats = {f"ppo_{k}": float(v) for k, v in logs[-1].items() if isinstance(v, (int, float))}
        cand = rollout(env, self.policy, n_rollouts=2, seed=seed + episode)["x"]
        return cand, ppo_stats


def takes_sample_weight(method: Any) -> bool:
    """Whether a method (an estimator's ``fit``) takes ``sample_weight``, by name or through
    ``**kwargs``; False for anything that is not a callable with a signature."""
    import inspect

    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    return "sample_weight" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
