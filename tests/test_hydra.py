"""SwiftHydra: the PyOD/scikit-learn contract, the loop's bookkeeping, ablations, save/load."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from _presets import merged
from swifthydra import SwiftHydra
from swifthydra.exceptions import InvalidInputError, ModelFileError, NotFittedError

TINY = dict(
    generator="rl",  # the paper's loop (the default, "none", skips it)
    episodes=2,
    generation_params={"ppo_iterations": 2, "num_envs": 16, "horizon": 3, "latent_dim": 4, "cvae_epochs": 5,
                       "finetune_epochs": 1},
    detector_params={"max_epochs": 15, "d_model": 8, "n_layers": 1, "tokenizer": "feature", "batch_size": 128},
    mome_params={"max_epochs": 15, "d_model": 8, "n_experts": 2},
)


def _data(seed=0, n=300, d=5, n_anom=20, n_labeled=8):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:n_anom] += 4.0
    y_true = np.zeros(n, dtype=np.int64)
    y_true[:n_anom] = 1
    y = np.zeros(n, dtype=np.int64)
    y[:n_labeled] = 1
    return X, y, y_true


@pytest.fixture(scope="module")
def fitted():
    X, y, y_true = _data()
    return SwiftHydra(random_state=0, **TINY).fit(X, y), X, y, y_true


def test_pyod_contract(fitted):
    model, X, y, y_true = fitted
    s = model.decision_function(X)
    assert s.shape == (len(X),) and np.isfinite(s).all()
    np.testing.assert_allclose(model.decision_scores_, s, rtol=1e-5, atol=1e-5)
    assert model.n_features_in_ == X.shape[1]
    assert set(np.unique(model.labels_)) <= {0, 1}
    assert abs(model.labels_.mean() - model.contamination) < 0.05
    np.testing.assert_array_equal(model.predict(X), (s > model.threshold_).astype(int))
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(1), 1) and (proba >= 0).all()
    lin = model.predict_proba(X, method="linear")
    assert lin[:, 1].min() == 0 and lin[:, 1].max() == 1
    assert roc_auc_score(y_true, s) > 0.9, "planted anomalies are easy"
    np.testing.assert_allclose(model.score_samples(X), -s)


def test_history_and_generated(fitted):
    model, X, *_ = fitted
    h = model.history_
    assert h[0]["episode"] == 0 and h[0]["pseudo_labels"] is False
    assert 1 <= len(h) - 1 <= TINY["episodes"]
    for row in h[1:]:
        for key in ("candidates", "kept", "reward_mean_kept", "entropy_gain_mean_kept", "w_mean_kept",
                    "anomaly_set_entropy", "detector_loss", "val_auc", "seconds", "ppo_policy_loss"):
            assert key in row, key
        assert 0 < row["kept"] <= row["candidates"]
    assert h[1]["weights_deception"] < h[-1]["weights_deception"] or len(h) == 2
    assert model.generated_.shape[1] == X.shape[1]
    assert len(model.generated_) == h[model.best_episode_]["generated_total"]
    new = model.sample_anomalies(37, random_state=1)
    assert new.shape == (37, X.shape[1]) and np.isfinite(new).all()


def test_same_seed_same_scores():
    X, y, _ = _data(1)
    a = SwiftHydra(random_state=3, **TINY).fit(X, y).decision_function(X)
    b = SwiftHydra(random_state=3, **TINY).fit(X, y).decision_function(X)
    np.testing.assert_array_equal(a, b)


def test_the_default_generates_nothing_and_rl_runs_the_papers_loop():
    """``generator="none"`` is the default (docs/benchmarks.md §12): no C-VAE, no episode; the
    paper's loop is ``generator="rl"``."""
    assert SwiftHydra().generator == "none"
    X, y, _ = _data(3)
    tiny = {k: v for k, v in TINY.items() if k != "generator"}
    default = SwiftHydra(random_state=0, **tiny).fit(X, y)
    assert default.cvae_ is None and default.policy_ is None and len(default.history_) == 1
    assert len(default.generated_) == 0 and default.best_episode_ == 0
    paper = SwiftHydra(random_state=0, **{**tiny, "generator": "rl"}).fit(X, y)
    assert paper.policy_ is not None and len(paper.history_) > 1 and len(paper.generated_) > 0


