"""FeatureScaler: the one transform in front of every network, and its torch twin for ONNX."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from swifthydra._features import MAX_STANDARDISED, FeatureScaler


def _skewed(seed=0, n=400):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.lognormal(0, 2, n), rng.normal(size=n), rng.exponential(5, n) ** 2,
                            np.zeros(n) + 3.0, rng.integers(0, 2, n)])


def test_transform_is_standardised_and_inverse_returns_the_rows():
    X = _skewed()
    scaler = FeatureScaler.fit(X, "auto")
    Z = scaler.transform(X)
    assert Z.dtype == np.float32
    assert scaler.power_.columns.tolist() == [0, 2]  # the two heavily skewed columns, nothing else
    np.testing.assert_allclose(Z.mean(axis=0)[[1, 4]], 0.0, atol=1e-5)
    np.testing.assert_allclose(scaler.inverse_transform(Z), X, rtol=1e-3, atol=1e-4)  # float32 rows
    assert np.all(Z[:, 3] == 0.0)  # a constant column stays finite (scale 1)


def test_far_out_rows_are_clipped_not_overflowed():
    scaler = FeatureScaler.fit(_skewed(), "auto")
    Z = scaler.transform(np.array([[1e300, -1e300, 1e300, 3.0, 0.0]]))
    assert np.isfinite(Z).all() and np.abs(Z).max() <= MAX_STANDARDISED


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["auto", "yeo-johnson", "standard"]), st.floats(0.1, 1e6))
def test_the_torch_twin_computes_what_transform_computes(seed, mode, spread):
    X = _skewed(seed)
    scaler = FeatureScaler.fit(X, mode)
    rows = X[:50] * np.random.default_rng(seed).uniform(-spread, spread, size=(50, 1))  # in and far out of range
    with torch.no_grad():
        twin = scaler.torch_module()(torch.from_numpy(rows)).numpy()
    np.testing.assert_allclose(twin, scaler.transform(rows), rtol=1e-5, atol=1e-5)


def test_swift_hydra_scales_with_its_feature_scaler():
    from _presets import MICRO
    from swifthydra import SwiftHydra
    from swifthydra._validation import seed_from

    X = _skewed(1, 200)
    y = np.zeros(200, dtype=np.int64)
    y[:6] = 1
    model = SwiftHydra(**{**MICRO, "generator": "none"}, random_state=0).fit(X, y)
    seed = seed_from(0)  # the seed SwiftHydra(random_state=0) derives, as the samplers do
    np.testing.assert_array_equal(model._scale(X), FeatureScaler.fit(X, "auto", seed).transform(X))
    np.testing.assert_array_equal(model.center_, model.scaler_.center_)
