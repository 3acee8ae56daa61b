"""ADBench's realistic synthetic anomalies and the unseen-type scenario."""

from __future__ import annotations

import json

import numpy as np
import pytest

from swifthydra.bench import (
    ANOMALY_TYPES,
    ResultStore,
    realistic_synthetic,
    run_benchmark,
    synthetic_pool,
    unseen_type_dataset,
)
from swifthydra.bench.synthetic import (
    fit_normal_mixture,
    gaussian_copula_sample,
    kde_marginal_sample,
)
from swifthydra.exceptions import InvalidInputError


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    a = rng.multivariate_normal([0, 0, 0], [[1, 0.8, 0], [0.8, 1, 0], [0, 0, 1]], size=250)
    b = rng.normal(4, 0.5, size=(150, 3))
    X = np.r_[a, b, rng.normal(0, 6, size=(20, 3))]
    y = np.r_[np.zeros(400, int), np.ones(20, int)]
    return X, y


@pytest.mark.parametrize("kind", ANOMALY_TYPES)
def test_realistic_synthetic_keeps_counts(data, kind):
    X, y = data
    Xs, ys = realistic_synthetic(X, y, kind, seed=1)
    assert Xs.shape == X.shape and ys.sum() == 20 and (ys[:400] == 0).all()
    assert np.isfinite(Xs).all()


def test_types_behave_as_defined(data):
    X, y = data
    normal = X[y == 0]
    gm = fit_normal_mixture(normal, seed=1)
    assert 1 <= gm.n_components <= 9 and gm.n_components >= 2  # two clear clusters
    Xl, yl = realistic_synthetic(X, y, "local", seed=1)
    Xg, yg = realistic_synthetic(X, y, "global", seed=1)
    Xc, yc = realistic_synthetic(X, y, "cluster", seed=1)
    # local anomalies are more spread than the normal rows, cluster anomalies are shifted
    assert Xl[yl == 1].std() > Xl[yl == 0].std()
    assert np.abs(Xc[yc == 1].mean(axis=0)).max() > 3 * np.abs(Xc[yc == 0].mean(axis=0)).max()
    lo, hi = Xg[yg == 0].min(axis=0), Xg[yg == 0].max(axis=0)
    box_lo, box_hi = np.minimum(lo * 1.1, hi * 1.1), np.maximum(lo * 1.1, hi * 1.1)
    assert ((Xg[yg == 1] >= box_lo - 1e-9) & (Xg[yg == 1] <= box_hi + 1e-9)).all()
    # the same seed gives the same data
    assert np.array_equal(realistic_synthetic(X, y, "local", seed=1)[0], Xl)
    with pytest.raises(InvalidInputError, match="anomaly type"):
        realistic_synthetic(X, y, "weird")


def test_copula_keeps_dependence_kde_breaks_it(data):
    X, y = data
    rng = np.random.RandomState(0)
    normal = X[y == 0][:250]  # the correlated component
    cop = gaussian_copula_sample(normal, 2000, rng)
    ind = kde_marginal_sample(normal, 2000, rng)
    r = np.corrcoef(normal, rowvar=False)[0, 1]
    assert abs(np.corrcoef(cop, rowvar=False)[0, 1] - r) < 0.1
    assert abs(np.corrcoef(ind, rowvar=False)[0, 1]) < 0.1
    # marginals are kept
    assert abs(np.median(cop[:, 0]) - np.median(normal[:, 0])) < 0.2
    assert abs(ind[:, 0].std() - normal[:, 0].std()) < 0.2


def test_unseen_type_split(data):
    X, y = data
    pool = synthetic_pool(X, y, seed=2)
    assert set(pool.anomalies) == set(ANOMALY_TYPES)
    # resampled to 1000 rows first (adbench protocol): ~95% normal rows
    assert 900 < len(pool.normal) < 1000
    split = unseen_type_dataset(pool, "global", seed=2, labeled_ratio=0.1)
    n_anom = len(pool.anomalies["global"])
    assert split.y_train_true.sum() == round(0.7 * n_anom)
    assert split.n_labeled == int(np.ceil(0.1 * split.y_train_true.sum()))
    assert set(np.unique(split.test_types)) == {"normal", *ANOMALY_TYPES}
    assert (split.y_test == (split.test_types != "normal")).all()
    assert split.X_train.min() >= -1e-9 and split.X_train.max() <= 1 + 1e-9


def test_unseen_type_benchmark_records_matrix(tmp_path, data):
    X, y = data
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=y)
    out = tmp_path / "r.sqlite"
    s = run_benchmark([str(path)], out=out, scenario="unseen-type",
                      anomaly_types=["local", "cluster"], labeled_ratios=[0.1], seeds=[1],
                      models="ecod", jobs=0)
    assert s.statuses == {"ok": 2}
    with ResultStore(out, readonly=True) as store:
        df = store.to_frame()
    assert set(df.scenario) == {"unseen-type:local", "unseen-type:cluster"}
    extra = json.loads(df.extra.iloc[0])
    assert set(extra["per_type"]) == set(ANOMALY_TYPES)
    assert "all_types" in extra
