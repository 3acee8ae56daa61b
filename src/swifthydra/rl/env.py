"""Latent-space environment of the Swift Hydra agent (docs/design.md §6.1).

The agent walks in the latent space of the conditional VAE:

* **state** ``z ∈ R^k``: starts as a posterior sample of a known anomaly (``z ~ q(z | x_a, y=1)``)
  or, with probability ``prior_prob``, a prior sample ``z ~ N(0, I)``;
* **action** ``a ∈ R^k``: the step is ``δ = action_scale · clamp(a, ±max_action)``;
* **transition** ``z' = clip(z + δ, low, high)`` into the feasible box (per-dimension mean ± 3 std
  of the encoded anomalies, :func:`feasible_box`);
* **candidate** ``x̂ = decode(z', y=1)`` and **reward** ``reward_fn(x̂)``.

A trajectory lasts ``horizon`` steps; then every start point is done and the environment resets
itself (like a gym vector env with auto-reset), returning the first observation of the next
trajectory. All ``num_envs`` start points advance together as one batch of tensors: there is no
Python loop over environments. The observation is ``z`` concatenated with the elapsed fraction
of the trajectory ``t / horizon`` (``observe_time=True``), which makes the time limit visible to
the value function (Pardo et al., 2018, "Time limits in reinforcement learning").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from swifthydra.exceptions import InvalidInputError

__all__ = ["LatentEnv", "feasible_box", "make_latent_env"]


def _tensor(x: Any, device: torch.device | str | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    return x.to(device=device, dtype=torch.float32)


def feasible_box(
    mu: Any,
    logvar: Any = None,
    *,
    n_std: float = 3.0,
    min_std: float = 1e-2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension box ``mean ± n_std · std`` of the encoded anomalies.

    Parameters
    ----------
    mu : tensor of shape (N, k)
        Posterior means of the anomalies.
    logvar : tensor of shape (N, k), optional
        Posterior log-variances. When given, ``std`` is that of the *aggregate posterior*
        (law of total variance: ``var(mu) + mean(exp(logvar))``), which stays meaningful with a
        single known anomaly; otherwise ``std`` of ``mu``.
    n_std : float
        Half-width of the box in standard deviations.
    min_std : float
        Floor on ``std`` so the box never collapses to a point.

    Returns
    -------
    low, high : tensors of shape (k,)
    """
    mu = _tensor(mu)
    if mu.ndim != 2 or mu.shape[0] < 1:
        raise InvalidInputError(
            f"mu must be 2-D with at least one row, got shape {tuple(mu.shape)}."
        )
    center = mu.mean(dim=0)
    var = mu.var(dim=0, unbiased=False)
    if logvar is not None:
        lv = _tensor(logvar, mu.device)
        if lv.shape != mu.shape:
            raise InvalidInputError(
                f"logvar shape {tuple(lv.shape)} differs from mu {tuple(mu.shape)}."
            )
        var = var + torch.exp(lv.clamp(-30.0, 30.0)).mean(dim=0)
    std = torch.sqrt(var).clamp(min=min_std)
    return center - n_std * std, center + n_std * std


