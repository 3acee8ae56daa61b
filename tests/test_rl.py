"""Tests of the latent environment, the Gaussian actor-critic and PPO."""

from __future__ import annotations

import ast
import inspect
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from swifthydra.exceptions import InvalidInputError
from swifthydra.rl import (
    GaussianPolicy,
    LatentEnv,
    PPOConfig,
    compute_gae,
    explained_variance,
    feasible_box,
    generate_candidates,
    ppo_loss,
    train_agent,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])




def toy_env(
    k: int = 2,
    num_envs: int = 32,
    horizon: int = 4,
    device: str = "cpu",
    seed: int = 0,
) -> tuple[LatentEnv, torch.Tensor]:
    """Identity decoder; reward −‖z − target‖²; box [−3, 3]^k; starts around the origin."""
    target = torch.linspace(1.5, -1.0, k, device=device)
    env = LatentEnv(
        lambda z: z.clone(),
        lambda x: -((x - target) ** 2).sum(1),
        -3.0 * torch.ones(k),
        3.0 * torch.ones(k),
        torch.zeros(1, k),
        torch.zeros(1, k),
        num_envs=num_envs,
        horizon=horizon,
        action_scale=0.5,
        seed=seed,
        device=device,
    )
    return env, target


# ---------------------------------------------------------------------------- feasible box
def test_feasible_box_is_mean_plus_minus_three_std() -> None:
    mu = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    low, high = feasible_box(mu, min_std=1e-3)
    std0 = math.sqrt(8.0 / 3.0)
    assert torch.allclose(low, torch.tensor([2.0 - 3 * std0, 1.0 - 3e-3]))
    assert torch.allclose(high, torch.tensor([2.0 + 3 * std0, 1.0 + 3e-3]))
    # With posterior variances the box uses the aggregate posterior (total variance).
    low, high = feasible_box(mu, torch.zeros_like(mu), n_std=2.0)
    assert torch.allclose(high - low, 4.0 * torch.sqrt(torch.tensor([8.0 / 3.0 + 1.0, 1.0])))
    # One anomaly still gives a box of positive width.
    low, high = feasible_box(mu[:1], torch.full((1, 2), -2.0))
    assert torch.all(high - low > 0.5)
    with pytest.raises(InvalidInputError):
        feasible_box(torch.zeros(0, 2))


# ---------------------------------------------------------------------------- environment
def test_env_shapes_done_and_auto_reset() -> None:
    env, _ = toy_env(k=3, num_envs=5, horizon=3)
    obs = env.reset()
    assert obs.shape == (5, 4) and env.observation_dim == 4 and env.action_dim == 3
    assert torch.all(obs[:, -1] == 0.0)
    for t in range(1, 4):
        obs, reward, done, info = env.step(torch.ones(5, 3))
        assert reward.shape == (5,) and done.shape == (5,) and done.dtype == torch.bool
        assert info["x"].shape == (5, 3) and info["z"].shape == (5, 3)
        assert torch.all(info["t"] == t)
        assert bool(done.all()) == (t == 3)
    assert torch.all(obs[:, -1] == 0.0)  # auto-reset: first observation of a new trajectory
    assert env.t == 0
    with pytest.raises(InvalidInputError, match="shape"):
        env.step(torch.zeros(4, 3))


def test_env_without_time_observation_and_reward_matches_decoded_rows() -> None:
    env, target = toy_env(k=2, num_envs=4, horizon=2)
    env.observe_time, env.observation_dim = False, 2
    obs = env.reset()
    assert obs.shape == (4, 2)
    _, reward, _, info = env.step(torch.zeros(4, 2))
    assert torch.allclose(reward, -((info["x"] - target) ** 2).sum(1))
    assert torch.allclose(info["z"], obs)  # zero action: stays put


