"""Property-based fuzzing (hypothesis) of the input checks, fit/score and the model loader.

Every example is bounded (``max_examples``, tiny models), derandomised so CI runs the same
examples each time, and the whole file runs in well under a minute on two busy cores. The
``FUZZ_EXAMPLES`` counts are the "fuzz iterations" of docs/reliability.md; set
``SWIFTHYDRA_FUZZ_SCALE`` (an integer factor) to run more of them locally.

Properties:

* ``check_X`` / ``check_y`` on arbitrary arrays (any dtype, 0-3 dimensions, NaN, inf, huge and
  subnormal values) either return a clean array or raise ``InvalidInputError`` — nothing else;
* ``SwiftHydra.fit`` on random shapes and values (8-40 rows, 1-5 columns, values anywhere in
  ``[-1e30, 1e30]`` including subnormals, duplicates, constant columns; labels or none) either
  fits and gives finite scores of the right shape — for the training rows and for fresh rows
  far outside the training range — or raises ``InvalidInputError`` exactly when the input is
  invalid (all rows identical, or every row labelled an anomaly);
* the same for ``MoME``, the detector that scores in production;
* the same seed gives identical scores, whatever the global RNG states in between;
* ``SwiftHydra.load`` of a saved model whose files were mutated (truncated, bytes flipped in the
  weights or the JSON, files deleted or replaced, JSON subtrees replaced by random JSON, the
  format version bumped, tensors rewritten with the checksum updated) either raises
  ``ModelFileError`` / ``CorruptFileError`` or loads a model that scores finitely or raises a
  ``SwiftHydraError`` — never any other exception.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from _presets import MICRO
from swifthydra import SwiftHydra
from swifthydra._validation import MAX_ABS_VALUE, check_X, check_y
from swifthydra.detectors import MoME
from swifthydra.exceptions import (
    CorruptFileError,
    InvalidInputError,
    ModelFileError,
    SwiftHydraError,
)
from swifthydra.io import CONFIG_FILE, WEIGHTS_FILE

_SCALE = max(1, int(os.environ.get("SWIFTHYDRA_FUZZ_SCALE", "1")))
FUZZ_EXAMPLES = {
    "check_X": 300 * _SCALE,
    "check_y": 200 * _SCALE,
    "fit": 25 * _SCALE,
    "mome": 15 * _SCALE,
        "loader": 15 * _SCALE,  # per mutation kind (10 kinds)
}


def _settings(name: str, **kw):
    return settings(
        max_examples=FUZZ_EXAMPLES[name],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        **kw,
    )



finite_values = st.floats(-MAX_ABS_VALUE, MAX_ABS_VALUE, allow_nan=False, allow_infinity=False,
                          allow_subnormal=True, width=64)
wild_values = st.one_of(
    finite_values,
    st.sampled_from([np.nan, np.inf, -np.inf, 1e300, -1e300, 1e30, 5e-324, -0.0]),
)


# ------------------------------------------------------------------------ input checks
any_dtype = st.one_of(
    hnp.scalar_dtypes(),
    hnp.byte_string_dtypes(max_len=4),
    hnp.unicode_string_dtypes(max_len=4),
    st.just(np.dtype(object)),
)


@_settings("check_X")
@given(hnp.arrays(any_dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)))
def test_check_X_returns_clean_arrays_or_raises_invalid_input(arr):
    try:
        out = check_X(arr)
    except InvalidInputError as exc:
        assert "\n" not in str(exc)
        return
    assert out.ndim == 2 and out.shape == arr.shape and out.shape[0] >= 1 and out.shape[1] >= 1
    assert out.dtype == np.float64 and out.flags["C_CONTIGUOUS"]
    assert np.isfinite(out).all() and np.abs(out).max() <= MAX_ABS_VALUE


@_settings("check_X")
@given(st.lists(st.lists(st.one_of(wild_values, st.integers(-(10**400), 10**400), st.text(max_size=3),
                                   st.none(), st.booleans()), max_size=4), max_size=4))
def test_check_X_on_nested_python_lists(rows):
    try:
        out = check_X(rows)
    except InvalidInputError:
        return
    assert out.ndim == 2 and np.isfinite(out).all()


@_settings("check_y")
@given(hnp.arrays(any_dtype, hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=6)),
       st.integers(0, 6))
def test_check_y_returns_zero_one_labels_or_raises_invalid_input(arr, n_rows):
    try:
        out = check_y(arr, n_rows)
    except InvalidInputError as exc:
        assert "\n" not in str(exc)
        return
    assert out.dtype == np.int64 and out.shape == (n_rows,) and set(np.unique(out)) <= {0, 1}


# ------------------------------------------------------------------------------ fit and score
@st.composite
def training_data(draw, min_rows=8, max_rows=40, labels=("none", "zeros", "some", "all")):
    n = draw(st.integers(min_rows, max_rows))
    d = draw(st.integers(1, 5))
    X = draw(hnp.arrays(np.float64, (n, d), elements=finite_values))
    shape = draw(st.sampled_from(["as drawn", "duplicates", "constant column", "integers", "rescaled"]))
    if shape == "duplicates":
        X[n // 2:] = X[0]
    elif shape == "constant column":
        X[:, 0] = X[0, 0]
    elif shape == "integers":
        X = np.rint(np.clip(X, -(2.0**62), 2.0**62))
    elif shape == "rescaled":  # ordinary data at a random scale, the common case
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        X = rng.normal(size=(n, d)) * 10.0 ** draw(st.integers(-250, 25))
    labels = draw(st.sampled_from(labels))
    y = None
    if labels != "none":
        y = np.zeros(n, dtype=np.int64)
        if labels == "some":
            y[draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=max(1, n // 3)))] = 1
        elif labels == "all":
            y[:] = 1
    return X, y


def _invalid_reason(X, y):
    if (X == X[0]).all():
        return "identical"
    if y is not None and y.all():
        return "every row is labelled"
    return None


@_settings("fit")
@given(training_data(), hnp.arrays(np.float64, (5, 5), elements=finite_values), st.integers(0, 2**16))
def test_fit_and_score_random_data(data, fresh, seed):
    X, y = data
    reason = _invalid_reason(X, y)
    event(f"fit: {reason or 'fitted'}")
    model = SwiftHydra(random_state=seed, **MICRO)
    if reason is not None:
        with pytest.raises(InvalidInputError, match=reason):
            model.fit(X, y)
        return
    model.fit(X, y)
    scores = model.decision_function(X)
    assert scores.shape == (len(X),) and np.isfinite(scores).all()
    assert np.isfinite(model.decision_scores_).all() and np.isfinite(model.threshold_)
    new = model.decision_function(fresh[:, : X.shape[1]])  # anywhere in [-1e30, 1e30]
    assert new.shape == (5,) and np.isfinite(new).all()
    proba = model.predict_proba(fresh[:, : X.shape[1]])
    assert np.isfinite(proba).all() and ((proba >= 0) & (proba <= 1)).all()


@_settings("mome")
@given(training_data(min_rows=2, max_rows=30, labels=("some",)), st.integers(0, 2**16))
def test_mome_fit_and_score_random_data(data, seed):
    X, y = data
    model = MoME(n_experts=2, d_model=4, max_epochs=2, min_epochs=1, random_state=seed)
    invalid = bool(y.all())
    event(f"mome: {'invalid' if invalid else 'fitted'}")
    if invalid:
        with pytest.raises(InvalidInputError):
            model.fit(X, y)
        return
    model.fit(X, y)
    scores = model.decision_function(X)
    assert scores.shape == (len(X),) and np.isfinite(scores).all()


# ------------------------------------------------------------------------------ determinism
@pytest.mark.parametrize(
    "seed, extra, unsupervised, n_jobs",
    [
        (11, dict(), True, 1),
        (12, dict(generator="cvae", inference="large"), False, 1),
        (13, dict(generator="none"), True, 2),
        (14, dict(mome_params={"max_epochs": 3, "min_epochs": 1, "d_model": 4, "n_experts": "auto"}), False, 1),
    ],
    ids=["rl+mome, no labels", "cvae+large", "none, two threads", "auto experts, upcycled"],
)
def test_same_seed_same_scores_whatever_the_global_rng(seed, extra, unsupervised, n_jobs):
    """Extends test_hydra's same-seed test (rl generator, labels): other loop variants, no labels,
    two threads, and the global numpy / torch / random states disturbed between the two fits."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(50, 3))
    X[:5] += 3.0
    y = None if unsupervised else (np.arange(50) < 3).astype(int)
    params = {**MICRO, **extra, "random_state": seed, "n_jobs": n_jobs}

    def run(disturb: int):
        np.random.seed(disturb)
        torch.manual_seed(disturb)
        random.seed(disturb)
        model = SwiftHydra(**params).fit(X, y)
        return model.decision_function(X), model.history_

    (a, history_a), (b, history_b) = run(1), run(2)
    np.testing.assert_array_equal(a, b)
    assert [r.get("kept") for r in history_a] == [r.get("kept") for r in history_b]


