"""The benchmark's model registry and the peers' adapters."""

from __future__ import annotations

import numpy as np
import pytest

from swifthydra.bench import (
    get_model,
    list_models,
    register_model,
    resolve_models,
    unregister_model,
)
from swifthydra.bench.models import ClassifierDetector, DevNetReference
from swifthydra.exceptions import InvalidInputError

PEERS = ["iforest", "ecod", "cblof", "xgbod", "devnet", "catboost", "xgboost"]


def test_peers_are_the_documented_ones():
    assert resolve_models("peers") == PEERS
    assert resolve_models(None) == PEERS
    names = [s.name for s in list_models()]
    assert set(PEERS) < set(names)
    assert "swifthydra" in names and "swifthydra" not in resolve_models("peers")


def test_resolve_models_keeps_order_and_drops_duplicates():
    assert resolve_models("ecod,iforest,ECOD") == ["ecod", "iforest"]
    assert resolve_models(["xgboost", "peers"])[0] == "xgboost"
    assert len(resolve_models("all")) == len(list_models())


def test_unknown_model_lists_choices():
    with pytest.raises(InvalidInputError, match="unknown model 'nope': choose from .*iforest"):
        resolve_models("iforest,nope")


def test_supervision_and_min_labels():
    assert get_model("iforest").min_labeled == 0 and not get_model("iforest").uses_labels
    for name in ("xgbod", "devnet", "catboost", "xgboost"):
        assert get_model(name).min_labeled == 1 and get_model(name).uses_labels
    assert get_model("swifthydra").min_labeled == 0


def test_register_model_is_one_function():
    @register_model("t-const", supervision="semi-supervised", min_labeled=0, peer=False,
                    defaults={"offset": 1.0})
    def _factory(seed, n_jobs, offset):
        class Const:
            def fit(self, X, y=None):
                return self

            def decision_function(self, X):
                return np.asarray(X).sum(axis=1) + offset

        return Const()

    try:
        spec = get_model("T-CONST")
        assert spec.defaults == {"offset": 1.0}
        est = spec.build(seed=1, params={"offset": 2.0})
        assert est.fit(np.ones((3, 2))).decision_function(np.ones((1, 2)))[0] == 4.0
        with pytest.raises(InvalidInputError, match="already registered"):
            register_model("t-const")(_factory)
    finally:
        unregister_model("t-const")
    with pytest.raises(InvalidInputError):
        register_model("a,b")
    with pytest.raises(InvalidInputError, match="supervision"):
        register_model("x", supervision="weird")


@pytest.mark.parametrize("name", ["iforest", "ecod", "xgboost"])
def test_peer_builds_and_scores(name):
    pytest.importorskip("pyod")
    rng = np.random.RandomState(0)
    X = rng.rand(200, 4)
    X[:10] += 2
    y = np.zeros(200, int)
    y[:5] = 1
    spec = get_model(name)
    if name == "xgboost":
        pytest.importorskip("xgboost")
    est = spec.build(seed=3, n_jobs=1, params={"n_estimators": 10} if name != "ecod" else {})
    est.fit(X, y) if spec.uses_labels else est.fit(X)
    scores = est.decision_function(X)
    assert scores.shape == (200,)
    assert scores[:10].mean() > scores[10:].mean()


def test_classifier_detector_uses_probability_of_class_one():
    from sklearn.linear_model import LogisticRegression

    X = np.r_[np.zeros((20, 1)), np.ones((5, 1))]
    y = np.r_[np.zeros(20), np.ones(5)]
    det = ClassifierDetector(LogisticRegression()).fit(X, y)
    s = det.decision_function(X)
    assert np.all((0 <= s) & (s <= 1)) and s[-1] > s[0]


def test_devnet_reference_learns_from_few_labels():
    pytest.importorskip("torch")
    rng = np.random.RandomState(0)
    X = rng.rand(400, 5)
    X[:20, 0] += 1.5
    y = np.zeros(400, int)
    y[:3] = 1
    det = DevNetReference(epochs=5, nb_batch=5, batch_size=64, random_state=0).fit(X, y)
    s = det.decision_function(X)
    assert s[:20].mean() > s[20:].mean()
    with pytest.raises(InvalidInputError):
        DevNetReference().fit(X, np.zeros(400))


def test_pyod_devnet_loss_patch_is_reversible():
    mod = pytest.importorskip("pyod.models.devnet")
    from swifthydra.bench.models import _patch_pyod_devnet_loss, _unpatch_pyod_devnet_loss

    original = mod.deviation_loss
    try:
        _patch_pyod_devnet_loss(mod)
        _patch_pyod_devnet_loss(mod)  # idempotent
        assert mod.deviation_loss._original is original
        import torch

        out = torch.full((4, 1), 6.0)  # network outputs far above the margin
        labels = torch.tensor([1.0, 1.0, 1.0, 1.0])
        torch.manual_seed(0)
        # the fixed loss: anomalies scored above the margin cost nothing
        assert float(mod.deviation_loss(out, labels)) < 0.2
    finally:
        _unpatch_pyod_devnet_loss(mod)
    assert mod.deviation_loss is original