@pytest.mark.parametrize("generator", ["cvae", "none"])
def test_ablations(generator):
    X, y, y_true = _data(2)
    model = SwiftHydra(random_state=0, inference="large", **{**TINY, "generator": generator}).fit(X, y)
    assert model.mome_ is None
    assert roc_auc_score(y_true, model.decision_function(X)) > 0.85
    if generator == "none":
        assert len(model.history_) == 1 and len(model.generated_) == 0 and model.cvae_ is None
        with pytest.raises(InvalidInputError, match="no generator"):
            model.sample_anomalies(5)
    else:
        assert model.policy_ is None and model.history_[1]["kept"] > 0
        assert len(model.generated_) == model.history_[model.best_episode_]["generated_total"]
        assert model.sample_anomalies(5).shape == (5, X.shape[1])


def test_unsupervised_uses_pseudo_labels():
    X, _, y_true = _data(3)
    model = SwiftHydra(random_state=0, contamination=0.07, **{**TINY, "episodes": 1}).fit(X)
    assert model.used_pseudo_labels_ and model.history_[0]["pseudo_labels"] is True
    assert model.history_[0]["known_anomalies"] >= 2
    assert roc_auc_score(y_true, model.decision_function(X)) > 0.85


def test_clone_and_params():
    model = SwiftHydra(episodes=3, random_state=5)
    c = clone(model)
    assert c.get_params() == model.get_params()
    assert not hasattr(c, "detector_")


def test_save_load_round_trip(fitted, tmp_path):
    model, X, *_ = fitted
    path = model.save(tmp_path / "model")
    loaded = SwiftHydra.load(path)
    np.testing.assert_allclose(loaded.decision_function(X), model.decision_function(X), rtol=1e-6, atol=1e-6)
    assert loaded.threshold_ == model.threshold_ and loaded.history_[0]["episode"] == 0
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.sample_anomalies(4, random_state=2).shape == (4, X.shape[1])
    with pytest.raises(ModelFileError, match="already exists"):
        model.save(path)
    (path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelFileError):
        SwiftHydra.load(path)


@pytest.mark.parametrize(
    "X, y, match",
    [
        (np.full((50, 3), np.nan), None, "NaN"),
        (np.ones(50), None, "2-D"),
        (np.ones((3, 2)), None, "at least 8"),
        (np.random.default_rng(0).normal(size=(50, 3)), np.ones(50), "every row is labelled"),
        (np.random.default_rng(0).normal(size=(50, 3)), np.full(50, 2), "only 0"),
        (np.random.default_rng(0).normal(size=(50, 3)), np.zeros(49), "49 labels"),
    ],
)
def test_bad_fit_input(X, y, match):
    with pytest.raises(InvalidInputError, match=match):
        SwiftHydra(**TINY).fit(X, y)


def test_bad_params_and_scoring_input(fitted):
    X, y, _ = _data()
    with pytest.raises(InvalidInputError, match="generator"):
        SwiftHydra(generator="gan").fit(X, y)
    with pytest.raises(InvalidInputError, match="'episodes' parameter of SwiftHydra must be an int in the range \\[0, inf\\). Got -1"):
        SwiftHydra(episodes=-1).fit(X, y)
    with pytest.raises(NotFittedError):
        SwiftHydra().decision_function(X)
    model = fitted[0]
    with pytest.raises(InvalidInputError, match="fitted with 5"):
        model.decision_function(X[:, :3])
    with pytest.raises(InvalidInputError, match="magnitude"):
        model.decision_function(np.full((2, 5), 1e35))


def test_the_best_episode_is_the_detector_that_is_kept(monkeypatch):
    """The loop keeps the weights of the episode with the best validation AUC, not the last ones,
    and the mixture of experts learns from that detector and that episode's generated rows."""
    import torch

    from swifthydra.detectors import MambaDetector, MoME

    scripted = iter([0.5, 0.9, 0.6, 0.55])  # episode 0, 1, 2, 3: the first episode is the best
    monkeypatch.setattr(SwiftHydra, "_auc", staticmethod(lambda y, s: next(scripted)))
    snapshots = []
    partial_fit = MambaDetector.partial_fit

    def recording(self, *args, **kwargs):
        out = partial_fit(self, *args, **kwargs)
        snapshots.append({k: v.clone() for k, v in self.model_.state_dict().items()})
        return out

    monkeypatch.setattr(MambaDetector, "partial_fit", recording)
    teachers = []
    mome_fit = MoME.fit
    monkeypatch.setattr(
        MoME, "fit", lambda self, X, y, **kw: teachers.append((X, kw["teacher_scores"])) or mome_fit(self, X, y, **kw)
    )
    X, y, _ = _data()
    params = merged(TINY, {"episodes": 3, "generation_params": {"patience": 2, "min_validation_anomalies": 4}})
    model = SwiftHydra(random_state=0, **params).fit(X, y)
    assert model.best_episode_ == 1 and len(snapshots) == 3  # episode 3 ran, patience ran out
    kept = model.detector_.model_.state_dict()
    for k, v in snapshots[0].items():
        torch.testing.assert_close(kept[k], v, rtol=0, atol=0)
    assert any(not torch.equal(kept[k], snapshots[-1][k]) for k in kept)
    per_episode = [h["kept"] for h in model.history_]
    assert len(model.generated_) == per_episode[1]  # the generated rows of episode 1 only
    X_comb, teacher = teachers[0]
    np.testing.assert_allclose(teacher, model.detector_.decision_function(X_comb), rtol=1e-6, atol=1e-6)


