"""Swift Hydra's self-reinforcing loop around any classifier: :class:`SelfReinforcingClassifier`.

:class:`~swifthydra.hydra.SwiftHydra` runs the loop around its Mamba detector and fine-tunes it
every episode. This wrapper runs the same episodes around any scikit-learn-style classifier
(CatBoost, XGBoost, a torch DevNet, a logistic regression, SwiftHydra itself): each episode
proposes candidates (:class:`~swifthydra.generators._core.LatentProposer`: the PPO agent, C-VAE
samples, NNG-Mix or mixup), keeps the best by Swift Hydra's reward against the *current*
classifier (:func:`~swifthydra.generators._core.select`), and refits a fresh copy of the
classifier on the real rows plus every anomaly kept so far. So a user can ask: does Swift Hydra's
generation improve *my* model?
"""

from __future__ import annotations

import copy
import math
import numbers
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.metrics import roc_auc_score

from swifthydra._features import FeatureScaler
from swifthydra._torch import torch_threads
from swifthydra._validation import check_X, check_y, seed_from
from swifthydra.exceptions import InvalidInputError, NotFittedError
from swifthydra.generators._core import (
    LatentProposer,
    default_top_l,
    generated_weight,
    make_reward,
    takes_sample_weight,
)
from swifthydra.generators._episodes import Episode, Episodes, hold_out
from swifthydra.generators._samplers import anomaly_probability, default_estimator

__all__ = ["SelfReinforcingClassifier"]

_LOOP_GENERATORS = ("rl", "cvae", "nngmix", "mixup", "none")


def _weight_key(estimator: Any) -> str | None:
    """The ``fit`` keyword that takes row weights (``step__sample_weight`` for a scikit-learn
    pipeline), or None when ``fit`` takes none."""
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline):
        name, last = estimator.steps[-1]
        return f"{name}__sample_weight" if _weight_key(last) else None
    return "sample_weight" if takes_sample_weight(getattr(estimator, "fit", None)) else None


def _fresh(estimator: Any, seed: int) -> Any:
    """An unfitted copy of ``estimator``; a ``random_state`` left at None is set to ``seed``."""
    try:
        est = clone(estimator)
    except TypeError:  # not a scikit-learn estimator (no get_params): copy it as it is
        est = copy.deepcopy(estimator)
    if hasattr(est, "get_params") and hasattr(est, "set_params"):
        try:
            if "random_state" in est.get_params(deep=False) and est.get_params(deep=False)["random_state"] is None:
                est.set_params(random_state=seed)
        except (TypeError, ValueError):
            pass
    return est


def _score(estimator: Any, X: np.ndarray) -> np.ndarray:
    """Anomaly score for AUC: ``decision_function`` when there is one, else P(class 1)."""
    if hasattr(estimator, "decision_function"):
        return np.asarray(estimator.decision_function(X), dtype=np.float64).reshape(-1)
    return anomaly_probability(estimator, X)


