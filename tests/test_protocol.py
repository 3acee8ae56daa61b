"""The ADBench protocol: pinned rows, equivalence with ADBench's algorithm, the clean variant."""

from __future__ import annotations

from math import ceil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swifthydra.datasets import adbench_split, load_adbench, load_builtin
from swifthydra.exceptions import InvalidInputError


def _adbench_reference(X, y, seed, la):
    """ADBench's DataGenerator.generator, step by step, with numpy's global RNG as it does."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import MinMaxScaler

    state = np.random.get_state()
    try:
        np.random.seed(seed)
        if len(y) < 1000:
            np.random.seed(seed)
            idx = np.random.choice(np.arange(len(y)), 1000, replace=True)
            X, y = X[idx], y[idx]
        if len(y) > 10000:
            np.random.seed(seed)
            idx = np.random.choice(np.arange(len(y)), 10000, replace=False)
            X, y = X[idx], y[idx]
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, shuffle=True, stratify=y)
        scaler = MinMaxScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
        idx_anomaly = np.where(y_train == 1)[0]
        labeled = np.random.choice(idx_anomaly, ceil(la * len(idx_anomaly)), replace=False)
        weak = np.zeros_like(y_train)
        weak[labeled] = 1
        return X_train, weak, X_test, y_test
    finally:
        np.random.set_state(state)


def test_pinned_rows_wine_seed1():
    """The exact rows ADBench's protocol picks for wine, seed 1, 5% labels: must never drift."""
    X, y = load_builtin("wine")
    s = adbench_split(X, y, seed=1, labeled_ratio=0.05)
    assert s.train_index[:12].tolist() == [16, 88, 60, 35, 71, 96, 32, 93, 40, 14, 101, 18]
    assert s.test_index[:12].tolist() == [22, 62, 108, 10, 111, 81, 100, 72, 107, 31, 103, 50]
    assert np.flatnonzero(s.y_train).tolist() == [554, 571, 620]
    assert (int(s.train_index.sum()), int(s.test_index.sum())) == (44949, 17984)
    assert (len(s.y_train), len(s.y_test), int(s.y_train_true.sum()), int(s.y_test.sum())) == (700, 300, 52, 23)
    np.testing.assert_allclose(s.X_train, s.scaler.transform(X[s.train_index]))


@pytest.mark.parametrize("name", ["wdbc", "wine"])
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("la", [0.0, 0.01, 0.05, 0.25, 1.0])
def test_identical_to_adbench_algorithm_builtin(name, seed, la):
    X, y = load_builtin(name)
    ref = _adbench_reference(X, y, seed, la)
    s = adbench_split(X, y, seed=seed, labeled_ratio=la)
    for a, b in zip(ref, (s.X_train, s.y_train, s.X_test, s.y_test), strict=True):
        np.testing.assert_array_equal(a, b)
    assert s.n_labeled == ceil(la * int(s.y_train_true.sum()))
    assert not np.any(s.y_train & (s.y_train_true == 0)), "only true anomalies may be labelled"


@pytest.mark.parametrize("name", ["thyroid", "shuttle"])  # no resampling / subsampling to 10000
def test_identical_to_adbench_algorithm_shared(shared_dir, name):
    X, y = load_adbench(name, shared_dir, download=False)
    for seed in (1, 2):
        ref = _adbench_reference(X, y, seed, 0.05)
        s = adbench_split(X, y, seed=seed, labeled_ratio=0.05)
        for a, b in zip(ref, (s.X_train, s.y_train, s.X_test, s.y_test), strict=True):
            np.testing.assert_array_equal(a, b)
    assert len(s.y_train) + len(s.y_test) == min(len(y), 10000)


def test_global_rng_is_left_alone():
    X, y = load_builtin("wine")
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    adbench_split(X, y, seed=1, labeled_ratio=0.1)
    assert np.random.rand() == expected


def test_clean_protocol_has_no_row_on_both_sides():
    X, y = load_builtin("wdbc")
    X = np.vstack([X, X[:50]])  # add exact duplicates
    y = np.concatenate([y, y[:50]])
    s = adbench_split(X, y, seed=1, labeled_ratio=0.5, protocol="clean")
    assert len(s.y_train) + len(s.y_test) == 367, "duplicates removed, nothing resampled"
    train_rows = {r.tobytes() for r in X[s.train_index]}
    test_rows = {r.tobytes() for r in X[s.test_index]}
    assert not train_rows & test_rows
    assert len(set(s.train_index)) == len(s.train_index)
    a = adbench_split(X, y, seed=1, labeled_ratio=0.5, protocol="adbench")
    assert {r.tobytes() for r in X[a.train_index]} & {r.tobytes() for r in X[a.test_index]}, (
        "the adbench protocol does duplicate rows across the split on small data"
    )


def test_clean_duplicate_with_conflicting_labels_is_an_anomaly():
    X = np.array([[0.0, 0.0]] * 2 + [[float(i), 1.0] for i in range(20)])
    y = np.array([0, 1] + [1, 1, 1] + [0] * 17)
    s = adbench_split(X, y, seed=1, labeled_ratio=1.0, protocol="clean")
    rows = np.vstack([X[s.train_index], X[s.test_index]])
    labels = np.concatenate([s.y_train_true, s.y_test])
    assert labels[np.all(rows == 0.0, axis=1)].tolist() == [1]


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(20, 1500),
    n_anom=st.integers(2, 60),
    seed=st.integers(0, 2**31),
    la=st.floats(0, 1),
    protocol=st.sampled_from(["adbench", "clean"]),
)
def test_split_invariants(n, n_anom, seed, la, protocol):
    n_anom = min(n_anom, n - 2)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).round(1)
    y = np.zeros(n, dtype=np.int64)
    y[rng.choice(n, n_anom, replace=False)] = 1
    try:
        s = adbench_split(X, y, seed=seed, labeled_ratio=la, protocol=protocol)
    except InvalidInputError as exc:
        # dedup ("clean"), or resampling small data up to 1000 rows ("adbench"), can leave a
        # single anomaly, too few to stratify
        assert protocol == "clean" or n < 1000
        assert "stratified" in str(exc)
        return
    assert s.X_train.min() >= -1e-12 and s.X_train.max() <= 1 + 1e-12
    assert set(np.unique(s.y_train)) <= {0, 1}
    assert s.n_labeled == ceil(la * int(s.y_train_true.sum()))
    assert np.all(s.y_train <= s.y_train_true)
    total = len(s.y_train) + len(s.y_test)
    if protocol == "adbench":
        assert total == max(n, 1000)
    assert abs(len(s.y_test) - 0.3 * total) <= 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"labeled_ratio": 1.5}, "labeled_ratio"),
        ({"labeled_ratio": "a lot"}, "labeled_ratio"),
        ({"protocol": "odds"}, "protocol"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_arguments(kwargs, match):
    X, y = load_builtin("wine")
    with pytest.raises(InvalidInputError, match=match):
        adbench_split(X, y, **kwargs)


def test_bad_data():
    X, y = load_builtin("wine")
    with pytest.raises(InvalidInputError, match="NaN"):
        adbench_split(np.where(X > 100, np.nan, X), y)
    with pytest.raises(InvalidInputError, match="labels"):
        adbench_split(X, y[:-1])
    with pytest.raises(InvalidInputError, match="at least 2 anomalies"):
        adbench_split(X, np.zeros_like(y))