def test_few_known_anomalies_run_every_episode_on_all_rows(monkeypatch):
    """Below ``min_validation_anomalies`` nothing is held out: no validation AUC, every episode
    runs, the last one is kept, and the detector sees every labelled anomaly."""
    from swifthydra.detectors import MambaDetector

    seen = []
    fit = MambaDetector.fit
    monkeypatch.setattr(MambaDetector, "fit", lambda self, X, y, **kw: seen.append((len(X), int(y.sum()), kw)) or fit(self, X, y, **kw))
    X, y, _ = _data()  # 8 known anomalies
    model = SwiftHydra(random_state=0, **merged(TINY, {"episodes": 3, "generation_params": {"min_validation_anomalies": 9}})).fit(X, y)
    assert seen[0][:2] == (len(X), 8) and seen[0][2].get("eval_set") is None
    assert [h["episode"] for h in model.history_] == [0, 1, 2, 3] and model.best_episode_ == 3
    assert all(np.isnan(h["val_auc"]) for h in model.history_)
    held = SwiftHydra(random_state=0, **merged(TINY, {"episodes": 1, "generation_params": {"min_validation_anomalies": 8}})).fit(X, y)
    assert not np.isnan(held.history_[0]["val_auc"])
    assert seen[-1][2]["eval_set"] is not None and seen[-1][1] < 8


def test_boundary_deception_centres_the_reward_on_the_detectors_threshold(monkeypatch):
    from _presets import MICRO, merged
    from swifthydra.rl import HydraReward

    seen = []
    update = HydraReward.update

    def spy(self, *args, **kwargs):
        seen.append((self.deception_mode, kwargs.get("boundary_center"), kwargs.get("boundary_width")))
        return update(self, *args, **kwargs)

    monkeypatch.setattr(HydraReward, "update", spy)
    X, y, _ = _data()
    model = SwiftHydra(**merged(MICRO, {"generation_params": {"deception": "boundary"}}), random_state=0).fit(X, y)
    assert seen and all(mode == "boundary" and np.isfinite(center) and width > 0 for mode, center, width in seen)
    assert len(model.history_) > 1
    seen.clear()
    SwiftHydra(**MICRO, random_state=0).fit(X, y)
    assert seen and all(mode == "log" and center is None for mode, center, _ in seen)
    with pytest.raises(InvalidInputError, match="deception"):
        SwiftHydra(generation_params={"deception": "gan"}).fit(X, y)


def test_two_threads_train_the_detector_beside_the_cvae_with_the_same_scores():
    """n_jobs=2: the detector trains on a second thread while the C-VAE trains on the caller's;
    the scores equal those of n_jobs=1 and the caller's torch thread count is restored."""
    import threading

    import torch

    from _presets import MICRO
    from swifthydra.callbacks import CVAE, CVAE_FINETUNE, DETECTOR, DETECTOR_FINETUNE, Callback

    class Threads(Callback):
        def __init__(self):
            self.seen = {}

        def on_epoch_end(self, stage, record):
            self.seen.setdefault(stage, set()).add(threading.current_thread().name)

    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 5))
    X[:12] += 3
    y = np.zeros(200, dtype=np.int64)
    y[:6] = 1
    before = torch.get_num_threads()
    scores = {}
    for n_jobs in (1, 2):
        rec = Threads()
        model = SwiftHydra(**MICRO, n_jobs=n_jobs, random_state=0).fit(X, y, callbacks=[rec])
        scores[n_jobs] = model.decision_function(X)
        assert torch.get_num_threads() == before
        main = threading.main_thread().name
        assert rec.seen[CVAE] == rec.seen[CVAE_FINETUNE] == {main}
        if n_jobs == 1:
            assert rec.seen[DETECTOR] == rec.seen[DETECTOR_FINETUNE] == {main}
        else:
            assert all(name.startswith("swifthydra") for name in rec.seen[DETECTOR] | rec.seen[DETECTOR_FINETUNE])
    np.testing.assert_array_equal(scores[1], scores[2])


