"""The Yeo-Johnson gate of skewed columns: formulas, gating, range extension, SwiftHydra use."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from _presets import MICRO
from swifthydra import SwiftHydra
from swifthydra._power import PowerGate, yeo_johnson, yeo_johnson_inverse
from swifthydra.exceptions import InvalidInputError, ModelFileError


@pytest.mark.parametrize("lam", [-4.0, -1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 6.0])
def test_formula_matches_scipy_and_inverts(lam):
    z = np.random.RandomState(0).normal(scale=3.0, size=500)
    t = yeo_johnson(z[:, None], np.array([lam]))[:, 0]
    np.testing.assert_allclose(t, stats.yeojohnson(z, lam), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(yeo_johnson_inverse(t[:, None], np.array([lam]))[:, 0], z, atol=1e-9)


def _skewed(n=1500, seed=0):
    rng = np.random.RandomState(seed)
    Z = np.c_[rng.exponential(size=n) ** 3, rng.normal(size=n), rng.randint(0, 2, n), rng.uniform(size=n)]
    return (Z - Z.mean(0)) / Z.std(0)


def test_auto_gates_only_skewed_non_binary_columns():
    Z = _skewed()
    assert list(PowerGate.fit(Z, "auto").columns) == [0]
    assert list(PowerGate.fit(Z, "yeo-johnson").columns) == [0, 1, 3]  # the binary column never
    assert PowerGate.fit(Z, "standard").columns.size == 0
    T = PowerGate.fit(Z, "auto").transform(Z)
    assert abs(stats.skew(T[:, 0])) < 0.25 * abs(stats.skew(Z[:, 0]))  # far less skewed
    np.testing.assert_allclose([T[:, 0].mean(), T[:, 0].std()], [0.0, 1.0], atol=1e-9)
    np.testing.assert_array_equal(T[:, 1:], Z[:, 1:])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=40))
def test_monotone_unbounded_and_invertible_everywhere(values):
    gate = PowerGate.fit(_skewed(), "auto")
    Z = np.zeros((len(values), 4))
    Z[:, 0] = np.sort(values)
    T = gate.transform(Z)
    assert np.isfinite(T).all()
    assert (np.diff(T[:, 0]) >= 0).all()  # order kept, ties allowed only for equal inputs
    np.testing.assert_allclose(gate.inverse_transform(T)[:, 0], Z[:, 0], rtol=1e-7, atol=1e-6)


def test_rows_beyond_the_training_range_keep_getting_more_extreme():
    Z = _skewed()
    gate = PowerGate.fit(Z, "auto")
    assert gate.lambdas[0] < 0  # this column's Yeo-Johnson is bounded above on its own
    far = np.zeros((3, 4))
    far[:, 0] = [Z[:, 0].max(), 10 * Z[:, 0].max(), 1000 * Z[:, 0].max()]
    t = gate.transform(far)[:, 0]
    assert t[0] < t[1] < t[2] and t[2] - t[1] > 10 * (t[1] - t[0]) / 10


def test_from_arrays_refuses_inconsistent_constants():
    arrays = PowerGate.fit(_skewed(), "auto").arrays
    PowerGate.from_arrays(arrays)
    with pytest.raises(ValueError):
        PowerGate.from_arrays({**arrays, "scale": np.array([0.0])})
    with pytest.raises(ValueError):
        PowerGate.from_arrays({**arrays, "lambdas": np.array([1.0, 2.0])})
    with pytest.raises(ValueError):
        PowerGate.from_arrays({**arrays, "low": np.array([np.nan])})


def _data(seed=0, n=400):
    rng = np.random.RandomState(seed)
    X = np.c_[rng.lognormal(3, 1.2, n), rng.normal(size=n), rng.normal(size=n)]
    y = np.zeros(n, dtype=np.int64)
    X[:12, 1] += 4.0
    y[:6] = 1
    return X, y


def test_swifthydra_transforms_skewed_columns_and_round_trips(tmp_path):
    X, y = _data()
    model = SwiftHydra(random_state=0, **MICRO).fit(X, y)
    assert list(model.power_transform_.columns) == [0]
    np.testing.assert_allclose(model._unscale(model._scale(X)), X, rtol=1e-5)  # generated_ is in input units
    assert model.generated_.shape[1] == 3 and np.isfinite(model.generated_).all()
    path = model.save(tmp_path / "m")
    again = SwiftHydra.load(path)
    assert again.feature_transform == "auto" and list(again.power_transform_.columns) == [0]
    np.testing.assert_array_equal(again.decision_function(X), model.decision_function(X))
    plain = SwiftHydra(random_state=0, feature_transform="standard", **MICRO).fit(X, y)
    assert plain.power_transform_.columns.size == 0
    assert not np.allclose(plain.decision_function(X), model.decision_function(X))


def test_bad_feature_transform_and_damaged_constants(tmp_path):
    X, y = _data()
    with pytest.raises(InvalidInputError, match="feature_transform"):
        SwiftHydra(feature_transform="quantile").fit(X, y)
    model = SwiftHydra(random_state=0, **MICRO).fit(X, y)
    path = model.save(tmp_path / "m")
    from safetensors.numpy import load_file, save_file

    weights = next(p for p in path.iterdir() if p.suffix == ".safetensors")
    tensors = load_file(weights)
    tensors["power.columns"] = np.array([7], dtype=np.int64)  # a column the model does not have
    save_file(tensors, weights)
    with pytest.raises(ModelFileError, match="checksum"):
        SwiftHydra.load(path)
    # same damage with a matching checksum (as a buggy writer would leave it): still refused
    import hashlib
    import json

    config = json.loads((path / "config.json").read_text())
    config["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="power-transform columns"):
        SwiftHydra.load(path)


def test_model_files_from_before_the_transform_still_load(tmp_path):
    """Files written before ``feature_transform`` existed have no ``power.*`` tensors and no such
    parameter: they load as standardisation only, with the same scores."""
    import hashlib
    import json

    from safetensors.numpy import load_file, save_file

    X, y = _data()
    model = SwiftHydra(random_state=0, feature_transform="standard", **MICRO).fit(X, y)
    path = model.save(tmp_path / "old")
    weights = path / "model.safetensors"
    save_file({k: v for k, v in load_file(weights).items() if not k.startswith("power.")}, weights)
    config = json.loads((path / "config.json").read_text())
    config["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    del config["config"]["params"]["feature_transform"]
    (path / "config.json").write_text(json.dumps(config))
    old = SwiftHydra.load(path)
    assert old.feature_transform == "standard" and old.power_transform_.columns.size == 0
    np.testing.assert_array_equal(old.decision_function(X), model.decision_function(X))
