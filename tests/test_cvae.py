"""Tests of the conditional β-VAE generator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.base import clone

from swifthydra.exceptions import InvalidInputError, NotFittedError
from swifthydra.generative import CVAE
from swifthydra.rl import HydraReward, make_latent_env

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])




def two_clusters(n_normal: int = 300, n_anom: int = 12, d: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    normal = rng.normal(0.0, 1.0, size=(n_normal, d))
    anom = rng.normal(5.0, 0.5, size=(n_anom, d))
    X = np.vstack([normal, anom]).astype(np.float32)
    y = np.r_[np.zeros(n_normal), np.ones(n_anom)].astype(int)
    return X, y


def small(**kw) -> CVAE:
    params = {
        "latent_dim": 3,
        "hidden": (32, 32),
        "epochs": 25,
        "batch_size": 64,
        "lr": 3e-3,
        "random_state": 0,
        "device": "cpu",
    }
    params.update(kw)
    return CVAE(**params)


@pytest.fixture(scope="module")
def fitted() -> tuple[CVAE, np.ndarray, np.ndarray]:
    X, y = two_clusters()
    return small().fit(X, y), X, y


def test_training_reduces_loss(fitted) -> None:
    model, X, y = fitted
    untrained = small(epochs=0).fit(X, y)
    assert model.loss(X, y)["loss"] < 0.5 * untrained.loss(X, y)["loss"]
    curve = model.loss_curve_
    assert len(curve) == 25 and curve[-1]["loss"] < curve[0]["loss"]
    assert set(curve[0]) == {"epoch", "loss", "reconstruction", "kl"}


def test_condition_steers_samples_and_reconstructions(fitted) -> None:
    model, X, y = fitted
    anom_mean, norm_mean = X[y == 1].mean(0), X[y == 0].mean(0)
    s1 = model.sample(400, y=1, random_state=1).mean(0)
    s0 = model.sample(400, y=0, random_state=1).mean(0)
    assert np.linalg.norm(s1 - anom_mean) < np.linalg.norm(s1 - norm_mean)
    assert np.linalg.norm(s0 - norm_mean) < np.linalg.norm(s0 - anom_mean)
    rec = model.reconstruct(X[y == 1], 1)
    gap = np.linalg.norm(anom_mean - norm_mean)
    assert np.linalg.norm(rec - X[y == 1], axis=1).mean() < 0.3 * gap


def test_shapes_and_decoder_fn(fitted) -> None:
    model, X, _ = fitted
    mu, logvar = model.encode(X[:7], 1)
    assert mu.shape == logvar.shape == (7, 3) and mu.dtype == np.float32
    mu2, _ = model.encode(X[:7], np.ones(7, dtype=int))
    np.testing.assert_array_equal(mu, mu2)
    x = model.decode(mu, 1)
    assert x.shape == (7, 5)
    fn = model.decoder_fn(1)
    np.testing.assert_allclose(fn(torch.from_numpy(mu)).numpy(), x, rtol=1e-6)
    assert model.sample(0).shape == (0, 5)


def test_deterministic_under_random_state() -> None:
    X, y = two_clusters(n_normal=120, n_anom=6)
    a = small(epochs=4).fit(X, y)
    b = small(epochs=4).fit(X, y)
    c = small(epochs=4, random_state=1).fit(X, y)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert not torch.equal(a.state_dict()["enc_mu.weight"], c.state_dict()["enc_mu.weight"])
    np.testing.assert_array_equal(a.sample(5), b.sample(5))  # internal stream, same position
    np.testing.assert_array_equal(a.sample(5, random_state=9), a.sample(5, random_state=9))
    assert not np.array_equal(a.sample(5), a.sample(5))  # the stream moves on


def test_partial_fit_continues_training() -> None:
    X, y = two_clusters(n_normal=120, n_anom=6)
    model = small(epochs=3).fit(X, y)
    w0 = model.state_dict()["enc_mu.weight"].clone()
    mean0 = model.net_.x_mean.clone()
    extra = np.full((10, 5), 6.0, dtype=np.float32)
    model.partial_fit(np.vstack([X, extra]), np.r_[y, np.ones(10, dtype=int)], epochs=2)
    assert len(model.loss_curve_) == 5
    assert not torch.equal(model.state_dict()["enc_mu.weight"], w0)
    assert torch.equal(model.net_.x_mean, mean0)  # standardisation fixed after the first fit
    with pytest.raises(InvalidInputError, match="features"):
        model.partial_fit(X[:, :3], y)
    fresh = small(epochs=50).partial_fit(X, y, epochs=2)  # unfitted: fits with 2 epochs
    assert len(fresh.loss_curve_) == 2


def test_scale_invariance_from_standardisation() -> None:
    """Features need not lie in [0, 1]: an affine rescaling leaves the model unchanged."""
    X, y = two_clusters(n_normal=100, n_anom=6)
    scale = np.array([1000.0, 0.001, 1.0, 50.0, 7.0], dtype=np.float32)
    shift = np.array([50.0, -3.0, 0.0, 1e4, 2.0], dtype=np.float32)
    a = small(epochs=3).fit(X, y)
    b = small(epochs=3).fit(X * scale + shift, y)
    xa = a.sample(20, random_state=0)
    xb = b.sample(20, random_state=0)
    np.testing.assert_allclose((xb - shift) / scale, xa, atol=2e-2)


def test_constant_feature_stays_finite() -> None:
    X, y = two_clusters(n_normal=80, n_anom=5)
    X[:, 2] = 3.25
    model = small(epochs=3).fit(X, y)
    out = model.reconstruct(X, y)
    assert np.isfinite(out).all()
    assert model.net_.x_std[2].item() == 1.0


def test_save_and_restore_without_pickle(tmp_path, fitted) -> None:
    from safetensors.torch import load_file, save_file

    model, X, _ = fitted
    cfg = json.loads(json.dumps(model.get_config()))
    save_file(model.state_dict(), str(tmp_path / "cvae.safetensors"))
    restored = CVAE.from_state(cfg, load_file(str(tmp_path / "cvae.safetensors")), device="cpu")
    np.testing.assert_array_equal(restored.encode(X[:5])[0], model.encode(X[:5])[0])
    np.testing.assert_array_equal(
        restored.sample(4, random_state=2), model.sample(4, random_state=2)
    )
    assert restored.get_params() == model.get_params()
    bad = dict(model.state_dict())
    bad["enc_mu.weight"] = torch.zeros(2, 2)
    with pytest.raises(InvalidInputError, match="state_dict"):
        CVAE.from_state(cfg, bad)
    with pytest.raises(InvalidInputError, match="newer"):
        CVAE.from_state({**cfg, "format_version": 99}, model.state_dict())
    with pytest.raises(InvalidInputError):
        CVAE.from_state(small().get_config(), model.state_dict())  # unfitted config


def test_input_validation() -> None:
    X, y = two_clusters(n_normal=50, n_anom=3)
    with pytest.raises(NotFittedError):
        small().encode(X)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        small().fit(bad, y)
    with pytest.raises(InvalidInputError, match="only 0"):
        small().fit(X, np.full(len(X), 2))
    with pytest.raises(InvalidInputError, match="out of range"):
        small(latent_dim=0).fit(X, y)
    with pytest.raises(InvalidInputError, match="random_state"):
        small(random_state="seed").fit(X, y)
    model = small(epochs=1).fit(X, y)
    with pytest.raises(InvalidInputError, match="features"):
        model.decode(np.zeros((2, 4)))
    with pytest.raises(InvalidInputError, match="features"):
        model.encode(X[:, :2])
    with pytest.raises(InvalidInputError):
        model.decode(np.zeros((2, 3)), y=3)


def test_sklearn_clone_keeps_params() -> None:
    model = small(beta=0.5)
    twin = clone(model)
    assert twin.get_params() == model.get_params() and not hasattr(twin, "net_")


@pytest.mark.parametrize("device", DEVICES)
def test_latent_env_from_cvae(device: str) -> None:
    X, y = two_clusters(n_normal=150, n_anom=8)
    model = small(epochs=5, device=device).fit(X, y)
    anomalies, normals = X[y == 1], X[y == 0]
    reward = HydraReward(
        torch.from_numpy(anomalies).to(device), torch.from_numpy(normals).to(device)
    )
    env = make_latent_env(model, anomalies, reward, num_envs=10, horizon=3, seed=0)
    assert env.low.device.type == device
    obs = env.reset()
    assert obs.shape == (10, 4)
    _, r, done, info = env.step(torch.randn(10, 3, device=device))
    assert info["x"].shape == (10, 5) and r.shape == (10,) and torch.isfinite(r).all()
    assert torch.all(info["z"] >= env.low) and torch.all(info["z"] <= env.high)
    mu, _ = model.encode(anomalies)
    # The box contains the encoded anomalies.
    mu_t = torch.from_numpy(mu).to(device)
    assert torch.all(mu_t >= env.low) and torch.all(mu_t <= env.high)


def test_latent_env_clamps_decoded_rows_into_x_bounds(fitted) -> None:
    model, X, y = fitted
    lo, hi = np.full(5, 4.8, dtype=np.float32), np.full(5, 5.2, dtype=np.float32)
    xs = []
    for bounds in (None, (lo, hi)):
        env = make_latent_env(
            model, X[y == 1], lambda x: x.sum(1), num_envs=16, horizon=2, x_bounds=bounds
        )
        env.reset(seed=0)
        xs.append(env.step(torch.full((16, 3), 3.0))[3]["x"])
    outside = (xs[0] < 4.8) | (xs[0] > 5.2)
    assert outside.any()  # the raw decoder leaves the range ...
    assert torch.all(xs[1] >= 4.8) and torch.all(xs[1] <= 5.2)  # ... the bounded env does not
    assert torch.equal(xs[1][~outside], xs[0][~outside])


def test_max_steps_per_epoch_caps_the_gradient_steps_of_an_epoch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 4)).astype(np.float32)
    y = (np.arange(2000) < 50).astype(np.int64)
    model = CVAE(latent_dim=2, epochs=2, batch_size=64, max_steps_per_epoch=3, random_state=0).fit(X, y)
    steps = [s["step"] for s in model._optimizer.state.values()]
    assert steps and all(int(s) == 2 * 3 for s in steps)
    full = CVAE(latent_dim=2, epochs=1, batch_size=64, max_steps_per_epoch=None, random_state=0).fit(X, y)
    assert all(int(s["step"]) == int(np.ceil(2000 / 64)) for s in full._optimizer.state.values())
    with pytest.raises(InvalidInputError, match="max_steps_per_epoch"):
        CVAE(max_steps_per_epoch=0).fit(X, y)


def test_build_then_fit_trains_the_network_it_built():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    y = (np.arange(300) < 20).astype(np.int64)
    a = CVAE(latent_dim=2, epochs=2, random_state=0).fit(X, y)
    b = CVAE(latent_dim=2, epochs=2, random_state=0).build(X)
    b.fit(X, y)
    for (ka, va), (kb, vb) in zip(a.net_.state_dict().items(), b.net_.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
