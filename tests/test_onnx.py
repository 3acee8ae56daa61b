"""ONNX export: onnxruntime's scores equal PyTorch's (1e-5) for any batch size, with and without
the table preprocessing in the graph; the large detector and top-2 routing export too."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'swifthydra[onnx]')")
pytest.importorskip("onnx", reason="onnx is not installed (pip install 'swifthydra[onnx]')")
pytest.importorskip("onnxscript", reason="onnxscript (PyTorch's ONNX exporter) is not installed")

import onnxruntime as ort  # noqa: E402

from swifthydra import SwiftHydra  # noqa: E402
from swifthydra.datasets import TablePreprocessor  # noqa: E402
from swifthydra.exceptions import InvalidInputError  # noqa: E402
from swifthydra.onnx_export import OUTPUTS, check_export, export_onnx, onnx_inputs, synthetic_frame  # noqa: E402

TINY = dict(
    generator="rl",  # the paper's loop (the default, "none", skips it)
    episodes=1,
    generation_params={"ppo_iterations": 2, "num_envs": 16, "horizon": 3, "latent_dim": 4, "cvae_epochs": 5,
                       "finetune_epochs": 1},
    detector_params={"max_epochs": 10, "d_model": 8, "n_layers": 1, "tokenizer": "feature", "batch_size": 128},
    mome_params={"max_epochs": 10, "d_model": 8},
)
TOL = 1e-5


def _frame(seed=0, n=300):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "amount ($)": rng.lognormal(8, 1, n),  # large raw values: standardisation must be float64
        "velocity": rng.normal(size=n),
        "count": rng.integers(0, 9, n),
        "merchant": pd.array(rng.choice(["fuel", "grocery", "online"], n), dtype="string"),
    })
    df.loc[:14, "velocity"] += 5.0
    df.loc[rng.choice(n, 12), "amount ($)"] = np.nan
    df.loc[rng.choice(n, 10), "merchant"] = pd.NA
    y = np.zeros(n, dtype=np.int64)
    y[:6] = 1
    return df, y


@pytest.fixture(scope="module")
def table_model():
    df, y = _frame()
    pre = TablePreprocessor().fit(df)
    params = {**TINY, "mome_params": {**TINY["mome_params"], "top_k": 2, "n_experts": 3}}
    model = SwiftHydra(random_state=0, **params).fit(pre.transform(df), y)
    return model, pre


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _assert_same(model, X, out):
    score, is_anomaly, probability = out
    ref = model.decision_function(X)
    assert score.shape == ref.shape and score.dtype == np.float64
    np.testing.assert_allclose(score, ref, rtol=0, atol=TOL)
    near = np.abs(ref - model.threshold_) < 1e-4
    np.testing.assert_array_equal(is_anomaly[~near], (ref > model.threshold_)[~near])
    np.testing.assert_allclose(probability, model.predict_proba(X)[:, 1], rtol=0, atol=TOL)


def test_columns_graph_matches_pytorch_on_any_batch(table_model, tmp_path):
    model, pre = table_model
    path = export_onnx(model, tmp_path / "m.onnx", preprocessor=pre)
    session = _session(path)
    assert {i.name for i in session.get_inputs()} == {"amount ($)", "velocity", "count", "merchant"}
    assert [o.name for o in session.get_outputs()] == list(OUTPUTS)
    meta = session.get_modelmeta().custom_metadata_map
    assert float(meta["swifthydra.threshold"]) == model.threshold_
    assert json.loads(meta["swifthydra.inputs"])["categorical"] == {"merchant": pre.categories_["merchant"]}
    # random rows around the training data, with missing values and an unseen category
    df = synthetic_frame(pre, model, 300, seed=5)
    df.loc[3, "merchant"] = "never seen"
    assert df["merchant"].isna().any() and df["amount ($)"].isna().any()
    for n in (1, 7, 300):
        part = df.iloc[:n]
        _assert_same(model, pre.transform(part), session.run(list(OUTPUTS), onnx_inputs(pre, part)))
    # the training rows themselves, and "" as a missing category
    train, _ = _frame()
    feed = onnx_inputs(pre, train)
    feed["merchant"] = np.where(train["merchant"].isna(), "", feed["merchant"]).astype(object)
    _assert_same(model, pre.transform(train), session.run(list(OUTPUTS), feed))


def test_features_graph_matches_pytorch(table_model, tmp_path):
    model, pre = table_model
    assert model.power_transform_.columns.size >= 1  # the skewed amount column: its transform is in the graph
    path = export_onnx(model, tmp_path / "f.onnx", feature_names=pre.feature_names_)
    session = _session(path)
    assert [i.name for i in session.get_inputs()] == ["features"]
    rng = np.random.default_rng(2)
    for n in (1, 5, 257):
        X = model.center_ + model.scale_ * rng.normal(scale=2.0, size=(n, model.n_features_in_))
        _assert_same(model, X, session.run(list(OUTPUTS), {"features": X}))
    X[0, 0] = 1e25 * model.scale_[0]  # far outside the training range: clipped the same way
    X[1, 1] = -1e9 * model.scale_[1]
    _assert_same(model, X, session.run(list(OUTPUTS), {"features": X}))
    assert check_export(path, model, None, n=64) <= TOL


def test_large_detector_exports(tmp_path):
    df, y = _frame(seed=3, n=200)
    pre = TablePreprocessor().fit(df)
    # patches of 4 features: a 2-token sequence, so the unrolled bidirectional scan stays short
    params = {**TINY, "detector_params": {**TINY["detector_params"], "tokenizer": "patch", "max_tokens": 2}}
    model = SwiftHydra(random_state=1, inference="large", **params).fit(pre.transform(df), y)
    path = export_onnx(model, tmp_path / "large.onnx", preprocessor=pre)
    assert check_export(path, model, pre, n=200, seed=1) <= TOL
    part = synthetic_frame(pre, model, 3, seed=2)
    _assert_same(model, pre.transform(part), _session(path).run(list(OUTPUTS), onnx_inputs(pre, part)))


def test_refuses_to_overwrite_and_clashing_names(table_model, tmp_path):
    model, pre = table_model
    target = tmp_path / "m.onnx"
    target.write_text("keep me")
    with pytest.raises(InvalidInputError, match="already exists"):
        export_onnx(model, target, preprocessor=pre)
    assert target.read_text() == "keep me"
    clash = TablePreprocessor.from_dict({**pre.to_dict(), "numeric_columns": ["score", "velocity", "count"],
                                         "medians": {"score": 1.0, "velocity": 0.0, "count": 1.0},
                                         "input_columns": ["score", "velocity", "count", "merchant"],
                                         "kinds": {"score": "numeric", "velocity": "numeric", "count": "numeric",
                                                   "merchant": "categorical"}})
    with pytest.raises(InvalidInputError, match="clash with names of the ONNX graph"):
        export_onnx(model, tmp_path / "c.onnx", preprocessor=clash)
    assert not (tmp_path / "c.onnx").exists()


def _ops(path):
    import onnx

    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize("top_k", [1, 2])
def test_routed_graph_runs_each_expert_on_its_rows_only(top_k, tmp_path):
    """The MoME graph is routed: one NonZero/Gather per expert feeds that expert only the rows whose
    top-k holds it, and one ScatterElements adds the weighted logits back; scores equal PyTorch's
    for batches where most experts get no row (1 row) and where every expert gets rows."""
    df, y = _frame(seed=4, n=240)
    pre = TablePreprocessor().fit(df)
    params = {**TINY, "mome_params": {**TINY["mome_params"], "top_k": top_k, "n_experts": 4}}
    model = SwiftHydra(random_state=2, **params).fit(pre.transform(df), y)
    assert model.mome_.n_experts_ == 4
    path = export_onnx(model, tmp_path / "routed.onnx")
    ops = _ops(path)
    assert ops.count("NonZero") == 4 and ops.count("ScatterElements") == 1
    session = _session(path)
    rng = np.random.default_rng(top_k)
    X = model.center_ + model.scale_ * rng.normal(scale=2.0, size=(600, model.n_features_in_))
    import torch

    from swifthydra.onnx_export import _scorer_module

    with torch.no_grad():  # the batch reaches several experts, so several branches of the graph run
        _, index, _ = _scorer_module(model).front(torch.from_numpy(X))
    assert len(np.unique(index.numpy())) >= 2
    for n in (1, 2, 600):
        _assert_same(model, X[:n], session.run(list(OUTPUTS), {"features": X[:n]}))
    # the graph before routing (every expert on every row) gives the same scores
    dense = export_onnx(model, tmp_path / "dense.onnx", routed=False)
    assert "NonZero" not in _ops(dense)
    a = session.run(["score"], {"features": X})[0]
    b = _session(dense).run(["score"], {"features": X})[0]
    np.testing.assert_allclose(a, b, rtol=0, atol=TOL)
    meta = session.get_modelmeta().custom_metadata_map
    assert "top-k experts only" in meta["swifthydra.scorer"]
