"""MambaDetector and MoME: learning, determinism, input checks, fine-tuning, persistence hooks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from swifthydra._torch import resolve_device
from swifthydra.detectors import MambaDetector, MoME
from swifthydra.exceptions import InvalidInputError, NotFittedError

FAST = dict(max_epochs=4, min_epochs=1, batch_size=64, lr=1e-2, score_batch_size=256)
SMALL_MAMBA = dict(d_model=8, n_layers=1, d_state=4, **FAST)
SMALL_MOME = dict(n_experts=3, d_model=8, d_state=4, **FAST)


def _data(n=500, d=6, seed=0, frac=0.1):
    """Normal rows N(0, 1); anomalies shifted along the first two features; weak labels."""
    rng = np.random.RandomState(seed)
    y = (rng.rand(n) < frac).astype(int)
    X = rng.randn(n, d)
    X[y == 1, :2] += 3.0
    weak = y.copy()
    weak[np.flatnonzero(y == 1)[::2]] = 0  # half of the anomalies unlabeled
    return X, y, weak


@pytest.fixture(scope="module")
def data():
    X, y, weak = _data(600, seed=0)
    Xt, yt, _ = _data(400, seed=1)
    return X, weak, Xt, yt


@pytest.fixture(scope="module")
def fitted_mamba(data):
    X, weak, _, _ = data
    return MambaDetector(random_state=0, **SMALL_MAMBA).fit(X, weak)


@pytest.fixture(scope="module")
def fitted_mome(data):
    X, weak, _, _ = data
    return MoME(random_state=0, **SMALL_MOME).fit(X, weak)


@pytest.mark.parametrize("which", ["mamba", "mome"])
def test_learns_to_rank_anomalies(which, data, fitted_mamba, fitted_mome):
    est = fitted_mamba if which == "mamba" else fitted_mome
    _, _, Xt, yt = data
    scores = est.decision_function(Xt)
    assert scores.shape == (400,) and scores.dtype == np.float64
    assert roc_auc_score(yt, scores) > 0.9
    proba = est.predict_proba(Xt)
    assert proba.shape == (400, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-scores)))
    assert set(np.unique(est.predict(Xt))) <= {0, 1}
    assert est.labels_.mean() == pytest.approx(est.contamination, abs=0.02)
    assert est.history_ and {"val_loss", "val_auc"} <= set(est.history_[0])


def test_same_seed_same_scores_other_seed_other_scores(data, fitted_mamba, fitted_mome):
    X, weak, Xt, _ = data
    again = MambaDetector(random_state=0, **SMALL_MAMBA).fit(X, weak)
    np.testing.assert_array_equal(again.decision_function(Xt), fitted_mamba.decision_function(Xt))
    mome_again = MoME(random_state=0, **SMALL_MOME).fit(X, weak)
    np.testing.assert_array_equal(
        mome_again.decision_function(Xt), fitted_mome.decision_function(Xt)
    )
    other = MoME(random_state=1, **SMALL_MOME).fit(X, weak)
    assert not np.array_equal(other.decision_function(Xt), fitted_mome.decision_function(Xt))


@pytest.mark.parametrize("which", ["mamba", "mome"])
def test_numpy_torch_and_batch_size_give_the_same_scores(which, data, fitted_mamba, fitted_mome):
    est = fitted_mamba if which == "mamba" else fitted_mome
    Xt = data[2]
    ref = est.decision_function(Xt)
    np.testing.assert_array_equal(est.decision_function(torch.from_numpy(Xt)), ref)
    np.testing.assert_allclose(est.decision_function(Xt, batch_size=7), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [MambaDetector, MoME])
def test_bad_input_is_rejected(cls, data, fitted_mamba, fitted_mome):
    X, weak, Xt, _ = data
    est = fitted_mamba if cls is MambaDetector else fitted_mome
    bad = Xt.copy()
    bad[3, 2] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        est.decision_function(bad)
    with pytest.raises(InvalidInputError, match="features"):
        est.decision_function(Xt[:, :4])
    with pytest.raises(InvalidInputError, match="2-D"):
        est.decision_function(Xt[0])
    fresh = cls(**(SMALL_MAMBA if cls is MambaDetector else SMALL_MOME))
    with pytest.raises(InvalidInputError, match="NaN"):
        fresh.fit(bad, np.zeros(len(bad)))
    with pytest.raises(InvalidInputError, match="known anomaly"):
        fresh.fit(X, np.zeros(len(X)))
    with pytest.raises(InvalidInputError, match="labels"):
        fresh.fit(X, weak[:-1])
    with pytest.raises(InvalidInputError, match="0 \\(unlabeled\\)"):
        fresh.fit(X, weak * 2)
    with pytest.raises(InvalidInputError, match="sample_weight"):
        fresh.fit(X, weak, sample_weight=-np.ones(len(X)))


@pytest.mark.parametrize(
    ("cls", "param", "value"),
    [
        (MambaDetector, "tokenizer", "pixels"),
        (MambaDetector, "d_model", 0),
        (MambaDetector, "lr", -1.0),
        (MambaDetector, "validation_fraction", 0.9),
        (MambaDetector, "scan_mode", "fast"),
        (MoME, "n_experts", 0),
        (MoME, "top_k", 5),
        (MoME, "contamination", 0.0),
        (MambaDetector, "max_steps_per_epoch", 0),
        (MoME, "max_steps_per_epoch", 1.5),
    ],
)
def test_bad_parameters_fail_in_fit_not_init(cls, param, value, data):
    X, weak, _, _ = data
    est = cls(**{param: value})  # stored untouched
    assert est.get_params()[param] == value
    with pytest.raises(InvalidInputError, match=param):
        est.fit(X[:50], weak[:50])


@pytest.mark.parametrize("cls", [MambaDetector, MoME])
def test_use_before_fit(cls):
    est = cls()
    for method in ("decision_function", "predict", "predict_proba"):
        with pytest.raises(NotFittedError):
            getattr(est, method)(np.zeros((2, 3)))
    with pytest.raises(NotFittedError):
        est.get_config()


def test_device_resolution():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InvalidInputError):
        resolve_device("tpu-ish")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="CUDA"):
            resolve_device("cuda")


@pytest.mark.parametrize("cls", [MambaDetector, MoME])
def test_partial_fit_continues_training(cls, data):
    X, weak, Xt, _ = data
    small = SMALL_MAMBA if cls is MambaDetector else SMALL_MOME
    est = cls(random_state=0, **small).fit(X, weak)
    before, epochs = est.decision_function(Xt), est.n_epochs_
    est.partial_fit(X[:300], weak[:300], epochs=2)
    assert est.n_epochs_ == epochs + 2
    assert not np.allclose(est.decision_function(Xt), before)
    assert est.decision_scores_.shape == (300,)
    with pytest.raises(InvalidInputError, match="features"):
        est.partial_fit(X[:, :3], weak, epochs=1)
    cold = cls(random_state=0, **small).partial_fit(X, weak, epochs=1)  # also works unfitted
    assert cold.n_epochs_ == 1 and cold.decision_function(Xt).shape == (400,)


@pytest.mark.parametrize("which", ["mamba", "mome"])
def test_config_and_state_dict_rebuild_the_same_detector(which, data, fitted_mamba, fitted_mome):
    est = fitted_mamba if which == "mamba" else fitted_mome
    Xt = data[2]
    config = json.loads(json.dumps(est.get_config()))  # survives JSON
    state = est.state_dict()
    assert all(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in state.values())
    rebuilt = type(est).from_config(config, state)
    np.testing.assert_array_equal(rebuilt.decision_function(Xt), est.decision_function(Xt))
    np.testing.assert_array_equal(rebuilt.predict(Xt), est.predict(Xt))
    with pytest.raises(InvalidInputError):
        (MoME if which == "mamba" else MambaDetector).from_config(config, state)
    wrong = {**config, "params": {**config["params"], "d_model": 4}}
    with pytest.raises(InvalidInputError, match="state_dict"):
        type(est).from_config(wrong, state)


def test_sklearn_clone_keeps_parameters():
    est = MoME(n_experts=5, top_k=2, random_state=3)
    twin = clone(est)
    assert twin.get_params() == est.get_params()


def test_mome_chooses_k_from_data_or_takes_it(data, fitted_mome):
    X, weak, _, _ = data
    assert fitted_mome.n_experts_ == 3
    auto = MoME(random_state=0, **{**SMALL_MOME, "n_experts": "auto", "max_epochs": 1}).fit(X, weak)
    assert 2 <= auto.n_experts_ <= 16
    assert auto.expert_usage_.shape == (auto.n_experts_,)
    assert auto.expert_usage_.sum() == pytest.approx(1.0)


def test_mome_experts_do_not_collapse(fitted_mome):
    assert (fitted_mome.expert_usage_ > 0).sum() >= 2
    assert fitted_mome.expert_usage_.max() < 0.95


def test_mome_scoring_dispatches_each_row_to_one_expert(data):
    X, weak, Xt, _ = data
    processed = {}
    for K in (4, 16):
        est = MoME(random_state=0, **{**SMALL_MOME, "n_experts": K, "max_epochs": 1}).fit(X, weak)
        rows = [0] * K
        experts = est.model_.experts
        real_call = experts.call

        def count(e, x, rows=rows, real_call=real_call):
            rows[e] += x.shape[0]
            return real_call(e, x)

        experts.call = count
        est.decision_function(Xt)
        del experts.call
        processed[K] = sum(rows)
        np.testing.assert_array_equal(
            np.bincount(est.expert_assignment(Xt).ravel(), minlength=K), rows
        )
    assert processed[4] == processed[16] == len(Xt)


def test_mome_distils_the_teacher(data):
    X, weak, _, _ = data
    teacher = 3.0 * X[:, 5] - 1.0  # a teacher that ranks by a feature the labels ignore
    est = MoME(random_state=0, distill_alpha=10.0, **{**SMALL_MOME, "max_epochs": 6})
    est.fit(X, weak, teacher_scores=teacher)
    assert "train_distill" in est.history_[0]
    corr = np.corrcoef(
        np.argsort(np.argsort(est.decision_scores_)), np.argsort(np.argsort(X[:, 5]))
    )[0, 1]
    assert corr > 0.7
    with pytest.raises(InvalidInputError, match="teacher_scores"):
        est.fit(X, weak, teacher_scores=teacher[:-1])


def test_sample_weight_changes_the_fit(data):
    X, weak, Xt, _ = data
    w = np.where(X[:, 0] > 0, 5.0, 0.2)
    a = MambaDetector(random_state=0, **SMALL_MAMBA).fit(X, weak)
    b = MambaDetector(random_state=0, **SMALL_MAMBA).fit(X, weak, sample_weight=w)
    assert not np.allclose(a.decision_function(Xt), b.decision_function(Xt))


def test_feature_tokenizer_and_bidirectional_detector(data):
    X, weak, Xt, yt = data
    est = MambaDetector(
        tokenizer="feature", bidirectional=True, random_state=0, **{**SMALL_MAMBA, "max_epochs": 3}
    ).fit(X, weak)
    assert roc_auc_score(yt, est.decision_function(Xt)) > 0.8


def test_denormal_flushing_is_scoped_to_fit_and_scoring(data):
    from swifthydra.detectors._training import denormals_flushed as _denormals_flushed

    X, weak, Xt, _ = data
    assert not _denormals_flushed()
    est = MoME(random_state=0, **{**SMALL_MOME, "max_epochs": 1}).fit(X, weak)
    est.decision_function(Xt)
    assert not _denormals_flushed()  # the caller's floating-point mode is left as it was


def test_mome_upcycles_a_dense_expert_first(data):
    X, weak, _, _ = data
    est = MoME(random_state=0, **{**SMALL_MOME, "max_epochs": 3, "validation_fraction": 0.0}).fit(
        X, weak
    )
    assert (
        est.dense_epochs_ == 2 and est.n_epochs_ == 3
    )  # no validation: epochs split in two phases
    plain = MoME(random_state=0, upcycle=False, **{**SMALL_MOME, "max_epochs": 2}).fit(X, weak)
    assert not hasattr(plain, "dense_epochs_")


def test_early_stopping_keeps_weights_that_nothing_beats(data, fitted_mamba):
    import copy

    X, weak, _, _ = data
    est = copy.deepcopy(fitted_mamba)
    before = {k: v.clone() for k, v in est.model_.state_dict().items()}
    train = est._tensors(X.astype(np.float32), weak, np.ones(len(X)), None)
    unbeatable = (2.0, -np.inf)  # (validation AUC, validation loss)
    best = est._run_epochs(train, train, 2, seed=0, early_stopping=True, best=unbeatable)
    assert best == unbeatable
    for k, v in est.model_.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_early_stopping_picks_no_checkpoint_before_min_epochs(data):
    X, weak, _, _ = data
    est = MambaDetector(random_state=0, **{**SMALL_MAMBA, "min_epochs": 3, "patience": 50}).fit(
        X, weak
    )
    assert est.n_epochs_ == 4 and est.best_epoch_ >= 3


def test_eval_set_replaces_the_internal_split(data):
    X, weak, Xt, yt = data
    params = {**SMALL_MAMBA, "max_epochs": 6, "patience": 2}
    internal = MambaDetector(random_state=0, **params).fit(X, weak)
    assert internal.n_train_rows_ < len(X)
    est = MambaDetector(random_state=0, **params).fit(X, weak, eval_set=(Xt, yt))
    # every row of X trains; early stopping watched the given rows
    assert est.n_train_rows_ == len(X) and est.n_val_rows_ == len(Xt)
    assert all(0.0 <= row["val_auc"] <= 1.0 for row in est.history_)
    assert roc_auc_score(yt, est.decision_function(Xt)) > 0.9
    again = MambaDetector(random_state=0, **params).fit(X, weak, eval_set=(Xt, yt))
    np.testing.assert_array_equal(est.decision_function(Xt), again.decision_function(Xt))


@pytest.mark.parametrize(
    "eval_set, message",
    [
        ("rows", "pair"),
        ((np.zeros((5, 6)),), "pair"),
        ((np.zeros((5, 4)), np.array([0, 1, 0, 1, 0])), "features"),
        ((np.ones((5, 6)), np.zeros(5)), "both labels"),
        ((np.full((5, 6), np.nan), np.array([0, 1, 0, 1, 0])), "NaN"),
    ],
)
def test_bad_eval_set_gets_one_clear_error(data, eval_set, message):
    X, weak, _, _ = data
    with pytest.raises(InvalidInputError, match=message):
        MambaDetector(random_state=0, **SMALL_MAMBA).fit(X, weak, eval_set=eval_set)


def test_balanced_batches_are_half_anomalies_and_cover_every_row():
    from swifthydra.detectors._training import balanced_batches as _balanced_batches

    y = np.zeros(100, dtype=int)
    y[[3, 50, 77]] = 1
    batches = _balanced_batches(y, 20, np.random.RandomState(0))
    assert len(batches) == 10  # 97 unlabeled rows, 10 per batch
    for b in batches:
        assert len(b) == 20 and y[b].sum() == 10
    seen = np.concatenate(batches)
    assert set(seen) == set(range(100))  # every row appears at least once per epoch
    counts = np.bincount(seen[y[seen] == 1])
    assert counts[[3, 50, 77]].max() - counts[[3, 50, 77]].min() <= 1  # anomalies cycled evenly


def test_merged_repeats_give_the_batch_loss_and_gradient():
    """A balanced batch holds a few known anomalies many times: run once each, weighted by their
    repeats (merge_repeats), the loss and the gradient are those of the whole batch (no dropout)."""
    from swifthydra.detectors._training import balanced_batches, merge_repeats

    rng = np.random.default_rng(0)
    X = torch.from_numpy(rng.normal(size=(300, 7)).astype(np.float32))
    y = np.zeros(300, dtype=int)
    y[[5, 123, 250]] = 1
    w = torch.from_numpy(rng.uniform(0.5, 2.0, 300).astype(np.float32))
    det = MambaDetector(random_state=0, dropout=0.0, **SMALL_MAMBA).fit(X.numpy(), y)
    net, target = det.model_, torch.from_numpy(y.astype(np.float32))
    net.train()
    batch = balanced_batches(y, 64, np.random.RandomState(1))[0]
    rows, repeats = merge_repeats(batch)
    assert len(rows) < len(batch) and repeats.sum() * len(batch) / len(rows) == pytest.approx(len(batch))
    results = []
    for idx, scale in ((batch, None), (rows, repeats)):
        idx = torch.from_numpy(idx)
        wb = w[idx] if scale is None else w[idx] * torch.from_numpy(scale).float()
        net.zero_grad()
        loss, _ = det._loss(net, X[idx], target[idx], wb, None, train=True)
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in net.parameters()]))
    (full, g_full), (merged, g_merged) = results
    assert merged == pytest.approx(full, rel=1e-6)
    for a, b in zip(g_full, g_merged, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-7)
    # distinct rows: the batch as it was, in its order
    distinct = np.arange(10)[::-1].copy()
    kept, none = merge_repeats(distinct)
    assert none is None and np.array_equal(kept, distinct)


@pytest.mark.parametrize("cls", [MambaDetector, MoME])
def test_training_runs_a_repeated_row_once_but_the_mome_every_row(cls):
    """MambaDetector forwards each distinct row of a batch once; the MoME, whose load-balancing
    loss counts a batch's rows, forwards the batch as it is."""
    X, _, y = _data(n=200, frac=0.0)
    y[:3] = 1
    params = SMALL_MAMBA if cls is MambaDetector else SMALL_MOME
    det = cls(random_state=0, **{**params, "max_epochs": 1, "validation_fraction": 0.0})
    sizes = []
    original = det._loss

    def spy(net, xb, *args, **kwargs):
        sizes.append(xb.shape[0])
        return original(net, xb, *args, **kwargs)

    det._loss = spy
    det.fit(X, y)
    assert sizes
    if cls is MambaDetector:
        assert max(sizes) <= 32 + 3  # 32 unlabeled rows and the 3 anomalies once each
        sizes.clear()
        det.set_params(merge_repeats=False).fit(X, y)  # every repeat, as before
        assert set(sizes) == {64}
        with pytest.raises(InvalidInputError, match="merge_repeats must be True or False"):
            det.set_params(merge_repeats="yes").fit(X, y)
    else:
        assert set(sizes) == {64}