class LatentEnv:
    """Vectorised latent-space environment; see the module docstring.

    Parameters
    ----------
    decode : callable
        ``decode(z) -> x̂``: (B, k) latent tensor to (B, d) candidate rows (the C-VAE decoder with
        ``y = 1``, e.g. :meth:`swifthydra.generative.CVAE.decoder_fn`).
    reward_fn : callable
        ``reward_fn(x̂) -> r`` of shape (B,), e.g. a :class:`~swifthydra.rl.reward.HydraReward`.
    low, high : tensors of shape (k,)
        Feasible box (:func:`feasible_box`).
    start_mu : tensor of shape (N, k)
        Posterior means of the start points (encoded anomalies).
    start_logvar : tensor of shape (N, k), optional
        Posterior log-variances; ``None`` starts exactly at ``start_mu``.
    num_envs : int
        Start points advanced in parallel (batch size B).
    horizon : int
        Steps per trajectory (T).
    action_scale : float or tensor of shape (k,), optional
        Step per unit action; default ``(high − low) / 12`` (half a std of a ±3 std box).
    max_action : float
        Actions are clamped into ``[−max_action, max_action]`` before scaling.
    prior_prob : float
        Probability that a start point is drawn from the prior ``N(0, I)`` instead.
    observe_time : bool
        Append ``t / horizon`` to the observation.
    seed : int
        Seeds the start-point sampler (its own ``torch.Generator`` on the device).
    device : str or torch.device, optional
        Device of every tensor; default that of ``start_mu``.
    """

    def __init__(
        self,
        decode: Callable[[torch.Tensor], torch.Tensor],
        reward_fn: Callable[[torch.Tensor], torch.Tensor],
        low: Any,
        high: Any,
        start_mu: Any,
        start_logvar: Any = None,
        *,
        num_envs: int = 64,
        horizon: int = 8,
        action_scale: float | Any = None,
        max_action: float = 3.0,
        prior_prob: float = 0.0,
        observe_time: bool = True,
        seed: int = 0,
        device: torch.device | str | None = None,
    ) -> None:
        mu = _tensor(start_mu) if device is None else _tensor(start_mu, device)
        self.device = mu.device
        if mu.ndim != 2 or mu.shape[0] < 1:
            raise InvalidInputError(
                f"start_mu must be 2-D with at least one row, got shape {tuple(mu.shape)}."
            )
        self.start_mu = mu
        self.start_logvar = (
            None if start_logvar is None else _tensor(start_logvar, self.device).clamp(-30.0, 30.0)
        )
        self.low = _tensor(low, self.device).reshape(-1)
        self.high = _tensor(high, self.device).reshape(-1)
        k = mu.shape[1]
        if self.low.shape[0] != k or self.high.shape[0] != k:
            raise InvalidInputError(f"low/high must have {k} entries like start_mu's columns.")
        if not bool((self.low <= self.high).all()):
            raise InvalidInputError("low must not exceed high in any dimension.")
        if num_envs < 1 or horizon < 1:
            raise InvalidInputError(
                f"num_envs and horizon must be >= 1, got {num_envs}, {horizon}."
            )
        if not 0.0 <= prior_prob <= 1.0:
            raise InvalidInputError(f"prior_prob must be in [0, 1], got {prior_prob}.")
        if action_scale is None:
            action_scale = (self.high - self.low) / 12.0
        self.action_scale = torch.broadcast_to(_tensor(action_scale, self.device), (k,)).clone()
        self.decode = decode
        self.reward_fn = reward_fn
        self.num_envs = num_envs
        self.horizon = horizon
        self.max_action = max_action
        self.prior_prob = prior_prob
        self.observe_time = observe_time
        self.latent_dim = k
        self.action_dim = k
        self.observation_dim = k + (1 if observe_time else 0)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.z = torch.zeros((num_envs, k), device=self.device)  # (B, k)
        self.t = 0

    # ------------------------------------------------------------------ helpers
    def _observation(self) -> torch.Tensor:
        if not self.observe_time:
            return self.z.clone()
        frac = torch.full((self.num_envs, 1), self.t / self.horizon, device=self.device)
        return torch.cat([self.z, frac], dim=1)  # (B, k + 1)

    def clip(self, z: torch.Tensor) -> torch.Tensor:
        """Project latent points into the feasible box."""
        return torch.minimum(torch.maximum(z, self.low), self.high)

    def sample_start(self, n: int) -> torch.Tensor:
        """Draw ``n`` start points (posterior samples of the anomalies, or prior samples)."""
        g = self.generator
        idx = torch.randint(self.start_mu.shape[0], (n,), generator=g, device=self.device)
        z = self.start_mu[idx]
        noise = torch.randn(z.shape, generator=g, device=self.device)
        if self.start_logvar is not None:
            z = z + torch.exp(0.5 * self.start_logvar[idx]) * noise
        if self.prior_prob > 0.0:
            use_prior = torch.rand((n, 1), generator=g, device=self.device) < self.prior_prob
            prior = torch.randn(z.shape, generator=g, device=self.device)
            z = torch.where(use_prior, prior, z)
        return self.clip(z)

    # ------------------------------------------------------------------ API
    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start new trajectories; returns the observation, shape (B, observation_dim)."""
        if seed is not None:
            self.generator.manual_seed(seed)
        self.z = self.sample_start(self.num_envs)
        self.t = 0
        return self._observation()

    @torch.no_grad()
    def step(
        self, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Apply actions (B, k); returns ``(obs, reward, done, info)``.

        ``reward`` (B,) and ``done`` (B,) bool. ``info`` holds the candidates of this step:
        ``x`` (B, d) decoded rows, ``z`` (B, k) their latent points, ``t`` the step index (1-based).
        When ``done``, ``obs`` is already the first observation of the next trajectory.
        """
        a = torch.as_tensor(action, device=self.device, dtype=torch.float32)
        if a.shape != (self.num_envs, self.action_dim):
            raise InvalidInputError(
                f"action must have shape {(self.num_envs, self.action_dim)}, got {tuple(a.shape)}."
            )
        a = torch.nan_to_num(a, nan=0.0).clamp(-self.max_action, self.max_action)
        z = self.clip(self.z + self.action_scale * a)  # (B, k)
        x = self.decode(z)  # (B, d)
        reward = torch.as_tensor(self.reward_fn(x), device=self.device, dtype=torch.float32)
        reward = reward.reshape(-1)
        if reward.shape[0] != self.num_envs:
            raise InvalidInputError(
                f"reward_fn returned {reward.shape[0]} values for {self.num_envs} candidates."
            )
        self.z = z
        self.t += 1
        info = {"x": x, "z": z, "t": torch.full((self.num_envs,), self.t, device=self.device)}
        finished = self.t >= self.horizon
        done = torch.full((self.num_envs,), finished, dtype=torch.bool, device=self.device)
        obs = self.reset() if finished else self._observation()
        return obs, reward, done, info