@settings(max_examples=30, deadline=None)
@given(
    arrays(
        np.float32,
        (6, 2),
        elements=st.floats(width=32, allow_subnormal=False, allow_nan=True, allow_infinity=True),
    )
)
def test_clipping_keeps_states_in_feasible_box(action: np.ndarray) -> None:
    env = LatentEnv(
        lambda z: z,
        lambda x: x.sum(1),
        torch.tensor([-1.0, 0.0]),
        torch.tensor([1.0, 0.5]),
        torch.tensor([[0.0, 0.2], [0.5, 0.4]]),
        torch.tensor([[3.0, 3.0], [3.0, 3.0]]),  # wide posteriors: starts are clipped too
        num_envs=6,
        horizon=2,
        action_scale=torch.tensor([10.0, 10.0]),
        prior_prob=0.5,
    )
    obs = env.reset(seed=1)
    assert torch.all(obs[:, :2] >= env.low) and torch.all(obs[:, :2] <= env.high)
    for _ in range(2):
        _, reward, _, info = env.step(torch.from_numpy(action))
        z = info["z"]
        assert torch.isfinite(z).all() and torch.isfinite(reward).all()
        assert torch.all(z >= env.low) and torch.all(z <= env.high)


def test_env_reset_is_seeded_and_uses_start_pool() -> None:
    mu = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    env = LatentEnv(
        lambda z: z,
        lambda x: x[:, 0],
        -5 * torch.ones(2),
        5 * torch.ones(2),
        mu,
        num_envs=64,
        horizon=1,
    )
    a, b = env.reset(seed=3), env.reset(seed=3)
    assert torch.equal(a, b)
    # No logvar: starts are exactly the pool's points, both of them used.
    rows = {tuple(r.tolist()) for r in a[:, :2]}
    assert rows == {(1.0, 1.0), (-1.0, -1.0)}


# ---------------------------------------------------------------------------- policy
@pytest.mark.parametrize("state_dependent_std", [False, True])
def test_policy_log_prob_entropy_match_torch_normal(state_dependent_std: bool) -> None:
    pol = GaussianPolicy(
        5, 3, hidden=(16,), state_dependent_std=state_dependent_std, init_log_std=-0.5, seed=0
    )
    obs = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    action, logp, ent, value = pol.get_action_and_value(obs, generator=g)
    assert action.shape == (7, 3) and logp.shape == ent.shape == value.shape == (7,)
    mean, log_std = pol.distribution(obs)
    ref = torch.distributions.Normal(mean, log_std.exp())
    assert torch.allclose(logp, ref.log_prob(action).sum(1), atol=1e-5)
    assert torch.allclose(ent, ref.entropy().sum(1), atol=1e-5)
    assert torch.allclose(pol.act(obs, deterministic=True), mean)
    # Scoring a given action returns that action.
    same, logp2, _, _ = pol.get_action_and_value(obs, action)
    assert torch.equal(same, action) and torch.allclose(logp2, logp)


def test_policy_init_is_seeded_and_orthogonal() -> None:
    a, b = GaussianPolicy(4, 2, seed=7), GaussianPolicy(4, 2, seed=7)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    w = a.critic[0].weight  # (64, 4): orthonormal columns scaled by sqrt(2)
    assert torch.allclose(w.T @ w, 2.0 * torch.eye(4), atol=1e-5)
    assert a.actor_mean[-1].weight.abs().max() < 0.05  # gain 0.01: small first actions
    assert torch.all(a.actor_mean[-1].bias == 0)


def test_policy_sampling_is_reproducible_with_generator() -> None:
    pol = GaussianPolicy(3, 2, seed=0)
    obs = torch.zeros(4, 3)
    x = pol.act(obs, generator=torch.Generator().manual_seed(5))
    y = pol.act(obs, generator=torch.Generator().manual_seed(5))
    assert torch.equal(x, y)
    with pytest.raises(InvalidInputError):
        GaussianPolicy(0, 2)


# ---------------------------------------------------------------------------- GAE
def test_gae_hand_computed() -> None:
    gamma, lam = 0.9, 0.5
    # One trajectory of 3 steps that ends at t=1, then a new one that is cut at t=2.
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [1.0], [2.0]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])
    last_value = torch.tensor([4.0])
    adv, ret = compute_gae(rewards, values, dones, last_value, gamma, lam)
    d2 = 3.0 + 0.9 * 4.0 - 2.0  # bootstrap: 4.6
    d1 = 2.0 + 0.0 - 1.0  # terminal: 1.0
    d0 = 1.0 + 0.9 * 1.0 - 0.5  # 1.4
    a2, a1 = d2, d1  # the done at t=1 cuts the trace
    a0 = d0 + gamma * lam * a1  # 1.4 + 0.45 = 1.85
    assert torch.allclose(adv[:, 0], torch.tensor([a0, a1, a2]))
    assert torch.allclose(ret, adv + values)