def test_without_generation_n_jobs_2_runs_the_data_only_parts_beside_the_detector(monkeypatch):
    """The default (no generator): with n_jobs=2 the density prior and the MoME's expert-count
    search run on a second thread while the large detector trains on the caller's; the scores,
    the number of experts and the prior equal those of n_jobs=1, and MoME.fit does not search
    again."""
    import threading

    from swifthydra.detectors import mome as mome_module
    from swifthydra.detectors import prior as prior_module

    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 6))
    X[:15] += 3
    y = (np.arange(300) < 6).astype(np.int64)
    real_search, real_prior = mome_module.choose_num_experts, prior_module.DensityPrior.fit_unlabeled.__func__
    for n_jobs in (1, 2):
        seen = []

        def search_spy(*args, seen=seen, **kwargs):
            seen.append(("search", threading.current_thread().name))
            return real_search(*args, **kwargs)

        def prior_spy(cls, *args, seen=seen, **kwargs):
            seen.append(("prior", threading.current_thread().name))
            return real_prior(cls, *args, **kwargs)

        monkeypatch.setattr(mome_module, "choose_num_experts", search_spy)
        monkeypatch.setattr(prior_module.DensityPrior, "fit_unlabeled", classmethod(prior_spy))
        fast = {"detector_params": {"max_epochs": 2}, "mome_params": {"max_epochs": 2}}
        model = SwiftHydra(**fast, n_jobs=n_jobs, random_state=0).fit(X, y)
        if n_jobs == 1:
            reference = (model.decision_function(X), model.mome_.n_experts_, model.prior_scale_)
            assert sorted(seen) == [("prior", "MainThread"), ("search", "MainThread")]
        else:
            assert [what for what, _ in sorted(seen)] == ["prior", "search"]  # once each: fit does not search again
            assert all(name.startswith("swifthydra") for _, name in seen)
            np.testing.assert_array_equal(model.decision_function(X), reference[0])
            assert (model.mome_.n_experts_, model.prior_scale_) == reference[1:]


def test_search_experts_gives_fit_the_count_its_own_search_finds():
    from swifthydra.detectors import MoME

    rng = np.random.RandomState(1)
    X = np.vstack([rng.normal(size=(150, 4)), rng.normal(6, 1, size=(150, 4))]).astype(np.float32)
    y = (np.arange(300) < 5).astype(np.int64)
    own = MoME(max_epochs=1, random_state=3).fit(X, y)
    early = MoME(max_epochs=1, random_state=3).search_experts(X).fit(X, y)
    assert early.n_experts_ == own.n_experts_
    np.testing.assert_array_equal(early.decision_function(X), own.decision_function(X))
    with pytest.raises(InvalidInputError, match="NaN|finite"):
        MoME().search_experts(np.full((10, 2), np.nan))


def test_selection_and_the_reward_update_run_on_one_intra_op_thread_with_n_jobs_2(monkeypatch):
    """Selecting the kept candidates and updating the reward's k-NN structures are hundreds of
    small ops: with an intra-op pool each waits for the pool's threads, which cost 50 times the
    work on a busy machine (docs/design.md §4.4). With n_jobs=2 they run on one thread."""
    import torch

    from _presets import MICRO
    from swifthydra.rl import reward as reward_module

    seen = []
    real_select, real_update = reward_module.select_top, reward_module.HydraReward.update

    def select_spy(*args, **kwargs):
        seen.append(("select", torch.get_num_threads()))
        return real_select(*args, **kwargs)

    def update_spy(self, *args, **kwargs):
        seen.append(("update", torch.get_num_threads()))
        return real_update(self, *args, **kwargs)

    monkeypatch.setattr(reward_module, "select_top", select_spy)
    monkeypatch.setattr(reward_module.HydraReward, "update", update_spy)
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 5))
    X[:12] += 3
    y = (np.arange(200) < 6).astype(np.int64)
    SwiftHydra(**MICRO, n_jobs=2, random_state=0).fit(X, y)
    assert {what for what, _ in seen} == {"select", "update"}
    assert all(threads == 1 for _, threads in seen)


