"""Proximal Policy Optimization for the latent-space agent, in the style of CleanRL.

Read top to bottom: the hyper-parameters (:class:`PPOConfig`, one docstring line each), then
the two pieces that tests pin down on their own (:func:`compute_gae`, :func:`ppo_loss`), then the
training loop (:func:`train_agent`: collect a rollout, compute advantages, optimise the clipped
objective for a few epochs of minibatches, log every metric by name) and finally
:func:`generate_candidates`, which rolls out the trained policy to propose anomalies.

The environment is a vectorised :class:`~swifthydra.rl.env.LatentEnv` with tensors of shape
(B, ...) and auto-reset; the rollout buffers have shape (n_steps, B, ...).

Reference: Schulman et al., 2017, "Proximal Policy Optimization Algorithms"; Huang et al., 2022,
"The 37 Implementation Details of Proximal Policy Optimization" (CleanRL ``ppo_continuous_action``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from swifthydra.exceptions import InvalidInputError, TrainingDivergedError
from swifthydra.nn.optim import Adam
from swifthydra.rl.policy import GaussianPolicy

__all__ = [
    "PPOConfig",
    "compute_gae",
    "explained_variance",
    "generate_candidates",
    "ppo_loss",
    "train_agent",
]


@dataclass
class PPOConfig:
    """Hyper-parameters of :func:`train_agent`."""

    learning_rate: float = 3e-4
    """Adam step size."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over the iterations of one ``train_agent`` call."""
    n_steps: int = 16
    """Environment steps per rollout for every parallel start point (a multiple of the horizon
    keeps whole trajectories in one rollout); the batch is ``n_steps * num_envs`` transitions."""
    gamma: float = 0.99
    """Discount factor of the return (not the reward's episode decay γ of docs/design.md §7.1)."""
    gae_lambda: float = 0.95
    """λ of generalised advantage estimation (0: one-step TD, 1: Monte-Carlo)."""
    update_epochs: int = 4
    """Passes over the rollout batch per iteration."""
    minibatch_size: int = 256
    """Transitions per gradient step (capped at the batch size)."""
    norm_adv: bool = True
    """Normalise advantages to zero mean and unit std within each minibatch."""
    clip_coef: float = 0.2
    """PPO ratio clip ε: the surrogate ignores ratio changes beyond [1 − ε, 1 + ε]."""
    clip_vloss: bool = True
    """Clip the value update around the rollout's value estimate with the same ε."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    target_kl: float | None = None
    """Stop the epochs of an iteration early when the approximate KL exceeds this (None: never)."""
    seed: int = 0
    """Seeds action sampling and minibatch shuffling when no generator is passed."""

    def validate(self) -> PPOConfig:
        """Raise :class:`InvalidInputError` on an out-of-range value; return self."""
        checks = {
            "learning_rate": self.learning_rate > 0,
            "n_steps": self.n_steps >= 1,
            "gamma": 0.0 <= self.gamma <= 1.0,
            "gae_lambda": 0.0 <= self.gae_lambda <= 1.0,
            "update_epochs": self.update_epochs >= 1,
            "minibatch_size": self.minibatch_size >= 1,
            "clip_coef": self.clip_coef > 0,
            "ent_coef": self.ent_coef >= 0,
            "vf_coef": self.vf_coef >= 0,
            "max_grad_norm": self.max_grad_norm > 0,
            "target_kl": self.target_kl is None or self.target_kl > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{n}={getattr(self, n)!r}" for n in bad)
            raise InvalidInputError(f"PPOConfig out of range: {values}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy of the fields."""
        return asdict(self)


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns.

    Parameters
    ----------
    rewards, values : tensors of shape (T, B)
        Reward of step ``t`` and value of the observation acted on at step ``t``.
    dones : tensor of shape (T, B)
        True where the trajectory ended with step ``t`` (nothing is bootstrapped past it).
    last_value : tensor of shape (B,)
        Value of the observation after the last step (bootstraps unfinished trajectories).

    Returns
    -------
    advantages, returns : tensors of shape (T, B)
        ``δ_t = r_t + γ (1 − done_t) V_{t+1} − V_t``,
        ``A_t = δ_t + γ λ (1 − done_t) A_{t+1}``, ``returns = A + V``.
    """
    n_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    lastgaelam = torch.zeros_like(last_value)
    for t in reversed(range(n_steps)):
        next_values = last_value if t == n_steps - 1 else values[t + 1]
        nextnonterminal = 1.0 - dones[t].float()
        delta = rewards[t] + gamma * next_values * nextnonterminal - values[t]
        lastgaelam = delta + gamma * gae_lambda * nextnonterminal * lastgaelam
        advantages[t] = lastgaelam
    return advantages, advantages + values


def ppo_loss(
    new_logprob: torch.Tensor,
    old_logprob: torch.Tensor,
    advantages: torch.Tensor,
    new_value: torch.Tensor,
    old_value: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    config: PPOConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped PPO objective for one minibatch (all inputs of shape (M,)).

    Returns the scalar loss to minimise,
    ``policy_loss − ent_coef · entropy + vf_coef · value_loss``, and the detached terms by name:
    ``policy_loss``, ``value_loss``, ``entropy``, ``old_approx_kl``, ``approx_kl``, ``clipfrac``.
    Advantages are used as given (normalise them before, see ``PPOConfig.norm_adv``).
    """
    logratio = new_logprob - old_logprob
    ratio = torch.exp(logratio.clamp(max=20.0))  # exp(20) ~ 5e8: no overflow to inf
    with torch.no_grad():
        old_approx_kl = (-logratio).mean()
        approx_kl = ((ratio - 1) - logratio).mean()  # http://joschu.net/blog/kl-approx.html
        clipfrac = ((ratio - 1.0).abs() > config.clip_coef).float().mean()

    # Policy loss: pessimistic (max of the negated) clipped surrogate.
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1 - config.clip_coef, 1 + config.clip_coef)
    pg_loss = torch.max(pg_loss1, pg_loss2).mean()

    # Value loss.
    if config.clip_vloss:
        v_loss_unclipped = (new_value - returns) ** 2
        v_clipped = old_value + torch.clamp(
            new_value - old_value, -config.clip_coef, config.clip_coef
        )
        v_loss_clipped = (v_clipped - returns) ** 2
        v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
    else:
        v_loss = 0.5 * ((new_value - returns) ** 2).mean()

    entropy_loss = entropy.mean()
    loss = pg_loss - config.ent_coef * entropy_loss + config.vf_coef * v_loss
    terms = {
        "policy_loss": pg_loss.detach(),
        "value_loss": v_loss.detach(),
        "entropy": entropy_loss.detach(),
        "old_approx_kl": old_approx_kl,
        "approx_kl": approx_kl,
        "clipfrac": clipfrac,
    }
    return loss, terms


