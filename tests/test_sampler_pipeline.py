"""Generators in pipelines: WeightedPipeline passes sample_weight_ on to the final estimator.

imbalanced-learn's Pipeline drops a sampler's weights (its ``fit_resample`` returns ``(X, y)``
only), so the generated rows would reach the classifier at weight 1; ``make_weighted_pipeline``
fits the classifier exactly as ``clf.fit(X_res, y_res, sample_weight=gen.sample_weight_)`` does,
and a generator in a plain imbalanced-learn pipeline warns.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline
from imblearn.under_sampling import RandomUnderSampler
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline as sk_make_pipeline
from sklearn.preprocessing import StandardScaler

from swifthydra.exceptions import InvalidInputError
from swifthydra.generators import (
    GeneratedWeightsWarning,
    WeightedPipeline,
    _samplers,
    make_generator,
    make_weighted_pipeline,
)

NAMES = ["mixup", "nngmix"]


def _data(seed=0, n=300, d=5, n_anom=20, n_labeled=8):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:n_anom] += 2.5
    y = np.zeros(n, dtype=np.int64)
    y[:n_labeled] = 1
    return X, y


def _by_hand(name, X, y, sample_weight=None):
    """StandardScaler, then the generator, then LogisticRegression fitted with the weights."""
    scaler = StandardScaler().fit(X)
    gen = make_generator(name, random_state=0)
    X_res, y_res = gen.fit_resample(scaler.transform(X), y)
    w = gen.sample_weight_.copy()
    if sample_weight is not None:
        w[: len(X)] *= sample_weight
    clf = LogisticRegression(max_iter=1000).fit(X_res, y_res, sample_weight=w)
    return scaler, gen, clf


def _pipe(name, clf=None, scaler=None):
    return make_weighted_pipeline(
        scaler or StandardScaler(), make_generator(name, random_state=0), clf or LogisticRegression(max_iter=1000)
    )


def _assert_same(pipe, scaler, clf, X):
    Xs = scaler.transform(X)
    np.testing.assert_allclose(pipe.predict_proba(X), clf.predict_proba(Xs), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pipe.decision_function(X), clf.decision_function(Xs), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_weighted_pipeline_equals_fit_by_hand(name):
    X, y = _data()
    X_test, _ = _data(seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeneratedWeightsWarning)
        pipe = _pipe(name).fit(X, y)
    scaler, gen, clf = _by_hand(name, X, y)
    fitted = pipe.steps[1][1]
    assert isinstance(pipe, WeightedPipeline)
    assert fitted.n_generated_ == gen.n_generated_ > 0
    assert np.all(gen.sample_weight_[len(X):] < 1.0)  # the weights matter on this data
    np.testing.assert_array_equal(fitted.sample_weight_, gen.sample_weight_)
    _assert_same(pipe, scaler, clf, X_test)
    # and differs from the plain imbalanced-learn pipeline, which fits every row at weight 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeneratedWeightsWarning)
        plain = Pipeline(clone(pipe).steps).fit(X, y)  # the same steps, unfitted
    assert not np.allclose(plain.decision_function(X_test), pipe.decision_function(X_test))


@pytest.mark.parametrize("name", NAMES)
def test_weighted_pipeline_with_metadata_routing(name):
    X, y = _data()
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = _pipe(name).fit(X, y)
        scaler, _, clf = _by_hand(name, X, y)
        _assert_same(pipe, scaler, clf, X)
        # weights requested by the classifier weight the real rows; generated rows keep theirs
        given = np.random.default_rng(2).uniform(0.5, 2.0, size=len(X))
        pipe = _pipe(
            name,
            LogisticRegression(max_iter=1000).set_fit_request(sample_weight=True),
            StandardScaler().set_fit_request(sample_weight=False),
        )
        pipe.fit(X, y, sample_weight=given)
        scaler, _, clf = _by_hand(name, X, y, sample_weight=given)
        _assert_same(pipe, scaler, clf, X)


def test_caller_weights_for_the_final_step():
    X, y = _data()
    given = np.random.default_rng(3).uniform(0.5, 2.0, size=len(X))
    pipe = _pipe("mixup").fit(X, y, logisticregression__sample_weight=given)
    scaler, _, clf = _by_hand("mixup", X, y, sample_weight=given)
    _assert_same(pipe, scaler, clf, X)
    with pytest.raises(InvalidInputError, match="one per input row"):
        _pipe("mixup").fit(X, y, logisticregression__sample_weight=given[:10])


def test_classifier_without_sample_weight():
    X, y = _data()
    with pytest.raises(InvalidInputError, match="kneighborsclassifier.*fit takes no sample_weight"):
        _pipe("nngmix", KNeighborsClassifier()).fit(X, y)
    # a nested scikit-learn Pipeline as final step would not pass the weights either
    inner = sk_make_pipeline(StandardScaler(), LogisticRegression())
    with pytest.raises(InvalidInputError, match="put its steps into this pipeline"):
        make_weighted_pipeline(make_generator("mixup", random_state=0), inner).fit(X, y)
    # nothing to lose: "none" (every weight 1) fits such a classifier without sample_weight
    pipe = _pipe("none", KNeighborsClassifier()).fit(X, y)
    knn = KNeighborsClassifier().fit(StandardScaler().fit_transform(X), y)
    np.testing.assert_array_equal(pipe.predict_proba(X), knn.predict_proba(StandardScaler().fit(X).transform(X)))
    # the documented way out: a plain imbalanced-learn pipeline fits every row at weight 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeneratedWeightsWarning)
        Pipeline([("gen", make_generator("nngmix", random_state=0)), ("knn", KNeighborsClassifier())]).fit(X, y)


def test_plain_imblearn_pipeline_warns_once(monkeypatch):
    monkeypatch.setattr(_samplers, "_WARNED_PLAIN_PIPELINE", set())
    X, y = _data()
    plain = Pipeline([("gen", make_generator("mixup", random_state=0)), ("clf", LogisticRegression())])
    with pytest.warns(GeneratedWeightsWarning, match="MixupGenerator.*drops its sample_weight_.*make_weighted_pipeline"):
        plain.fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeneratedWeightsWarning)
        plain.fit(X, y)  # once per generator class
        make_generator("nngmix", random_state=0).fit_resample(X, y)  # direct use: no warning
        _pipe("nngmix").fit(X, y)  # weights passed on: no warning
    with pytest.warns(GeneratedWeightsWarning, match="NNGMixGenerator"):
        Pipeline([("gen", make_generator("nngmix", random_state=0)), ("clf", LogisticRegression())]).fit(X, y)


def test_fit_resample_contract_unchanged():
    X, y = _data()
    gen = make_generator("mixup", random_state=0)
    out = gen.fit_resample(X, y)
    assert isinstance(out, tuple) and len(out) == 2
    X_res, y_res = out
    assert len(X_res) == len(y_res) == len(gen.sample_weight_) == len(X) + gen.n_generated_


def test_other_samplers_before_and_after():
    X, y = _data()
    rus = RandomUnderSampler(sampling_strategy=0.1, random_state=0)
    pipe = make_weighted_pipeline(rus, make_generator("mixup", random_state=0), LogisticRegression(max_iter=1000))
    pipe.fit(X, y)
    X_u, y_u = clone(rus).fit_resample(X, y)
    gen = make_generator("mixup", random_state=0)
    X_res, y_res = gen.fit_resample(X_u, y_u)
    clf = LogisticRegression(max_iter=1000).fit(X_res, y_res, sample_weight=gen.sample_weight_)
    np.testing.assert_allclose(pipe.decision_function(X), clf.decision_function(X), rtol=1e-10, atol=1e-12)
    smote_after = make_weighted_pipeline(
        make_generator("mixup", random_state=0), SMOTE(k_neighbors=3, random_state=0), LogisticRegression()
    )
    with pytest.raises(InvalidInputError, match="smote.*put the generators after it"):
        smote_after.fit(X, y)


def test_clone_and_cross_validation():
    X, y = _data()
    pipe = _pipe("nngmix")
    assert type(clone(pipe)) is WeightedPipeline
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeneratedWeightsWarning)
        scores = cross_val_score(pipe, X, y, cv=3, scoring="roc_auc")
    assert np.all(np.isfinite(scores))