def test_threaded_scoring_matches_one_thread_and_restores_settings(data, fitted_mome):
    Xt = data[2]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fitted_mome.decision_function(Xt, batch_size=50)
        torch.set_num_threads(3)
        three = fitted_mome.decision_function(Xt, batch_size=50)  # 8 batches over 3 threads
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(one, three)


@pytest.mark.parametrize("cls", [MambaDetector, MoME])
def test_max_steps_per_epoch_caps_the_gradient_steps_of_an_epoch(cls):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 4)).astype(np.float32)
    y = (np.arange(3000) < 60).astype(np.int64)
    tiny = {"d_model": 4, "n_layers": 1, "batch_size": 64, "max_epochs": 2, "min_epochs": 1,
            "validation_fraction": 0.0, "random_state": 0}
    if cls is MoME:
        tiny.update(n_experts=1)
    capped = cls(**tiny, max_steps_per_epoch=3).fit(X, y)
    full = cls(**tiny, max_steps_per_epoch=None).fit(X, y)

    def steps(est):
        return {int(s["step"]) for s in est.optimizer_.state.values()}

    assert steps(capped) == {2 * 3}
    assert steps(full) == {2 * int(np.ceil((y == 0).sum() / 32))}  # every unlabeled row once


def test_loss_tol_stops_a_fit_with_one_known_anomaly_once_the_loss_levels_off(data):
    """Without a validation set (one known anomaly), ``loss_tol`` ends training once the training
    loss stops falling by more than it for ``patience`` epochs; ``None`` (the default) runs every
    epoch."""
    X, _, Xt, yt = data
    one = np.zeros(len(X), dtype=int)
    one[np.argmax(X[:, 0] + X[:, 1])] = 1  # the most shifted row: the only known anomaly
    params = {**SMALL_MAMBA, "max_epochs": 40, "patience": 3, "lr": 3e-3}
    full = MambaDetector(random_state=0, **params).fit(X, one)
    assert full.n_epochs_ == 40 and full.n_val_rows_ == 0
    early = MambaDetector(random_state=0, loss_tol=0.01, **params).fit(X, one)
    assert early.n_epochs_ < 40
    losses = [r["train_loss"] for r in early.history_]
    best = min(losses[:-3])
    assert all(v > best - 0.01 for v in losses[-3:])  # the last `patience` epochs gained < loss_tol
    np.testing.assert_array_equal([r["train_loss"] for r in full.history_[: early.n_epochs_]], losses)
    assert roc_auc_score(yt, early.decision_function(Xt)) > 0.8
    with pytest.raises(InvalidInputError, match="loss_tol"):
        MambaDetector(loss_tol=-1.0, **SMALL_MAMBA).fit(X, one)