def explained_variance(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """``1 − Var(y_true − y_pred) / Var(y_true)``; NaN when ``y_true`` is constant."""
    var_y = torch.var(y_true)
    if not torch.isfinite(var_y) or var_y.item() == 0.0:
        return float("nan")
    return float(1.0 - torch.var(y_true - y_pred) / var_y)


def _policy_device(policy: nn.Module) -> torch.device:
    return next(policy.parameters()).device


def train_agent(
    env: Any,
    policy: GaussianPolicy,
    config: PPOConfig | None = None,
    iterations: int = 10,
    *,
    optimizer: Adam | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``policy`` on ``env`` with PPO for ``iterations`` rollouts.

    Parameters
    ----------
    env : LatentEnv
        Vectorised environment (``reset()``, ``step(action)``, ``num_envs``, ``observation_dim``).
    policy : GaussianPolicy
        Actor-critic, on the environment's device. Trained in place.
    config : PPOConfig, optional
        Hyper-parameters; default ``PPOConfig()``.
    iterations : int
        Rollout-and-update cycles.
    optimizer : swifthydra.nn.optim.Adam or a torch optimizer, optional
        Pass the same optimiser again to continue training across episodes with its state;
        default a fresh ``Adam(lr=config.learning_rate, eps=1e-5)``.
    generator : torch.Generator, optional
        On the policy's device; drives action sampling and shuffling. Default: seeded from
        ``config.seed``.
    callback : callable, optional
        Called with each iteration's metrics.

    Returns
    -------
    list of dict
        One dict per iteration: ``iteration``, ``learning_rate``, ``policy_loss``, ``value_loss``,
        ``entropy``, ``old_approx_kl``, ``approx_kl``, ``clipfrac``, ``explained_variance``,
        ``mean_reward`` (per step), ``max_reward``, ``mean_return`` (undiscounted, over the
        trajectories completed in the rollout; NaN if none), ``epochs_run``.
    """
    config = (config or PPOConfig()).validate()
    if iterations < 0:
        raise InvalidInputError(f"iterations must be >= 0, got {iterations}.")
    device = _policy_device(policy)
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(config.seed)
    if optimizer is None:
        optimizer = Adam(policy.parameters(), lr=config.learning_rate, eps=1e-5)

    n_steps, num_envs = config.n_steps, env.num_envs
    batch_size = n_steps * num_envs
    minibatch_size = min(config.minibatch_size, batch_size)

    # Rollout storage, (T, B, ...).
    obs_buf = torch.zeros((n_steps, num_envs, env.observation_dim), device=device)
    actions_buf = torch.zeros((n_steps, num_envs, env.action_dim), device=device)
    logprobs_buf = torch.zeros((n_steps, num_envs), device=device)
    rewards_buf = torch.zeros((n_steps, num_envs), device=device)
    dones_buf = torch.zeros((n_steps, num_envs), device=device)
    values_buf = torch.zeros((n_steps, num_envs), device=device)

    next_obs = env.reset()
    episode_return = torch.zeros(num_envs, device=device)
    history: list[dict[str, float]] = []

    for iteration in range(1, iterations + 1):
        # Annealing the rate if instructed to do so.
        lr_now = config.learning_rate
        if config.anneal_lr:
            lr_now = (1.0 - (iteration - 1.0) / iterations) * config.learning_rate
        for group in optimizer.param_groups:
            group["lr"] = lr_now

        # ---- 1. Collect a rollout of n_steps steps from every start point.
        finished_returns = []
        policy.eval()
        for step in range(n_steps):
            obs_buf[step] = next_obs
            with torch.no_grad():
                action, logprob, _, value = policy.get_action_and_value(
                    next_obs, generator=generator
                )
            values_buf[step] = value
            actions_buf[step] = action
            logprobs_buf[step] = logprob
            next_obs, reward, done, _info = env.step(action)
            rewards_buf[step] = reward
            dones_buf[step] = done.float()
            episode_return += reward
            if bool(done.any()):
                finished_returns.append(episode_return[done])
                episode_return = torch.where(done, torch.zeros_like(episode_return), episode_return)

        # ---- 2. Advantages (GAE) and returns, bootstrapping from the value of next_obs.
        with torch.no_grad():
            last_value = policy.get_value(next_obs)
        advantages, returns = compute_gae(
            rewards_buf, values_buf, dones_buf, last_value, config.gamma, config.gae_lambda
        )

        # ---- 3. Flatten the batch.
        b_obs = obs_buf.reshape(batch_size, env.observation_dim)
        b_actions = actions_buf.reshape(batch_size, env.action_dim)
        b_logprobs = logprobs_buf.reshape(-1)
        b_advantages = advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        b_values = values_buf.reshape(-1)

        # ---- 4. Optimise the policy and value network.
        policy.train()
        terms: dict[str, torch.Tensor] = {}
        clipfracs = []
        epochs_run = 0
        for _epoch in range(config.update_epochs):
            epochs_run += 1
            b_inds = torch.randperm(batch_size, generator=generator, device=device)
            for start in range(0, batch_size, minibatch_size):
                mb_inds = b_inds[start : start + minibatch_size]
                _, newlogprob, entropy, newvalue = policy.get_action_and_value(
                    b_obs[mb_inds], b_actions[mb_inds]
                )
                mb_advantages = b_advantages[mb_inds]
                if config.norm_adv and mb_advantages.numel() > 1:
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (
                        mb_advantages.std() + 1e-8
                    )
                loss, terms = ppo_loss(
                    newlogprob,
                    b_logprobs[mb_inds],
                    mb_advantages,
                    newvalue,
                    b_values[mb_inds],
                    b_returns[mb_inds],
                    entropy,
                    config,
                )
                clipfracs.append(terms["clipfrac"].item())
                if not math.isfinite(loss.item()):
                    raise TrainingDivergedError(
                        f"PPO training diverged: the loss became {loss.item()} in iteration "
                        f"{iteration}; lower the learning rate (now {lr_now:g})."
                    )
                optimizer.zero_grad()
                loss.backward()
                norm = nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
                if not torch.isfinite(norm):
                    raise TrainingDivergedError(
                        f"PPO training diverged: the gradients became non-finite in iteration "
                        f"{iteration}; lower the learning rate (now {lr_now:g})."
                    )
                optimizer.step()
            if config.target_kl is not None and terms["approx_kl"].item() > config.target_kl:
                break
        policy.eval()

        # ---- 5. Log every metric by name.
        done_returns = torch.cat(finished_returns) if finished_returns else None
        metrics = {
            "iteration": float(iteration),
            "learning_rate": float(lr_now),
            "policy_loss": terms["policy_loss"].item(),
            "value_loss": terms["value_loss"].item(),
            "entropy": terms["entropy"].item(),
            "old_approx_kl": terms["old_approx_kl"].item(),
            "approx_kl": terms["approx_kl"].item(),
            "clipfrac": float(sum(clipfracs) / max(len(clipfracs), 1)),
            "explained_variance": explained_variance(b_values, b_returns),
            "mean_reward": rewards_buf.mean().item(),
            "max_reward": rewards_buf.max().item(),
            "mean_return": done_returns.mean().item() if done_returns is not None else math.nan,
            "epochs_run": float(epochs_run),
        }
        history.append(metrics)
        if callback is not None:
            callback(metrics)
    return history


@torch.no_grad()
def generate_candidates(
    env: Any,
    policy: GaussianPolicy,
    *,
    n_rollouts: int = 1,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Roll out ``policy`` for ``n_rollouts`` whole trajectories from fresh start points.

    Every visited point is a candidate: ``N = n_rollouts * horizon * num_envs`` rows.

    Returns
    -------
    dict of tensors
        ``x`` (N, d) decoded candidates, ``z`` (N, k) latent points, ``reward`` (N,),
        ``step`` (N,) step index within the trajectory (1-based), ``trajectory`` (N,) id.
    """
    if n_rollouts < 1:
        raise InvalidInputError(f"n_rollouts must be >= 1, got {n_rollouts}.")
    device = _policy_device(policy)
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(seed)
    policy.eval()
    xs, zs, rs, steps, trajs = [], [], [], [], []
    traj_ids = torch.arange(env.num_envs, device=device)
    for rollout in range(n_rollouts):
        obs = env.reset()
        for _ in range(env.horizon):
            action = policy.act(obs, deterministic=deterministic, generator=generator)
            obs, reward, _done, info = env.step(action)
            xs.append(info["x"])
            zs.append(info["z"])
            rs.append(reward)
            steps.append(info["t"].long())
            trajs.append(traj_ids + rollout * env.num_envs)
    return {
        "x": torch.cat(xs),
        "z": torch.cat(zs),
        "reward": torch.cat(rs),
        "step": torch.cat(steps),
        "trajectory": torch.cat(trajs),
    }
