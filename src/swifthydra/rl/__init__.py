"""Reinforcement learning in the C-VAE's latent space: environment, actor-critic, PPO, reward.

One episode of the self-reinforcing loop (docs/design.md §6-§8) uses these pieces as follows
(an illustration; the loop's own settings are in docs/design.md §6.3)::

    reward = HydraReward(anomalies, normals, detector, episode=e)
    env = make_latent_env(cvae, X_known_anomalies, reward, num_envs=64, horizon=8,
                          x_bounds=(X.min(0), X.max(0)))
    policy = GaussianPolicy(env.observation_dim, env.action_dim, seed=0)
    history = train_agent(env, policy, PPOConfig(), iterations=20)
    cand = generate_candidates(env, policy, n_rollouts=4)
    terms = reward.terms(cand["x"])
    keep = select_top(terms["reward"], top_l, terms["accepted"],  # top-l accepted, spread out
                      x=cand["x"], min_distance=0.5 * reward.anomaly_radius)
    new_anomalies = cand["x"][keep]
"""

from __future__ import annotations

from swifthydra.rl.env import LatentEnv, feasible_box, make_latent_env
from swifthydra.rl.policy import GaussianPolicy
from swifthydra.rl.ppo import (
    PPOConfig,
    compute_gae,
    explained_variance,
    generate_candidates,
    ppo_loss,
    train_agent,
)
from swifthydra.rl.reward import (
    EntropyGain,
    HydraReward,
    combine_reward,
    deception,
    entropy_gain,
    guard_violation,
    kl_entropy,
    knn_distances,
    normal_margin,
    reward_weights,
    select_top,
)

__all__ = [
    "EntropyGain",
    "GaussianPolicy",
    "HydraReward",
    "LatentEnv",
    "PPOConfig",
    "combine_reward",
    "compute_gae",
    "deception",
    "entropy_gain",
    "explained_variance",
    "feasible_box",
    "generate_candidates",
    "guard_violation",
    "kl_entropy",
    "knn_distances",
    "make_latent_env",
    "normal_margin",
    "ppo_loss",
    "reward_weights",
    "select_top",
    "train_agent",
]