def test_gae_lambda_one_is_discounted_return_minus_value() -> None:
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    dones = torch.zeros(5, 3)
    dones[-1] = 1.0
    adv, ret = compute_gae(rewards, values, dones, torch.randn(3, generator=g), 0.8, 1.0)
    disc = torch.zeros(3)
    want = torch.zeros(5, 3)
    for t in reversed(range(5)):
        disc = rewards[t] + 0.8 * disc
        want[t] = disc
    assert torch.allclose(ret, want, atol=1e-5)


# ---------------------------------------------------------------------------- clipped loss
def _loss(new_lp, old_lp, adv, **kw):
    cfg = PPOConfig(clip_coef=0.2, ent_coef=0.0, vf_coef=0.0, **kw)
    z = torch.zeros_like(adv)
    return ppo_loss(new_lp, old_lp, adv, z, z, z, z, cfg)


def test_ppo_loss_at_ratio_one() -> None:
    adv = torch.tensor([1.0, -2.0, 0.5])
    lp = torch.tensor([-1.0, -2.0, -3.0])
    loss, t = _loss(lp, lp, adv)
    assert loss.item() == pytest.approx(-adv.mean().item())
    assert t["clipfrac"].item() == 0.0 and t["approx_kl"].item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize(
    ("logratio", "adv", "clipped"),
    [
        (math.log(1.5), 1.0, True),  # good action already much more likely: no further push
        (math.log(0.5), -1.0, True),  # bad action already much less likely: no further push
        (math.log(1.5), -1.0, False),  # bad action became more likely: gradient pulls it back
        (math.log(0.5), 1.0, False),  # good action became less likely: gradient pushes it up
        (math.log(1.1), 1.0, False),  # inside the trust region
    ],
)
def test_ppo_loss_clipping_gradients(logratio: float, adv: float, clipped: bool) -> None:
    new_lp = torch.tensor([logratio], requires_grad=True)
    loss, t = _loss(new_lp, torch.zeros(1), torch.tensor([adv]))
    loss.backward()
    ratio = math.exp(logratio)
    if clipped:
        assert new_lp.grad.item() == 0.0
        assert loss.item() == pytest.approx(-adv * (1.2 if adv > 0 else 0.8))
    else:
        assert new_lp.grad.item() == pytest.approx(-adv * ratio, rel=1e-5)
        assert loss.item() == pytest.approx(-adv * ratio, rel=1e-5)
    assert t["clipfrac"].item() == (1.0 if abs(ratio - 1) > 0.2 else 0.0)


def test_ppo_value_loss_clipping() -> None:
    cfg = PPOConfig(clip_coef=0.2, vf_coef=1.0, ent_coef=0.0)
    z = torch.zeros(1)
    new_v, old_v, ret = torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([1.0])
    _, t = ppo_loss(z, z, z, new_v, old_v, ret, z, cfg)
    # unclipped error 0, clipped prediction 0.2 -> error 0.64; the max is kept.
    assert t["value_loss"].item() == pytest.approx(0.5 * 0.64)
    cfg.clip_vloss = False
    _, t = ppo_loss(z, z, z, new_v, old_v, ret, z, cfg)
    assert t["value_loss"].item() == 0.0


def test_ppo_loss_finite_for_huge_ratio() -> None:
    loss, t = _loss(torch.tensor([500.0]), torch.tensor([0.0]), torch.tensor([-1.0]))
    assert math.isfinite(loss.item()) and math.isfinite(t["approx_kl"].item())


def test_explained_variance() -> None:
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(y, y) == 1.0
    assert explained_variance(torch.zeros(4) + 2.5, y) == pytest.approx(0.0)
    assert math.isnan(explained_variance(y, torch.ones(4)))