class SelfReinforcingClassifier(ClassifierMixin, BaseEstimator):
    """Swift Hydra's self-reinforcing generation around any classifier.

    ``fit(X, y)`` (y: 1 = known anomaly, 0 = unlabeled):

    1. **Episode 0.** A copy of ``estimator`` is fitted on the real rows; for ``"rl"`` and
       ``"cvae"`` the conditional VAE is trained on them (in :class:`~swifthydra._features.FeatureScaler` units, as SwiftHydra's).
    2. **Episodes 1..E.** Candidates are proposed (agent rollouts, C-VAE samples, NNG-Mix or
       mixup), rewarded by Swift Hydra's reward (diversity ``lam · gamma^e``, deception
       ``1 − gamma^e`` against the current classifier's ``W(x)``, the label-noise guard) and the
       ``top_l`` best kept; a fresh copy of ``estimator`` is fitted on the real rows plus every
       kept anomaly (weights: :func:`~swifthydra.generators._core.generated_weight`); the C-VAE
       is fine-tuned ``finetune_epochs`` epochs. With at least ``min_validation_anomalies`` known
       anomalies, ``validation_fraction`` of the rows is held out, the episode with the best
       validation AUC is kept and the loop stops after ``patience`` episodes without a better
       one; with ``refit=True`` the kept episode's classifier is then fitted again on every real
       row plus that episode's generated anomalies. With fewer, every episode runs on all rows
       and the last is kept.

    A classifier whose ``fit`` takes no ``sample_weight`` gets, instead of down-weighted
    generated rows, a random subset of them whose size is their total weight.

    Parameters
    ----------
    estimator : classifier or None
        Anything with ``fit(X, y[, sample_weight])`` and ``predict_proba`` or
        ``decision_function`` (class 1 = anomaly), e.g. ``catboost.CatBoostClassifier``;
        ``None``: a class-balanced logistic regression on standardised features. Copied with
        :func:`sklearn.base.clone` (or ``copy.deepcopy``); a ``random_state`` left at ``None`` is
        set from ``random_state`` so that fits repeat.
    generator : {"rl", "cvae", "nngmix", "mixup", "none"}, default="rl"
    episodes : int, default=4
    top_l : int or None, default=None
        Kept per episode; ``None`` = ``clip(4 · n_known_anomalies, 16, 128)``.
    lam, gamma : float, default=1.0, 0.9
    generated_weight : float, default=1.0
        Total weight of the generated rows relative to the known anomalies (each at most 1).
    latent_dim, cvae_epochs, finetune_epochs : int, default=16, 60, 1
        ``finetune_epochs`` (the C-VAE's epochs after each episode) as SwiftHydra's (3 before).
    num_envs, horizon, ppo_iterations : int, default=64, 6, 8
    deception : {"log", "boundary"}, default="log"
        The deception term, as SwiftHydra's: ``"log"`` rewards candidates the current classifier
        calls normal; ``"boundary"`` rewards those near its decision boundary (P(anomaly) = 0.5).
    feature_transform : {"auto", "yeo-johnson", "standard"}, default="auto"
    validation_fraction : float, default=0.2
    min_validation_anomalies : int, default=25
    patience : int, default=2
    refit : bool, default=True
    device : str, default="cpu"
    n_jobs : int, default=1
        PyTorch threads of the C-VAE and the agent.
    random_state : int, RandomState or None

    Attributes
    ----------
    estimator_ : the fitted classifier that predicts
    generated_ : ndarray (n_generated, n_features), the generated anomalies it was trained with
    sample_weight_ : ndarray, the weights of its training rows (real rows then generated ones)
    history_ : list of dict, per episode: candidates, kept, reward and ``W`` of the kept rows,
        validation AUC
    best_episode_ : int
    cvae_, policy_ : the C-VAE and the agent (None when unused)
    classes_ : ndarray [0, 1]
    """

    def __init__(
        self,
        estimator: Any = None,
        generator: str = "rl",
        episodes: int = 4,
        top_l: int | None = None,
        lam: float = 1.0,
        gamma: float = 0.9,
        generated_weight: float = 1.0,
        latent_dim: int = 16,
        cvae_epochs: int = 60,
        finetune_epochs: int = 1,
        num_envs: int = 64,
        horizon: int = 6,
        ppo_iterations: int = 8,
        deception: str = "log",
        feature_transform: str = "auto",
        validation_fraction: float = 0.2,
        min_validation_anomalies: int = 25,
        patience: int = 2,
        refit: bool = True,
        device: str = "cpu",
        n_jobs: int = 1,
        random_state: Any = None,
    ) -> None:
        self.estimator = estimator
        self.generator = generator
        self.episodes = episodes
        self.top_l = top_l
        self.lam = lam
        self.gamma = gamma
        self.generated_weight = generated_weight
        self.latent_dim = latent_dim
        self.cvae_epochs = cvae_epochs
        self.finetune_epochs = finetune_epochs
        self.num_envs = num_envs
        self.horizon = horizon
        self.ppo_iterations = ppo_iterations
        self.deception = deception
        self.feature_transform = feature_transform
        self.validation_fraction = validation_fraction
        self.min_validation_anomalies = min_validation_anomalies
        self.patience = patience
        self.refit = refit
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state

    # ------------------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        def is_int(v, low):
            return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low

        def is_real(v):
            return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)

        checks = {
            "episodes": is_int(self.episodes, 0),
            "top_l": self.top_l is None or is_int(self.top_l, 1),
            "lam": is_real(self.lam) and self.lam >= 0,
            "gamma": is_real(self.gamma) and 0 < self.gamma < 1,
            "generated_weight": is_real(self.generated_weight) and self.generated_weight >= 0,
            "latent_dim": is_int(self.latent_dim, 1),
            "cvae_epochs": is_int(self.cvae_epochs, 1),
            "finetune_epochs": is_int(self.finetune_epochs, 0),
            "num_envs": is_int(self.num_envs, 1),
            "horizon": is_int(self.horizon, 1),
            "ppo_iterations": is_int(self.ppo_iterations, 1),
            "validation_fraction": is_real(self.validation_fraction) and 0 <= self.validation_fraction < 1,
            "min_validation_anomalies": is_int(self.min_validation_anomalies, 2),
            "patience": is_int(self.patience, 1),
            "n_jobs": is_int(self.n_jobs, 1) or self.n_jobs == -1,
            "feature_transform": self.feature_transform in ("auto", "yeo-johnson", "standard"),
            "deception": self.deception in ("log", "boundary"),
            "estimator": self.estimator is None
            or (hasattr(self.estimator, "fit")
                and (hasattr(self.estimator, "predict_proba") or hasattr(self.estimator, "decision_function"))),
        }
        bad = [n for n, ok in checks.items() if not ok]
        if bad:
            raise InvalidInputError(
                "SelfReinforcingClassifier parameters out of range: "
                + ", ".join(f"{n}={getattr(self, n)!r}" for n in bad) + "."
            )
        if self.generator not in _LOOP_GENERATORS:
            raise InvalidInputError(
                f"generator must be one of {', '.join(_LOOP_GENERATORS)}, got {self.generator!r}."
            )

    def _check_fitted(self) -> None:
        if not hasattr(self, "estimator_"):
            raise NotFittedError("This SelfReinforcingClassifier is not fitted yet: call fit(X, y) first.")

    # --------------------------------------------------------------------------------- fit
    def fit(self, X: Any, y: Any) -> SelfReinforcingClassifier:
        """Run the episodes and keep the best classifier; see the class docstring."""
        self._check_params()
        X = check_X(X, name="X", min_rows=2)
        y = check_y(y, X.shape[0])
        n_anom = int(y.sum())
        if n_anom == 0 or X.shape[0] - n_anom < 2:
            raise InvalidInputError(
                "SelfReinforcingClassifier needs at least one known anomaly (y == 1) and two "
                f"unlabeled rows (y == 0); y labels {n_anom} of {X.shape[0]} rows anomalies."
            )
        self.n_features_in_ = X.shape[1]
        self.classes_ = np.array([0, 1])
        seed = seed_from(self.random_state)
        with torch_threads(self.n_jobs):
            self._fit(X, y, seed)
        return self

    def _fit_estimator(self, X: np.ndarray, y: np.ndarray, generated: np.ndarray, seed: int):
        """``(classifier, generated rows it saw, row weights)``: a fresh classifier fitted on the
        real rows plus ``generated`` (input units)."""
        base = default_estimator() if self.estimator is None else self.estimator
        est = _fresh(base, seed)
        w_gen = generated_weight(int(y.sum()), len(generated), float(self.generated_weight))
        key = _weight_key(est)
        if len(generated) and key is None:
            # no sample_weight: as many generated rows as their total weight, drawn at random
            n_keep = min(len(generated), int(math.ceil(w_gen * len(generated) - 1e-9)))
            pick = np.sort(np.random.RandomState(seed).choice(len(generated), n_keep, replace=False))
            generated, w_gen = generated[pick], 1.0
        X_all = np.vstack([X, generated]) if len(generated) else X
        y_all = np.concatenate([y, np.ones(len(generated), dtype=np.int64)])
        w = np.ones(len(y_all))
        w[len(y):] = w_gen
        if key is None:
            est.fit(X_all, y_all)
        else:
            est.fit(X_all, y_all, **{key: w})
        return est, generated, w

    def _fit(self, X: np.ndarray, y: np.ndarray, seed: int) -> None:
        train_idx, val_idx = hold_out(
            y, fraction=float(self.validation_fraction), min_anomalies=int(self.min_validation_anomalies),
            enabled=self.episodes > 0 and self.generator != "none", seed=seed,
        )
        X_tr, y_tr, X_val, y_val = X[train_idx], y[train_idx], X[val_idx], y[val_idx]

        def val_auc(est) -> float:
            if len(y_val) == 0 or y_val.min() == y_val.max():
                return float("nan")
            return float(roc_auc_score(y_val, _score(est, X_val)))

        est, _, w = self._fit_estimator(X_tr, y_tr, np.empty((0, X.shape[1])), seed)
        self.history_ = [{"episode": 0, "candidates": 0, "kept": 0, "generated_total": 0, "val_auc": val_auc(est)}]
        best = (est, np.empty((0, X.shape[1])), w)
        self.best_episode_ = 0
        self.cvae_ = None
        self.policy_ = None
        if self.generator != "none" and self.episodes > 0:
            best = self._episodes(X_tr, y_tr, val_auc, best, seed)
        est, generated, w = best
        if self.refit and len(val_idx):  # the kept episode's classifier, again on every real row
            est, generated, w = self._fit_estimator(X, y, generated, seed)
        self.estimator_ = est
        self.generated_ = generated
        self.sample_weight_ = w

    def _episodes(self, X_tr, y_tr, val_auc, best, seed):
        """Episodes 1..E through the shared loop (:mod:`swifthydra.generators._episodes`): after
        each, a fresh classifier is fitted on the real rows plus every kept generated row."""
        from swifthydra.generative import CVAE

        space = FeatureScaler.fit(X_tr, self.feature_transform, seed)
        Xs = space.transform(X_tr)
        anchors, normals = Xs[y_tr == 1], Xs[y_tr == 0]
        if self.generator in ("rl", "cvae"):
            self.cvae_ = CVAE(
                latent_dim=int(self.latent_dim), epochs=int(self.cvae_epochs), random_state=seed, device=self.device
            ).fit(Xs, y_tr)
        current = {"fit": best}  # (classifier, generated rows it saw, row weights) of the last episode

        def detector(x: torch.Tensor) -> torch.Tensor:
            rows = space.inverse_transform(x.detach().to("cpu", torch.float32).numpy())
            p = anomaly_probability(current["fit"][0], rows)
            return torch.as_tensor(p, dtype=torch.float32, device=x.device)

        def after_keep(e: int, generated: np.ndarray) -> None:
            current["fit"] = self._fit_estimator(X_tr, y_tr, space.inverse_transform(generated), seed + e)
            if self.cvae_ is not None and self.finetune_epochs > 0:
                X_comb = np.vstack([Xs, generated]).astype(np.float32)
                y_comb = np.concatenate([y_tr, np.ones(len(generated), dtype=np.int64)])
                self.cvae_.partial_fit(X_comb, y_comb, epochs=int(self.finetune_epochs))

        def record(episode: Episode) -> dict:
            return {**episode.row(), "generated_total": int(len(episode.generated)), "val_auc": episode.score}

        loop = Episodes(
            reward=make_reward(anchors, normals, detector, lam=self.lam, gamma=self.gamma, seed=seed,
                               deception_mode=self.deception),
            proposer=LatentProposer(self.generator, num_envs=int(self.num_envs), horizon=int(self.horizon),
                                    ppo_iterations=int(self.ppo_iterations)),
            anchors=anchors, normals=normals, bounds=(Xs.min(axis=0), Xs.max(axis=0)),
            top_l=self.top_l if self.top_l is not None else default_top_l(len(anchors)),
            seed=seed, patience=int(self.patience), cvae=self.cvae_, best=best, best_score=self.history_[0]["val_auc"],
        )
        loop.run(self.episodes, after_keep=after_keep, evaluate=lambda: val_auc(current["fit"][0]),
                 snapshot=lambda: current["fit"], record=record)
        self.history_.extend(loop.rows)
        self.best_episode_ = loop.best_episode
        self.policy_ = loop.proposer.policy
        return loop.best

    # ----------------------------------------------------------------------------- predict
    def predict_proba(self, X: Any) -> np.ndarray:
        """``[P(normal), P(anomaly)]`` per row, from the classifier (the logistic function of its
        ``decision_function`` when it has no ``predict_proba``)."""
        self._check_fitted()
        X = check_X(X, name="X", n_features=self.n_features_in_)
        p = anomaly_probability(self.estimator_, X)
        return np.stack([1.0 - p, p], axis=1)

    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly score per row (higher = more anomalous): the classifier's own
        ``decision_function`` when it has one, else P(anomaly)."""
        self._check_fitted()
        X = check_X(X, name="X", n_features=self.n_features_in_)
        return _score(self.estimator_, X)

    def predict(self, X: Any) -> np.ndarray:
        """1 where P(anomaly) > 0.5, else 0."""
        return (self.predict_proba(X)[:, 1] > 0.5).astype(np.int64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