def test_max_samples_trains_on_a_sample_with_every_known_anomaly(monkeypatch):
    """Above max_samples rows the networks train on every known anomaly plus a seeded sample;
    decision_scores_ still covers every row, and the sample is the same for the same seed."""
    from _presets import MICRO
    from swifthydra.detectors import MambaDetector

    seen = []
    real_fit = MambaDetector.fit

    def spy(self, X, y, *args, **kwargs):
        seen.append((len(y), int(np.sum(y))))
        return real_fit(self, X, y, *args, **kwargs)

    monkeypatch.setattr(MambaDetector, "fit", spy)
    rng = np.random.RandomState(0)
    X = rng.normal(size=(600, 4))
    X[:20] += 3
    y = np.zeros(600, dtype=np.int64)
    y[:20] = 1
    a = SwiftHydra(**MICRO, max_samples=200, random_state=0).fit(X, y)
    b = SwiftHydra(**MICRO, max_samples=200, random_state=0).fit(X, y)
    assert seen[0] == (200, 20) and seen[0] == seen[1]
    assert a.decision_scores_.shape == (600,)
    np.testing.assert_array_equal(a.decision_function(X), b.decision_function(X))
    with pytest.raises(InvalidInputError, match="max_samples"):
        SwiftHydra(**MICRO, max_samples=1).fit(X, y)


# ------------------------------------------------------------------ the estimator's surface
def test_fifteen_parameters_and_generation_settings_in_one_dict():
    from swifthydra.hydra import GENERATION_DEFAULTS

    params = SwiftHydra().get_params()
    assert len(params) <= 15
    assert not set(GENERATION_DEFAULTS) & set(params) and "n_experts" not in params
    model = SwiftHydra(generation_params={"gamma": 0.5, "top_l": 8})
    assert model._generation() == {**GENERATION_DEFAULTS, "gamma": 0.5, "top_l": 8}
    assert clone(model).generation_params == {"gamma": 0.5, "top_l": 8}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"generation_params": {"gama": 0.5}}, r"generation_params has unknown keys \['gama'\]: it takes top_l, gamma"),
        ({"generation_params": {"gamma": 1.5}}, r"'gamma' key of generation_params must be a float in the range"),
        ({"generation_params": {"num_envs": True}}, r"'num_envs' key of generation_params must be an int, not a bool"),
        ({"generation_params": {"deception": "gan"}}, r"'deception' key of generation_params must be a str among"),
        ({"mome_params": {"random_state": 3}}, r"mome_params sets \['random_state'\], which SwiftHydra sets itself"),
        ({"detector_params": {"contamination": 0.2}}, r"detector_params sets \['contamination'\]"),
        ({"episodes": True}, r"'episodes' parameter of SwiftHydra must be an int, not a bool"),
    ],
)
def test_bad_settings_are_one_clear_error(kwargs, match):
    X, y, _ = _data()
    with pytest.raises(InvalidInputError, match=match):
        SwiftHydra(**kwargs).fit(X, y)


def test_a_moved_parameter_names_its_new_place():
    with pytest.raises(InvalidInputError, match=r"pass generation_params=\{'cvae_epochs': 20\} and "
                                                 r"mome_params=\{'n_experts': 3\} instead"):
        SwiftHydra(cvae_epochs=20, n_experts=3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        SwiftHydra(colour="red")


def test_model_files_with_the_former_flat_parameters_load_and_score_the_same(tmp_path):
    """Model files written before version 0.2 hold the generation settings and n_experts as
    top-level params: they load, with the same settings in their new places, and score the same."""
    import json

    from swifthydra.hydra import legacy_params

    X, y, _ = _data()
    model = SwiftHydra(random_state=0, **TINY).fit(X, y)
    path = model.save(tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    params = config["config"]["params"]
    flat = {k: v for k, v in params.items() if k != "generation_params"}
    flat.update(params["generation_params"])  # as version 0.5 wrote them
    flat["mome_params"] = {k: v for k, v in params["mome_params"].items() if k != "n_experts"}
    flat["n_experts"] = params["mome_params"]["n_experts"]
    config["config"]["params"] = flat
    (path / "config.json").write_text(json.dumps(config))
    loaded = SwiftHydra.load(path)
    assert loaded.get_params()["generation_params"] == TINY["generation_params"]
    assert loaded.get_params()["mome_params"]["n_experts"] == 2
    assert loaded.generation_["cvae_epochs"] == 5
    np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))
    assert legacy_params(model.get_params()) == model.get_params()  # today's pass unchanged


def test_rows_are_standardised_once_in_a_fit_and_once_in_a_score(monkeypatch):
    """One pass of X (issue 25): the networks' input and the density prior's both start from one
    standardisation; no raw copy is standardised again on the way."""
    from swifthydra._features import FeatureScaler

    calls = []
    standardise = FeatureScaler.standardise

    def counted(self, X):
        calls.append(len(X))
        return standardise(self, X)

    monkeypatch.setattr(FeatureScaler, "standardise", counted)
    X, y, _ = _data()
    model = SwiftHydra(random_state=0, **TINY).fit(X, y)
    assert model.prior_ is not None and calls == [len(X)]
    calls.clear()
    model.decision_function(X[:50])
    assert calls == [50]
