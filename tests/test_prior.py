"""The k-NN density prior (docs/design.md §10.1): its term, its weight, and that every path a
score takes (decision_function, save/load, ONNX, explanations) carries it."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from _presets import MICRO
from swifthydra import SwiftHydra
from swifthydra.detectors.prior import (
    GROUP,
    DensityPrior,
    K,
    log_knn_distance,
    prior_part,
    smallest,
)
from swifthydra.exceptions import InvalidInputError, ModelFileError


def _blobs(seed=0, n=600, d=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X


def test_log_knn_distance_is_the_mean_distance_to_the_k_nearest():
    rng = np.random.default_rng(1)
    ref, q = rng.normal(size=(300, 5)), rng.normal(size=(40, 5)) * 2
    got = log_knn_distance(torch.from_numpy(q), torch.from_numpy(ref), K).numpy()
    dist, _ = NearestNeighbors(n_neighbors=K).fit(ref).kneighbors(q)
    np.testing.assert_allclose(got, np.log(dist.mean(1) + 1e-9), rtol=1e-9, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 9),
    columns=st.integers(1, 3000),
    n=st.integers(1, 21),
    levels=st.sampled_from([3, 50, 10**6]),  # few distinct values: many ties
    seed=st.integers(0, 2**31 - 1),
)
def test_smallest_finds_the_same_values_as_topk(rows, columns, n, levels, seed):
    n = min(n, columns)
    rng = np.random.default_rng(seed)
    values = torch.from_numpy(rng.integers(0, levels, size=(rows, columns)).astype(np.float32))
    values[torch.from_numpy(rng.random((rows, columns)) < 0.01)] = float("inf")
    got = smallest(values, n)
    assert got.shape == (rows, n)
    assert all(len(set(r.tolist())) == n for r in got)  # n distinct columns per row
    want = torch.topk(values, n, dim=1, largest=False).values
    np.testing.assert_array_equal(torch.sort(values.gather(1, got), dim=1).values.numpy(), want.numpy())


def test_the_grouped_search_gives_the_exact_nearest_neighbours():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(2048 + 5, 6))  # the grouped search, with a padded last group
    ref[100:140] = ref[7]  # duplicated reference rows: ties
    q = np.concatenate([rng.normal(size=(300, 6)) * 1.5, ref[95:105]])
    assert ref.shape[0] >= 2 * (K + 8) * GROUP
    got = log_knn_distance(torch.from_numpy(q), torch.from_numpy(ref), K).numpy()
    dist, _ = NearestNeighbors(n_neighbors=K).fit(ref).kneighbors(q)
    want = np.log(np.sqrt(dist**2 + 1e-12).mean(1) + 1e-9)  # the term's guard at distance 0
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-6)


def test_the_term_is_centred_on_the_unlabeled_rows_and_grows_away_from_them():
    X = _blobs()
    prior = DensityPrior.fit(X, seed=0)
    assert np.median(prior.calibration_) == pytest.approx(0.0, abs=1e-9)
    far = prior.term(np.full((1, X.shape[1]), 6.0))[0]
    typical = np.median(prior.term(np.random.default_rng(5).normal(size=(500, X.shape[1]))))
    assert far > 3 and abs(typical) < 0.5


def test_a_reference_row_is_not_its_own_neighbour_in_the_calibration():
    X = _blobs(n=50)  # every row is a reference row
    prior = DensityPrior.fit(X, seed=0)
    dist, _ = NearestNeighbors(n_neighbors=K + 1).fit(X).kneighbors(X)
    own = np.log(dist[:, 1:].mean(1) + 1e-9)
    np.testing.assert_allclose(np.sort(prior.calibration_ * prior.scale + prior.center), np.sort(own), atol=1e-6)


def test_separation_is_the_auc_of_the_term_against_the_unlabeled_rows():
    X = _blobs()
    prior = DensityPrior.fit(X, seed=0)
    assert prior.separation(np.full((3, X.shape[1]), 8.0)) == 1.0
    inside = prior.separation(np.random.default_rng(9).normal(size=(400, X.shape[1])))
    assert 0.4 < inside < 0.6
    assert np.isnan(prior.separation(np.zeros((0, X.shape[1]))))


def test_the_term_spreads_its_blocks_over_threads_with_the_same_values():
    """With several torch threads the term's blocks run on as many Python threads (one intra-op
    thread each): the values equal one thread's, and the caller's thread count comes back."""
    import threading

    from swifthydra.detectors import prior as prior_module

    rng = np.random.RandomState(0)
    prior = DensityPrior.fit(rng.normal(size=(3000, 8)), seed=0)
    X = rng.normal(size=(5 * prior_module._CHUNK + 17, 8))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = prior.term(X)
        torch.set_num_threads(3)
        seen = set()
        real = prior_module.log_knn_distance

        def spy(*args, **kwargs):
            seen.add((threading.current_thread().name.split("_")[0], torch.get_num_threads()))
            return real(*args, **kwargs)

        prior_module.log_knn_distance = spy
        try:
            many = prior.term(X)
        finally:
            prior_module.log_knn_distance = real
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(one, many)
    assert seen == {("swifthydra-prior", 1)}


def test_too_few_unlabeled_rows_is_a_clear_error():
    with pytest.raises(InvalidInputError, match="at least"):
        DensityPrior.fit(np.zeros((3, 2)), seed=0)


def _planted(seed=0):
    """Normal rows, a few labelled anomalies of one kind and unlabelled far ones of another."""
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=(1000, 4))  # a reference of 1,000 rows: the grouped search
    seen = rng.normal(size=(20, 4)) * 0.3 + np.array([4.0, 0, 0, 0])
    X = np.vstack([seen, normal])
    y = np.r_[np.ones(len(seen)), np.zeros(len(normal))].astype(int)
    test_normal = rng.normal(size=(300, 4))
    unseen = rng.normal(size=(30, 4)) * 0.3 + np.array([0, 0, -5.0, 5.0])  # a kind never labelled
    X_test = np.vstack([test_normal, unseen])
    y_test = np.r_[np.zeros(len(test_normal)), np.ones(len(unseen))]
    return X, y, X_test, y_test


@pytest.fixture(scope="module")
def planted_models():
    X, y, X_test, y_test = _planted()
    with_prior = SwiftHydra(random_state=0, **MICRO).fit(X, y)
    without = SwiftHydra(random_state=0, prior_weight=0, **MICRO).fit(X, y)
    return with_prior, without, X, y, X_test, y_test


def test_the_prior_only_adds_to_the_networks_score(planted_models):
    model, without, X, _, X_test, _ = planted_models
    assert without.prior_ is None and without.prior_weight_ == 0.0 and without.prior_scale_ == 0.0
    np.testing.assert_array_equal(model._score_scaled(model._scale(X_test)), without.decision_function(X_test))
    expected = without.decision_function(X_test) + prior_part(
        model.prior_.term(model.scaler_.standardise(X_test)), model.prior_scale_, model.prior_tail_scale_,
        model.prior_tail_from_)
    np.testing.assert_allclose(model.decision_function(X_test), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.decision_scores_, model.decision_function(X), rtol=0, atol=1e-12)
    assert model.threshold_ == pytest.approx(np.quantile(model.decision_scores_, 0.9), rel=1e-6)


def test_the_bench_model_prior_is_swifthydras_prior_alone(planted_models):
    """``swifthydra bench --models prior`` scores with the very prior a SwiftHydra fit adds."""
    from swifthydra.bench.models import get_model

    model, _, X, y, X_test, _ = planted_models
    alone = get_model("prior").factory(0, 1).fit(X, y)
    expected = model.prior_.term(model.scaler_.standardise(X_test))
    np.testing.assert_array_equal(alone.decision_function(X_test), expected)
    with pytest.raises(InvalidInputError, match="more unlabeled rows"):
        get_model("prior").factory(0, 1).fit(X[:10], np.ones(10, dtype=int))


def test_auto_weight_follows_the_known_anomalies_separation(planted_models):
    model = planted_models[0]
    assert model.prior_auc_ > 0.95  # the labelled kind lies far from the normal rows
    assert model.prior_weight_ == pytest.approx(2.0 * max(0.1, 2 * model.prior_auc_ - 1))
    q1, q3 = np.percentile(model._score_scaled(model._scale(planted_models[2][planted_models[3] == 0])), [25, 75])
    assert model.prior_scale_ == pytest.approx(model.prior_weight_ * (q3 - q1), rel=1e-6)
    fixed = SwiftHydra(random_state=0, prior_weight=0.7, **MICRO).fit(planted_models[2], planted_models[3])
    assert fixed.prior_weight_ == 0.7


def test_the_prior_finds_a_kind_of_anomaly_nobody_labelled(planted_models):
    model, without, _, _, X_test, y_test = planted_models
    auc_with = roc_auc_score(y_test, model.decision_function(X_test))
    auc_without = roc_auc_score(y_test, without.decision_function(X_test))
    assert auc_with >= 0.95
    assert auc_with > auc_without


def test_save_load_keeps_the_prior(planted_models, tmp_path):
    model, without, *_, X_test, _ = planted_models
    model.save(tmp_path / "m")
    back = SwiftHydra.load(tmp_path / "m")
    np.testing.assert_array_equal(back.decision_function(X_test), model.decision_function(X_test))
    assert (back.prior_weight_, back.prior_auc_, back.prior_scale_) == (
        model.prior_weight_, model.prior_auc_, model.prior_scale_)
    without.save(tmp_path / "w")
    back = SwiftHydra.load(tmp_path / "w")
    assert back.prior_ is None
    np.testing.assert_array_equal(back.decision_function(X_test), without.decision_function(X_test))


def test_a_prior_that_does_not_fit_the_model_is_refused(planted_models, tmp_path, monkeypatch):
    model = planted_models[0]
    monkeypatch.setattr(model.prior_, "reference", model.prior_.reference[:, :2])
    model.save(tmp_path / "bad")
    with pytest.raises(ModelFileError, match="inconsistent"):
        SwiftHydra.load(tmp_path / "bad")


def test_explanations_include_the_prior(planted_models):
    from swifthydra.explain import attribute

    model, *_, X_test, _ = planted_models
    rows = X_test[-3:]  # unseen anomalies: the prior carries most of their score
    base = np.median(planted_models[2][planted_models[3] == 0], axis=0)
    ig = attribute(model, rows, baseline=base, method="integrated-gradients", steps=128)
    gap = model.decision_function(rows) - model.decision_function(base[None])[0]
    np.testing.assert_allclose(ig.sum(1), gap, rtol=0.05, atol=0.05)
    # the planted columns of the unseen kind (2 and 3) explain it
    assert set(np.argsort(-ig, axis=1)[:, :2].ravel()) <= {2, 3}


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed")
@pytest.mark.parametrize("routed", [True, False])
def test_onnx_export_includes_the_prior(planted_models, tmp_path, routed):
    from swifthydra.onnx_export import export_onnx

    model, *_, X_test, _ = planted_models
    assert model.prior_.reference.shape[0] >= 2 * (K + 8) * GROUP  # grouped search in torch, TopK in the graph
    path = tmp_path / "m.onnx"
    export_onnx(model, path, routed=routed)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    score = sess.run(None, {"features": X_test.astype(np.float64)})[0]
    np.testing.assert_allclose(score, model.decision_function(X_test), rtol=0, atol=1e-5)
    # The prior runs PRIOR_BLOCK rows at a time in a Scan (the last block padded): no chunk x
    # reference matrix outside it, and the same scores for batches of any size.
    import onnx

    from swifthydra.onnx_export import PRIOR_BLOCK

    graph = onnx.load(str(path)).graph
    scans = [n for n in graph.node if n.op_type == "Scan"]
    assert len(scans) == 1 and "TopK" not in [n.op_type for n in graph.node]
    assert "TopK" in [n.op_type for n in scans[0].attribute[0].g.node]
    rng = np.random.default_rng(0)
    X = X_test[rng.integers(0, len(X_test), 2 * PRIOR_BLOCK + 3)] + rng.normal(scale=0.1, size=(1, X_test.shape[1]))
    want = model.decision_function(X)
    for n in (0, 1, PRIOR_BLOCK - 1, PRIOR_BLOCK, PRIOR_BLOCK + 1, 2 * PRIOR_BLOCK + 3):
        got = sess.run(None, {"features": X[:n].astype(np.float64)})[0]
        assert got.shape == (n,)
        np.testing.assert_allclose(got, want[:n], rtol=0, atol=1e-5)


def test_info_reports_the_prior(planted_models, tmp_path):
    import json

    from typer.testing import CliRunner

    from swifthydra.cli import app

    model, without, *_ = planted_models
    model.save(tmp_path / "m")
    without.save(tmp_path / "w")
    runner = CliRunner()
    out = runner.invoke(app, ["info", str(tmp_path / "m")])
    assert out.exit_code == 0, out.output
    assert f"weight {model.prior_weight_:.3g}" in out.output and "AUC" in out.output
    summary = json.loads(runner.invoke(app, ["info", str(tmp_path / "m"), "--json"]).output)
    assert summary["density_prior"]["weight"] == pytest.approx(model.prior_weight_)
    assert "density prior  none" in runner.invoke(app, ["info", str(tmp_path / "w")]).output


# -- the far tail (version 0.4): beyond every unlabeled training row, the rule's full weight ------


def test_prior_part_adds_the_excess_beyond_the_tail_at_its_own_scale():
    t = np.array([-1.0, 0.5, 2.0, 3.0, 7.5])
    np.testing.assert_array_equal(prior_part(t, 0.4), 0.4 * t)
    np.testing.assert_array_equal(prior_part(t, 0.4, 0.0, 2.0), 0.4 * t)  # no tail scale: no tail
    np.testing.assert_allclose(prior_part(t, 0.4, 1.6, 2.0), 0.4 * t + 1.6 * np.array([0, 0, 0, 1.0, 5.5]))
    tt = torch.from_numpy(t)
    np.testing.assert_allclose(prior_part(tt, 0.4, 1.6, 2.0).numpy(), prior_part(t, 0.4, 1.6, 2.0), rtol=0, atol=0)


def _planted_near(seed=0):
    """Labelled anomalies close to the normal rows (the prior barely separates them: a small
    weight) and, in the test rows only, a kind far from every training row."""
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=(1000, 4))
    seen = rng.normal(size=(20, 4)) + np.array([0.8, 0, 0, 0])
    X = np.vstack([seen, normal])
    y = np.r_[np.ones(len(seen)), np.zeros(len(normal))].astype(int)
    far = rng.normal(size=(30, 4)) * 0.3 + np.array([0, 0, -7.0, 7.0])
    X_test = np.vstack([rng.normal(size=(300, 4)), far])
    y_test = np.r_[np.zeros(300), np.ones(len(far))]
    return X, y, X_test, y_test


@pytest.fixture(scope="module")
def near_model():
    X, y, X_test, y_test = _planted_near()
    return SwiftHydra(random_state=0, **MICRO).fit(X, y), X, y, X_test, y_test


def test_auto_weight_counts_rows_beyond_every_training_row_at_full_weight(near_model):
    from swifthydra.hydra import AUTO_PRIOR_WEIGHT

    model, X, y, X_test, y_test = near_model
    assert model.prior_weight_ < 0.5 * AUTO_PRIOR_WEIGHT  # the labelled kind is not far
    train_term = model.prior_.term(model.scaler_.standardise(X))
    assert model.prior_tail_from_ == np.max(train_term[y == 0])
    unit = model.prior_scale_ / model.prior_weight_
    assert model.prior_tail_scale_ == pytest.approx((AUTO_PRIOR_WEIGHT - model.prior_weight_) * unit, rel=1e-12)
    net = model._score_scaled(model._scale(X_test))
    term = model.prior_.term(model.scaler_.standardise(X_test))
    assert (term[y_test == 1] > model.prior_tail_from_).all()  # the far kind; a few test normals may be too
    inside = term <= model.prior_tail_from_
    assert inside.sum() > 250
    got = model.decision_function(X_test)
    np.testing.assert_allclose(got[inside], (net + model.prior_scale_ * term)[inside], rtol=0, atol=1e-12)
    want = net + prior_part(term, model.prior_scale_, model.prior_tail_scale_, model.prior_tail_from_)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert (got[y_test == 1] > (net + model.prior_scale_ * term)[y_test == 1]).all()
    # the training rows' scores and threshold use the same fusion (no training row is beyond it)
    np.testing.assert_allclose(model.decision_scores_, model.decision_function(X), rtol=0, atol=1e-12)


def test_a_weight_given_as_a_number_has_no_tail(near_model):
    _, X, y, *_ = near_model
    fixed = SwiftHydra(random_state=0, prior_weight=0.3, **MICRO).fit(X, y)
    assert (fixed.prior_tail_scale_, fixed.prior_tail_from_) == (0.0, float("inf"))


def test_the_tail_survives_save_load_and_a_format_2_file_loads_without_it(near_model, tmp_path):
    import json

    from swifthydra.io import CONFIG_FILE

    model, *_, X_test, _ = near_model
    model.save(tmp_path / "m")
    back = SwiftHydra.load(tmp_path / "m")
    assert (back.prior_tail_scale_, back.prior_tail_from_) == (model.prior_tail_scale_, model.prior_tail_from_)
    np.testing.assert_array_equal(back.decision_function(X_test), model.decision_function(X_test))
    # a model written by version 0.3 (format 2) has no tail and scores as it did then
    meta = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    del meta["config"]["prior"]["tail_scale"], meta["config"]["prior"]["tail_from"]
    meta["format_version"] = 2
    (tmp_path / "m" / CONFIG_FILE).write_text(json.dumps(meta))
    old = SwiftHydra.load(tmp_path / "m")
    assert (old.prior_tail_scale_, old.prior_tail_from_) == (0.0, float("inf"))
    net = model._score_scaled(model._scale(X_test))
    term = model.prior_.term(model.scaler_.standardise(X_test))
    np.testing.assert_allclose(old.decision_function(X_test), net + model.prior_scale_ * term, rtol=0, atol=1e-12)
    # a damaged tail is refused, not half-used
    meta["config"]["prior"].update(tail_scale=-1.0, tail_from=2.0)
    (tmp_path / "m" / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="inconsistent"):
        SwiftHydra.load(tmp_path / "m")


def test_explanations_and_onnx_carry_the_tail(near_model, tmp_path):
    from swifthydra.explain import attribute

    model, X, y, X_test, y_test = near_model
    rows = X_test[-3:]  # beyond the tail
    base = np.median(X[y == 0], axis=0)
    ig = attribute(model, rows, baseline=base, method="integrated-gradients", steps=256)
    gap = model.decision_function(rows) - model.decision_function(base[None])[0]
    np.testing.assert_allclose(ig.sum(1), gap, rtol=0.05, atol=0.05)
    if importlib.util.find_spec("onnxruntime") is None:
        return
    import onnxruntime as ort

    from swifthydra.onnx_export import export_onnx

    export_onnx(model, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    score = sess.run(None, {"features": X_test.astype(np.float64)})[0]
    np.testing.assert_allclose(score, model.decision_function(X_test), rtol=0, atol=1e-5)


def test_info_reports_the_tail(near_model, tmp_path):
    from typer.testing import CliRunner

    from swifthydra.cli import app

    near_model[0].save(tmp_path / "m")
    out = CliRunner().invoke(app, ["info", str(tmp_path / "m")])
    assert out.exit_code == 0, out.output
    assert "rows farther than every unlabeled training row at full weight" in " ".join(out.output.split())