def make_latent_env(
    cvae: Any,
    X_anomalies: Any,
    reward_fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    num_envs: int = 64,
    horizon: int = 8,
    n_std: float = 3.0,
    step_scale: float = 0.5,
    prior_prob: float = 0.0,
    observe_time: bool = True,
    x_bounds: tuple[Any, Any] | None = None,
    seed: int = 0,
) -> LatentEnv:
    """Build a :class:`LatentEnv` from a fitted :class:`~swifthydra.generative.CVAE`.

    Encodes ``X_anomalies`` with ``y = 1``; their posteriors are the start points and define the
    feasible box (:func:`feasible_box` with ``n_std``). One unit of action moves
    ``step_scale`` aggregate-posterior standard deviations. Candidates are decoded with ``y = 1``
    and, when ``x_bounds = (low, high)`` is given (scalars or per-feature arrays, e.g. the
    training data's min and max), clamped into that range before the reward sees them.
    """
    mu, logvar = cvae.encode(X_anomalies, 1)
    device = cvae.device_
    mu_t, lv_t = _tensor(mu, device), _tensor(logvar, device)
    low, high = feasible_box(mu_t, lv_t, n_std=n_std)
    std = (high - low) / (2.0 * n_std)
    decode = cvae.decoder_fn(1)
    if x_bounds is not None:
        x_lo = _tensor(x_bounds[0], device)
        x_hi = _tensor(x_bounds[1], device)
        raw_decode = decode

        def decode(z: torch.Tensor) -> torch.Tensor:
            return torch.minimum(torch.maximum(raw_decode(z), x_lo), x_hi)

    return LatentEnv(
        decode,
        reward_fn,
        low,
        high,
        mu_t,
        lv_t,
        num_envs=num_envs,
        horizon=horizon,
        action_scale=step_scale * std,
        prior_prob=prior_prob,
        observe_time=observe_time,
        seed=seed,
        device=device,
    )