def test_better_needs_a_loss_gain_over_loss_tol_to_break_an_auc_tie():
    from swifthydra.detectors._training import better

    assert better((1.0, 0.50), None, 0.01)
    assert better((1.0, 0.48), (1.0, 0.50), 0.01)
    assert not better((1.0, 0.495), (1.0, 0.50), 0.01)  # a tie, and a gain below loss_tol
    assert better((1.0, 0.495), (1.0, 0.50))  # without loss_tol any lower loss breaks the tie
    assert better((0.99, 0.9), (0.98, 0.1), 0.01)  # a higher AUC always wins
    assert not better((0.98, 0.1), (0.99, 0.9), 0.01)


def test_loss_tol_with_a_validation_set_stops_once_ties_at_auc_1_gain_too_little():
    """Easy data: the validation AUC reaches 1 within an epoch or two and the validation loss then
    keeps falling by ever smaller amounts. Without ``loss_tol`` each of those small gains is a
    better epoch and training runs on; with it, training stops ``patience`` epochs after the last
    gain of more than ``loss_tol``, on the same path until then, and keeps that epoch's weights."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(1500, 6)).astype(np.float32)
    y = (np.arange(1500) < 60).astype(np.int64)
    X[y == 1] += 6.0
    params = {**SMALL_MAMBA, "max_epochs": 30, "patience": 3, "lr": 3e-3}
    full = MambaDetector(random_state=0, **params).fit(X, y)
    tol = MambaDetector(random_state=0, loss_tol=0.01, **params).fit(X, y)
    assert tol.n_val_rows_ > 0 and tol.n_epochs_ < full.n_epochs_
    assert [r["val_loss"] for r in tol.history_] == [r["val_loss"] for r in full.history_[: tol.n_epochs_]]
    best = tol.history_[tol.best_epoch_ - 1]
    for r in tol.history_[tol.best_epoch_:]:  # the epochs after the kept one were no progress
        assert r["val_auc"] < best["val_auc"] + 1e-9 and r["val_loss"] > best["val_loss"] - 0.01
    assert tol.n_epochs_ - tol.best_epoch_ == params["patience"]
