"""Pseudo-labels for the unsupervised case find planted outliers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from swifthydra.pseudo import ecod_scores, pseudo_labels, unsupervised_scores


def _planted(seed=0, n=400, d=5, k=8):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:k] += rng.choice([-6.0, 6.0], size=(k, d))
    return X, k


def test_ecod_ranks_planted_outliers_on_top():
    X, k = _planted()
    top = np.argsort(-ecod_scores(X))[:k]
    assert set(top) == set(range(k))


def test_pseudo_labels_pick_planted_outliers_and_respect_counts():
    X, k = _planted(1)
    y = pseudo_labels(X, contamination=k / len(X), random_state=0)
    assert y.sum() == k
    assert set(np.flatnonzero(y)) == set(range(k))
    assert pseudo_labels(X, contamination=0.0, random_state=0).sum() == 2  # at least min_count
    np.testing.assert_array_equal(
        unsupervised_scores(X, random_state=3), unsupervised_scores(X, random_state=3)
    )


@settings(max_examples=20, deadline=None)
@given(n=st.integers(3, 60), d=st.integers(1, 4), seed=st.integers(0, 1000), const=st.booleans())
def test_scores_are_finite_and_bounded(n, d, seed, const):
    X = np.random.default_rng(seed).normal(size=(n, d))
    if const:
        X[:, 0] = 1.0
    s = unsupervised_scores(X, random_state=0)
    assert s.shape == (n,) and np.isfinite(s).all() and (s > 0).all() and (s <= 1).all()
    assert np.isfinite(ecod_scores(X)).all()
