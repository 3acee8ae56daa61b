"""Attributions: exact on a known score, the planted feature ranks first, gradient ~ occlusion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from swifthydra import SwiftHydra
from swifthydra.datasets import TablePreprocessor
from swifthydra.exceptions import InvalidInputError
from swifthydra.explain import attribute, top_contributions

TINY = dict(
    generator="rl",  # the paper's loop (the default, "none", skips it)
    episodes=1,
    generation_params={"ppo_iterations": 2, "num_envs": 16, "horizon": 3, "latent_dim": 4, "cvae_epochs": 5,
                       "finetune_epochs": 1},
    # min_epochs: these tests check attributions of a model that has learned the planted feature,
    # not early stopping (which may otherwise keep a barely trained first epoch)
    detector_params={"max_epochs": 15, "min_epochs": 5, "d_model": 8, "n_layers": 1, "tokenizer": "feature",
                     "batch_size": 128},
    mome_params={"max_epochs": 15, "d_model": 8, "n_experts": 2},
)
PLANTED = 2  # the one feature that makes the anomalies anomalous


def _planted(seed=0, n=400, d=6, n_anom=30, n_labeled=10):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:n_anom, PLANTED] += 6.0
    y = np.zeros(n, dtype=np.int64)
    y[:n_labeled] = 1
    return X, y, n_anom


@pytest.fixture(scope="module", params=["mome", "large"])
def planted_model(request):
    X, y, n_anom = _planted()
    model = SwiftHydra(random_state=0, inference=request.param, **TINY).fit(X, y)
    return model, X, n_anom


class _Linear:
    """A stand-in model whose score is known: s(x) = w . x + c."""

    def __init__(self, w):
        self.w = np.asarray(w, dtype=float)
        self.n_features_in_ = len(w)

    def decision_function(self, X):
        return X @ self.w + 0.5


def test_occlusion_is_exact_for_a_known_score():
    rng = np.random.default_rng(1)
    w = rng.normal(size=5)
    X = rng.normal(size=(7, 5))
    base = rng.normal(size=5)
    a = attribute(_Linear(w), X, baseline=base)
    np.testing.assert_allclose(a, w * (X - base), rtol=1e-12, atol=1e-12)
    groups = [("a", [0]), ("bc", [1, 2]), ("de", [3, 4])]
    g = attribute(_Linear(w), X, baseline=base, groups=groups)
    full = w * (X - base)
    np.testing.assert_allclose(g, np.stack([full[:, 0], full[:, 1:3].sum(1), full[:, 3:].sum(1)], 1), atol=1e-12)
    tops = top_contributions(g, [n for n, _ in groups], 2)
    assert len(tops) == 7 and all(len(t) == 2 and t[0][1] >= t[1][1] for t in tops)


def test_planted_feature_ranks_first(planted_model):
    model, X, n_anom = planted_model
    base = np.median(X[n_anom:], axis=0)
    occ = attribute(model, X[:n_anom], baseline=base, method="occlusion")
    assert occ.shape == (n_anom, X.shape[1])
    # every anomalous row: setting the planted feature to its typical value lowers the score most
    assert (occ.argmax(1) == PLANTED).all(), occ.argmax(1)
    assert (occ[:, PLANTED] > 0).all()
    ig = attribute(model, X[:n_anom], baseline=base, method="integrated-gradients")
    assert np.mean(ig.argmax(1) == PLANTED) >= 0.9, ig.argmax(1)
    assert ig.mean(0).argmax() == PLANTED


def test_integrated_gradients_add_up_to_the_score_difference():
    X, y, n_anom = _planted(seed=1)
    model = SwiftHydra(random_state=1, inference="large", **TINY).fit(X, y)  # a smooth score
    base = np.median(X[n_anom:], axis=0)
    rows = X[:5]
    ig = attribute(model, rows, baseline=base, method="integrated-gradients", steps=64)
    gap = model.decision_function(rows) - model.decision_function(base[None])[0]
    np.testing.assert_allclose(ig.sum(1), gap, rtol=0.03, atol=0.02)


def test_gradient_matches_occlusion_to_first_order(planted_model):
    model, X, _ = planted_model
    rng = np.random.default_rng(3)
    for b in X[rng.choice(len(X), 4, replace=False)]:
        # off the training rows: the density prior's distance to a reference row is a cone there
        b = b + 0.3 * model.scale_ * rng.normal(size=X.shape[1])
        x = b + 2e-3 * model.scale_ * rng.normal(size=(1, X.shape[1]))
        occ = attribute(model, x, baseline=b, method="occlusion")
        grad = attribute(model, x, baseline=b, method="gradient")
        assert np.abs(grad - occ).max() <= 0.05 * np.abs(occ).max() + 1e-6


def test_categorical_column_is_one_group(planted_model):
    model, X, _ = planted_model
    df = pd.DataFrame(X[:, :4], columns=list("abcd")).assign(kind=np.where(np.arange(len(X)) % 3, "x", "y"))
    pre = TablePreprocessor().fit(df)
    assert [name for name, _ in pre.feature_groups_] == ["a", "b", "c", "d", "kind"]
    assert pre.feature_groups_[-1][1] == [4, 5, 6]  # kind=x, kind=y, kind=__other__
    base = pre.baseline_()
    assert base[4:].tolist() == [1.0, 0.0, 0.0]  # most frequent category
    np.testing.assert_allclose(base[:4], np.median(X[:, :4], axis=0))
    w = np.arange(1.0, 8.0)
    Xt = pre.transform(df.iloc[:5])
    a = attribute(_Linear(w), Xt, baseline=base, groups=pre.feature_groups_)
    np.testing.assert_allclose(a[:, 4], ((Xt - base) * w)[:, 4:].sum(1))


def test_bad_arguments(planted_model):
    model, X, _ = planted_model
    with pytest.raises(InvalidInputError, match="method must be one of"):
        attribute(model, X[:2], method="shap")
    with pytest.raises(InvalidInputError, match="baseline must be 6 finite numbers"):
        attribute(model, X[:2], baseline=np.zeros(3))
    with pytest.raises(InvalidInputError, match="steps must be"):
        attribute(model, X[:2], method="integrated-gradients", steps=0)
    with pytest.raises(InvalidInputError, match="need a fitted SwiftHydra"):
        attribute(_Linear(np.ones(6)), X[:2], baseline=np.zeros(6), method="gradient")
    with pytest.raises(InvalidInputError, match="indices outside"):
        attribute(model, X[:2], groups=[("x", [9])])
    assert attribute(model, X[:0]).shape == (0, X.shape[1])