# ---------------------------------------------------------------------------- config
def test_ppo_config_documents_and_validates_every_field() -> None:
    tree = ast.parse(inspect.getsource(PPOConfig))
    body = tree.body[0].body
    fields = [n.target.id for n in body if isinstance(n, ast.AnnAssign)]
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign):
            nxt = body[i + 1]
            assert isinstance(nxt, ast.Expr) and isinstance(nxt.value.value, str), node.target.id
    assert {
        "learning_rate",
        "gamma",
        "gae_lambda",
        "clip_coef",
        "ent_coef",
        "vf_coef",
        "max_grad_norm",
        "update_epochs",
        "minibatch_size",
        "norm_adv",
        "n_steps",
    } <= set(fields)
    with pytest.raises(InvalidInputError, match="clip_coef"):
        PPOConfig(clip_coef=0.0).validate()
    assert PPOConfig().to_dict()["gamma"] == 0.99


# ---------------------------------------------------------------------------- training
def _eval(env: LatentEnv, pol: GaussianPolicy) -> float:
    return generate_candidates(env, pol, deterministic=True, seed=1)["reward"].mean().item()


@pytest.mark.parametrize("device", DEVICES)
def test_ppo_improves_toy_latent_reward(device: str) -> None:
    env, _ = toy_env(k=2, num_envs=32, horizon=4, device=device)
    pol = GaussianPolicy(env.observation_dim, env.action_dim, seed=0).to(device)
    before = _eval(env, pol)
    cfg = PPOConfig(learning_rate=1e-2, n_steps=16, minibatch_size=128, update_epochs=4, seed=0)
    history = train_agent(env, pol, cfg, iterations=12)
    after = _eval(env, pol)
    assert after > before + 3.0, (before, after)
    assert history[-1]["mean_reward"] > history[0]["mean_reward"]
    expected = {
        "iteration",
        "learning_rate",
        "policy_loss",
        "value_loss",
        "entropy",
        "approx_kl",
        "old_approx_kl",
        "clipfrac",
        "explained_variance",
        "mean_reward",
        "max_reward",
        "mean_return",
        "epochs_run",
    }
    assert all(set(m) == expected for m in history)
    assert all(math.isfinite(v) for m in history for v in m.values())


def test_ppo_is_deterministic_and_continues_with_optimizer() -> None:
    def run() -> list[dict[str, float]]:
        env, _ = toy_env(num_envs=8, horizon=2)
        pol = GaussianPolicy(env.observation_dim, env.action_dim, hidden=(16,), seed=1)
        cfg = PPOConfig(n_steps=4, minibatch_size=8, update_epochs=2, anneal_lr=True, seed=3)
        opt = torch.optim.Adam(pol.parameters(), lr=cfg.learning_rate, eps=1e-5)
        seen: list[dict[str, float]] = []
        h = train_agent(env, pol, cfg, iterations=2, optimizer=opt, callback=seen.append)
        assert seen == h
        assert (
            h[0]["learning_rate"] == cfg.learning_rate
            and h[1]["learning_rate"] < h[0]["learning_rate"]
        )
        return h + train_agent(env, pol, cfg, iterations=1, optimizer=opt)

    assert run() == run()


def test_target_kl_stops_epochs_early() -> None:
    env, _ = toy_env(num_envs=16, horizon=4)
    pol = GaussianPolicy(env.observation_dim, env.action_dim, seed=0)
    cfg = PPOConfig(
        learning_rate=0.05, n_steps=8, minibatch_size=16, update_epochs=10, target_kl=1e-6
    )
    h = train_agent(env, pol, cfg, iterations=1)
    assert h[0]["epochs_run"] == 1.0


def test_generate_candidates_shapes() -> None:
    env, target = toy_env(k=3, num_envs=6, horizon=4)
    pol = GaussianPolicy(env.observation_dim, env.action_dim, seed=0)
    c = generate_candidates(env, pol, n_rollouts=2, seed=0)
    n = 2 * 4 * 6
    assert c["x"].shape == (n, 3) and c["z"].shape == (n, 3)
    assert c["reward"].shape == c["step"].shape == c["trajectory"].shape == (n,)
    assert sorted(set(c["step"].tolist())) == [1, 2, 3, 4]
    assert len(set(c["trajectory"].tolist())) == 12
    assert torch.allclose(c["reward"], -((c["x"] - target) ** 2).sum(1))
    again = generate_candidates(env, pol, n_rollouts=2, seed=0)
    assert not torch.equal(c["x"], again["x"])  # the env's start sampler moved on
    with pytest.raises(InvalidInputError):
        generate_candidates(env, pol, n_rollouts=0)
