"""Gaussian actor-critic for the latent-space agent (CleanRL ``ppo_continuous_action`` style).

* actor: MLP ``obs -> mean`` (tanh hidden layers, last layer orthogonal init with gain 0.01 so
  the first actions are small), log-std either a free parameter per action dimension
  (state-independent, the CleanRL default) or a second head (``state_dependent_std=True``);
* critic: MLP ``obs -> V(obs)`` (last layer gain 1.0);
* hidden layers: orthogonal init with gain √2, zero bias.

Sampling takes an optional ``torch.Generator`` so that rollouts are reproducible without touching
the global RNG. The log-std is clamped into ``log_std_bounds`` so ``exp`` and the log-density
never overflow.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from swifthydra.exceptions import InvalidInputError

__all__ = ["GaussianPolicy", "layer_init"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def layer_init(
    layer: nn.Linear,
    std: float = math.sqrt(2.0),
    bias_const: float = 0.0,
    generator: torch.Generator | None = None,
) -> nn.Linear:
    """Orthogonal weight init with gain ``std`` and constant bias (as in CleanRL)."""
    nn.init.orthogonal_(layer.weight, std, generator=generator)
    nn.init.constant_(layer.bias, bias_const)
    return layer


def _mlp(sizes: list[int], out_std: float, generator: torch.Generator | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 2):
        layers += [layer_init(nn.Linear(sizes[i], sizes[i + 1]), generator=generator), nn.Tanh()]
    layers.append(layer_init(nn.Linear(sizes[-2], sizes[-1]), std=out_std, generator=generator))
    return nn.Sequential(*layers)


class GaussianPolicy(nn.Module):
    """Actor-critic with a diagonal Gaussian policy ``π(a | s) = N(mean(s), diag(std²))``.

    Parameters
    ----------
    obs_dim, act_dim : int
        Observation and action sizes (``env.observation_dim``, ``env.action_dim``).
    hidden : tuple of int
        Hidden layer widths of the actor and of the critic (separate networks).
    state_dependent_std : bool
        Predict the log-std from the observation instead of a free parameter.
    init_log_std : float
        Initial log-std (the free parameter's value, or the head's bias).
    log_std_bounds : (float, float)
        Clamp of the log-std.
    seed : int, optional
        Seeds the orthogonal initialisation (a private CPU generator); ``None`` uses torch's
        global RNG.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...] = (64, 64),
        *,
        state_dependent_std: bool = False,
        init_log_std: float = 0.0,
        log_std_bounds: tuple[float, float] = (-5.0, 2.0),
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if obs_dim < 1 or act_dim < 1:
            raise InvalidInputError(f"obs_dim and act_dim must be >= 1, got {obs_dim}, {act_dim}.")
        if not hidden or min(hidden) < 1:
            raise InvalidInputError(f"hidden must be non-empty positive widths, got {hidden}.")
        g = None if seed is None else torch.Generator().manual_seed(seed)
        sizes = [obs_dim, *hidden]
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.state_dependent_std = state_dependent_std
        self.log_std_bounds = log_std_bounds
        self.critic = _mlp([*sizes, 1], out_std=1.0, generator=g)
        self.actor_mean = _mlp([*sizes, act_dim], out_std=0.01, generator=g)
        if state_dependent_std:
            self.actor_logstd_head = _mlp([*sizes, act_dim], out_std=0.01, generator=g)
            nn.init.constant_(self.actor_logstd_head[-1].bias, init_log_std)
        else:
            self.actor_logstd = nn.Parameter(torch.full((1, act_dim), float(init_log_std)))

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        """State value, shape (B,)."""
        return self.critic(obs).squeeze(-1)

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-std of the action distribution, each (B, act_dim)."""
        mean = self.actor_mean(obs)
        if self.state_dependent_std:
            log_std = self.actor_logstd_head(obs)
        else:
            log_std = self.actor_logstd.expand_as(mean)
        return mean, log_std.clamp(*self.log_std_bounds)

    @staticmethod
    def log_prob(action: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
        """Log-density of a diagonal Gaussian, summed over action dimensions: (B,)."""
        z = (action - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - _LOG_SQRT_2PI).sum(-1)

    @staticmethod
    def entropy(log_std: torch.Tensor) -> torch.Tensor:
        """Entropy of a diagonal Gaussian: (B,)."""
        return (0.5 + _LOG_SQRT_2PI + log_std).sum(-1)

    def get_action_and_value(
        self,
        obs: torch.Tensor,
        action: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        deterministic: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample (or score a given) action; returns ``action, log_prob, entropy, value``.

        ``action`` (B, act_dim); ``log_prob``, ``entropy`` and ``value`` (B,).
        ``deterministic=True`` returns the mean action.
        """
        mean, log_std = self.distribution(obs)
        if action is None:
            if deterministic:
                action = mean
            else:
                noise = torch.randn(
                    mean.shape, generator=generator, device=mean.device, dtype=mean.dtype
                )
                action = mean + torch.exp(log_std) * noise
        return (
            action,
            self.log_prob(action, mean, log_std),
            self.entropy(log_std),
            self.get_value(obs),
        )

    @torch.no_grad()
    def act(
        self,
        obs: torch.Tensor,
        *,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Action only, without gradients: (B, act_dim)."""
        return self.get_action_and_value(obs, generator=generator, deterministic=deterministic)[0]