# ------------------------------------------------------------------------------ model loader
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (np.arange(40) < 4).astype(int)
    path = SwiftHydra(random_state=0, **MICRO).fit(X, y).save(tmp_path_factory.mktemp("fuzz") / "model")
    return path, X


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.text(max_size=6), children, max_size=3)),
    max_leaves=8,
)


def _json_paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _json_paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _json_paths(v, (*prefix, i))


def _fix_checksum(path: Path) -> None:
    meta = json.loads((path / CONFIG_FILE).read_text())
    meta["weights_sha256"] = hashlib.sha256((path / WEIGHTS_FILE).read_bytes()).hexdigest()
    (path / CONFIG_FILE).write_text(json.dumps(meta))


MUTATIONS = ("truncate", "flip weights", "flip weights, fix checksum", "flip config", "delete",
             "random bytes", "config subtree", "config replaced", "format version", "rewrite tensor")


def _mutate(path: Path, kind: str, rnd: random.Random, value) -> None:
    weights, config = path / WEIGHTS_FILE, path / CONFIG_FILE
    if kind == "truncate":
        target = rnd.choice([weights, config])
        data = target.read_bytes()
        target.write_bytes(data[: rnd.randrange(len(data))])
    elif kind.startswith("flip"):
        target = config if kind == "flip config" else weights
        data = bytearray(target.read_bytes())
        for _ in range(rnd.randint(1, 8)):
            data[rnd.randrange(len(data))] ^= rnd.randint(1, 255)
        target.write_bytes(bytes(data))
        if kind.endswith("fix checksum"):
            _fix_checksum(path)
    elif kind == "delete":
        rnd.choice([weights, config]).unlink()
    elif kind == "random bytes":
        rnd.choice([weights, config]).write_bytes(rnd.randbytes(rnd.randint(0, 300)))
    elif kind in ("config subtree", "config replaced", "format version"):
        meta = json.loads(config.read_text())
        if kind == "config replaced":
            meta = value
        elif kind == "format version":
            meta["format_version"] = rnd.choice([0, -1, 4, 10**6, "1", None, 1.5])
        else:
            target_path = rnd.choice(list(_json_paths(meta["config"]))[1:])
            parent = meta["config"]
            for key in target_path[:-1]:
                parent = parent[key]
            if rnd.random() < 0.2 and isinstance(parent, dict):
                del parent[target_path[-1]]
            else:
                parent[target_path[-1]] = value
        config.write_text(json.dumps(meta))
    elif kind == "rewrite tensor":
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(weights))
        key = rnd.choice(sorted(tensors))
        t = tensors[key]
        choice = rnd.randrange(4)
        if choice == 0:
            tensors[key] = torch.full_like(t, float("nan")) if t.is_floating_point() else t + 10**6
        elif choice == 1:
            tensors[key] = torch.zeros(t.numel() + 1)
        elif choice == 2:
            del tensors[key]
        else:
            tensors[key] = t.to(torch.float16) if t.is_floating_point() else t.float()
        save_file(tensors, str(weights))
        _fix_checksum(path)


@pytest.mark.parametrize("kind", MUTATIONS)
@_settings("loader")
@given(rnd=st.randoms(use_true_random=False), value=json_values)
def test_loader_on_mutated_files(saved_model, kind, rnd, value):
    source, X = saved_model
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model"
        shutil.copytree(source, path)
        _mutate(path, kind, rnd, value)
        try:
            model = SwiftHydra.load(path)
        except (ModelFileError, CorruptFileError) as exc:
            assert isinstance(exc, SwiftHydraError) and "\n" not in str(exc)
            event("load refused")
            return
        try:  # what survived the mutation (e.g. a flipped digit of a threshold) must still work
            scores = model.decision_function(X)
            proba = model.predict_proba(X, method="linear")
            labels = model.predict(X)
        except SwiftHydraError:
            event("loaded, scoring refused")
            return
        event("loaded and scored")
        assert np.isfinite(scores).all() and np.isfinite(proba).all()
        assert set(np.unique(labels)) <= {0, 1}
