"""Anomaly generators with imbalanced-learn's ``fit_resample(X, y)`` contract.

``X_res, y_res = gen.fit_resample(X, y)`` returns the real rows first, unchanged and in their
order, then the generated anomalies (``y = 1``). ``sample_weight_`` holds 1.0 for every real row
and the weight of each generated row; ``generated_`` and ``n_generated_`` the generated rows and
their count. Labels are weak labels: 1 = known anomaly, 0 = unlabeled.

imbalanced-learn's ``Pipeline`` has no channel for a sampler's weights (``fit_resample`` returns
``(X, y)`` only, and metadata routing carries the caller's metadata, not a step's output), so
:class:`WeightedPipeline` (:func:`make_weighted_pipeline`) passes ``sample_weight_`` on to the
final estimator's ``fit``; a generator that finds itself in a plain imbalanced-learn pipeline
warns (:class:`GeneratedWeightsWarning`).
"""

from __future__ import annotations

import numbers
import sys
import warnings
from typing import Any

import numpy as np
import torch
from imblearn.base import BaseSampler
from imblearn.pipeline import Pipeline as _ImbPipeline
from imblearn.pipeline import make_pipeline as _imb_make_pipeline
from sklearn.base import clone
from sklearn.utils import Bunch

from swifthydra._features import FeatureScaler
from swifthydra._torch import torch_threads
from swifthydra._validation import check_X, check_y, seed_from
from swifthydra.exceptions import InvalidInputError
from swifthydra.generators._core import (
    LatentProposer,
    default_top_l,
    generated_weight,
    make_reward,
    mixup_candidates,
    nngmix_candidates,
    takes_sample_weight,
)
from swifthydra.generators._episodes import Episodes

__all__ = [
    "BaseGenerator",
    "CVAEGenerator",
    "GeneratedWeightsWarning",
    "MixupGenerator",
    "NNGMixGenerator",
    "NoGenerator",
    "RLGenerator",
    "WeightedPipeline",
    "make_weighted_pipeline",
]


def _is_int(v: Any, low: int) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v)


class BaseGenerator(BaseSampler):
    """Common checks and output of the generators (an imbalanced-learn sampler).

    Subclasses implement ``_generate(X, y, seed) -> generated rows`` and ``_param_checks()``.
    """

    _sampling_type = "bypass"
    _parameter_constraints: dict = {}  # parameters are checked by _check_params, with clear errors
    sampling_strategy = "auto"  # read by imbalanced-learn's tooling; every generator adds anomalies
    #: the generator's name in :data:`swifthydra.generators.GENERATORS`
    name = ""
    #: generators that need at least one known anomaly and some unlabeled rows
    needs_labels = True

    def _param_checks(self) -> dict[str, bool]:
        return {}

    def _check_params(self) -> None:
        checks = {"generated_weight": _is_real(self.generated_weight) and self.generated_weight >= 0}
        checks.update(self._param_checks())
        bad = [n for n, ok in checks.items() if not ok]
        if bad:
            raise InvalidInputError(
                f"{type(self).__name__} parameters out of range: "
                + ", ".join(f"{n}={getattr(self, n)!r}" for n in bad) + "."
            )

    def _check_data(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        X = check_X(X, name="X", min_rows=2)
        y = check_y(y, X.shape[0])
        if self.needs_labels:
            n_anom = int(y.sum())
            if n_anom == 0:
                raise InvalidInputError(
                    f"generator {self.name!r} mixes or encodes known anomalies, and y labels none: "
                    "pass y with 1 for at least one known anomaly (or use make_generator('none'))."
                )
            if X.shape[0] - n_anom < 2:
                raise InvalidInputError(
                    f"generator {self.name!r} needs at least 2 unlabeled rows (y == 0); "
                    f"y labels {n_anom} of {X.shape[0]} rows anomalies."
                )
        return X, y

    def fit_resample(self, X: Any, y: Any, **params: Any):
        """Return ``(X_res, y_res)``: the real rows, then the generated anomalies (``y = 1``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Finite numbers (a DataFrame comes back as a DataFrame with the same columns).
        y : array-like of shape (n_samples,)
            1 = known anomaly, 0 = unlabeled.

        Returns
        -------
        X_res : ndarray of shape (n_samples + n_generated_, n_features)
        y_res : ndarray of shape (n_samples + n_generated_,)
        """
        from imblearn.utils._validation import ArraysTransformer

        if params:
            raise InvalidInputError(f"fit_resample takes no extra parameters, got {sorted(params)}.")
        self._check_params()
        arrays = ArraysTransformer(X, y)
        Xc, yc = self._check_data(X, y)
        self.n_features_in_ = Xc.shape[1]
        seed = seed_from(self.random_state)
        gen = np.asarray(self._generate(Xc, yc, seed), dtype=np.float64).reshape(-1, Xc.shape[1])
        if not np.isfinite(gen).all():  # never hand a classifier non-finite rows
            gen = gen[np.isfinite(gen).all(axis=1)]
        self.generated_ = gen
        self.n_generated_ = int(len(gen))
        w = np.ones(len(yc) + len(gen), dtype=np.float64)
        w[len(yc):] = generated_weight(int(yc.sum()), len(gen), float(self.generated_weight))
        self.sample_weight_ = w
        if (len(gen) and np.any(w[len(yc):] != 1.0) and type(self) not in _WARNED_PLAIN_PIPELINE
                and _in_plain_imblearn_pipeline()):
            _WARNED_PLAIN_PIPELINE.add(type(self))
            warnings.warn(
                f"{type(self).__name__} runs inside an imblearn.pipeline.Pipeline, which drops its "
                "sample_weight_: the final estimator gets every generated row at weight 1 instead "
                "of its smaller weight. Use swifthydra.generators.make_weighted_pipeline (or "
                "WeightedPipeline) to pass the weights on to the estimator's fit.",
                GeneratedWeightsWarning,
                stacklevel=2,
            )
        X_res = np.vstack([Xc, gen]) if len(gen) else Xc.copy()
        y_res = np.concatenate([yc, np.ones(len(gen), dtype=np.int64)])
        return arrays.transform(X_res, y_res)

    def fit(self, X: Any, y: Any, **params: Any) -> BaseGenerator:
        """Run :meth:`fit_resample` and return self (the generated rows are in ``generated_``)."""
        self.fit_resample(X, y, **params)
        return self

    def _fit_resample(self, X, y, **params):  # imbalanced-learn's abstract hook
        return self.fit_resample(X, y, **params)

    def _generate(self, X: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class NoGenerator(BaseGenerator):
    """``"none"``: no generated row; ``fit_resample`` returns ``X`` and ``y`` unchanged.

    ``generated_weight`` and ``random_state`` are accepted (and unused) so that every generator
    takes the same common parameters.
    """

    name = "none"
    needs_labels = False

    def __init__(self, generated_weight: float = 1.0, random_state: Any = None) -> None:
        self.generated_weight = generated_weight
        self.random_state = random_state

    def _generate(self, X, y, seed):
        return np.empty((0, X.shape[1]))


class _MixGenerator(BaseGenerator):
    def _count(self, y: np.ndarray) -> int:
        return int(self.n_per_anomaly) * int(y.sum())


class MixupGenerator(_MixGenerator):
    """``"mixup"``: anomaly–anomaly and anomaly–unlabeled mixup, the cheap baseline.

    Each generated row is ``λ a + (1 − λ) b`` with ``a`` a known anomaly drawn at random,
    ``λ ~ Beta(alpha, alpha)`` (Zhang et al., 2018, "mixup"), and ``b`` another known anomaly
    (probability ``p_anomaly``) or an unlabeled row: any one (``n_neighbors=None``: the Mixup
    baseline of the NNG-Mix paper) or one of ``a``'s ``n_neighbors`` nearest unlabeled rows.

    Parameters
    ----------
    n_per_anomaly : int, default=10
        Rows generated per known anomaly.
    alpha : float, default=0.2
        Beta parameter of the mixing coefficient (NNG-Mix's setting for its Mixup baseline).
    p_anomaly : float, default=0.5
        Probability that the partner is another known anomaly.
    n_neighbors : int or None, default=None
        ``None``: the unlabeled partner is drawn from every unlabeled row; an int: from the
        anomaly's nearest unlabeled rows.
    generated_weight : float, default=1.0
        Total weight of the generated rows relative to the known anomalies (each at most 1).
    random_state : int, RandomState or None
    """

    name = "mixup"

    def __init__(
        self,
        n_per_anomaly: int = 10,
        alpha: float = 0.2,
        p_anomaly: float = 0.5,
        n_neighbors: int | None = None,
        generated_weight: float = 1.0,
        random_state: Any = None,
    ) -> None:
        self.n_per_anomaly = n_per_anomaly
        self.alpha = alpha
        self.p_anomaly = p_anomaly
        self.n_neighbors = n_neighbors
        self.generated_weight = generated_weight
        self.random_state = random_state

    def _param_checks(self):
        return {
            "n_per_anomaly": _is_int(self.n_per_anomaly, 0),
            "alpha": _is_real(self.alpha) and self.alpha > 0,
            "p_anomaly": _is_real(self.p_anomaly) and 0 <= self.p_anomaly <= 1,
            "n_neighbors": self.n_neighbors is None or _is_int(self.n_neighbors, 1),
        }

    def _generate(self, X, y, seed):
        rng = np.random.default_rng(seed)
        return mixup_candidates(
            X[y == 1], X[y == 0], self._count(y), rng,
            alpha=float(self.alpha), p_anomaly=float(self.p_anomaly), n_neighbors=self.n_neighbors,
        )


class NNGMixGenerator(_MixGenerator):
    """``"nngmix"``: NNG-Mix, Nearest Neighbor Gaussian Mixup (Dong, Frusque, Zhao, Chatzi and
    Fink, 2023, "NNG-Mix: Improving Semi-supervised Anomaly Detection with Pseudo-anomaly
    Generation", arXiv:2311.11961).

    Each generated row starts from a known anomaly ``a`` drawn at random. With probability
    ``p_unlabeled`` its partner ``b`` is one of its ``n_neighbors`` nearest unlabeled rows, else
    one of its ``n_neighbors_anomaly`` nearest other known anomalies (itself when it is the only
    one). The row is ``λ (a + ε₁) + (1 − λ)(b + ε₂)``, ``λ ~ Beta(alpha, beta)`` (or ``U(0, 1)``
    with ``uniform=True``), ``ε ~ N(0, σ_j²)`` per feature ``j`` with
    ``σ_j = noise_std · (max_j − min_j)`` over ``X``: the paper adds noise of std ``noise_std`` to
    min-max-scaled features, which this reproduces in the input's units.

    The defaults are the paper's settings for tabular (ADBench "Classical") data: ``k = 10``
    unlabeled and 10 anomaly neighbours, ``Beta(0.2, 0.2)``, noise std 0.01, an even choice
    between the two kinds of partner; ``n_per_anomaly=10`` is the largest of the amounts the
    paper studies (1, 5 and 10 times the labelled anomalies). The paper adds the generated rows
    with full weight; here their total weight is capped by ``generated_weight`` (set it to
    ``n_per_anomaly`` for weight 1 each).

    Parameters
    ----------
    n_per_anomaly : int, default=10
    n_neighbors : int, default=10
    n_neighbors_anomaly : int, default=10
    alpha, beta : float, default=0.2
    uniform : bool, default=False
    noise_std : float, default=0.01
    p_unlabeled : float, default=0.5
    generated_weight : float, default=1.0
    random_state : int, RandomState or None
    """

    name = "nngmix"

    def __init__(
        self,
        n_per_anomaly: int = 10,
        n_neighbors: int = 10,
        n_neighbors_anomaly: int = 10,
        alpha: float = 0.2,
        beta: float = 0.2,
        uniform: bool = False,
        noise_std: float = 0.01,
        p_unlabeled: float = 0.5,
        generated_weight: float = 1.0,
        random_state: Any = None,
    ) -> None:
        self.n_per_anomaly = n_per_anomaly
        self.n_neighbors = n_neighbors
        self.n_neighbors_anomaly = n_neighbors_anomaly
        self.alpha = alpha
        self.beta = beta
        self.uniform = uniform
        self.noise_std = noise_std
        self.p_unlabeled = p_unlabeled
        self.generated_weight = generated_weight
        self.random_state = random_state

    def _param_checks(self):
        return {
            "n_per_anomaly": _is_int(self.n_per_anomaly, 0),
            "n_neighbors": _is_int(self.n_neighbors, 1),
            "n_neighbors_anomaly": _is_int(self.n_neighbors_anomaly, 1),
            "alpha": _is_real(self.alpha) and self.alpha > 0,
            "beta": _is_real(self.beta) and self.beta > 0,
            "uniform": isinstance(self.uniform, (bool, np.bool_)),
            "noise_std": _is_real(self.noise_std) and self.noise_std >= 0,
            "p_unlabeled": _is_real(self.p_unlabeled) and 0 <= self.p_unlabeled <= 1,
        }

    def _generate(self, X, y, seed):
        rng = np.random.default_rng(seed)
        return nngmix_candidates(
            X[y == 1], X[y == 0], self._count(y), rng,
            n_neighbors=int(self.n_neighbors), n_neighbors_anomaly=int(self.n_neighbors_anomaly),
            alpha=float(self.alpha), beta=float(self.beta), uniform=bool(self.uniform),
            noise_std=float(self.noise_std), noise_scale=X.max(axis=0) - X.min(axis=0),
            p_unlabeled=float(self.p_unlabeled),
        )


# ------------------------------------------------------------------------- C-VAE and the agent
def default_estimator():
    """The default detector of ``"rl"`` and ``"cvae"``: a class-balanced logistic regression on
    standardised features (cheap, deterministic)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000))


def anomaly_probability(estimator: Any, X: np.ndarray) -> np.ndarray:
    """``W(x)``: the estimator's probability of class 1 (``predict_proba``), or the logistic
    function of ``decision_function`` (higher = more anomalous)."""
    if hasattr(estimator, "predict_proba"):
        proba = np.asarray(estimator.predict_proba(X))
        classes = list(getattr(estimator, "classes_", [0, 1]))
        col = classes.index(1) if 1 in classes else proba.shape[1] - 1
        return proba[:, col].astype(np.float64)
    s = np.asarray(estimator.decision_function(X), dtype=np.float64).reshape(-1)
    from swifthydra._scoring import sigmoid

    return sigmoid(s)


def _is_fitted(estimator: Any) -> bool:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except (NotFittedError, TypeError, AttributeError):
        return False
    return True


class _LatentGenerator(BaseGenerator):
    """C-VAE based generators: Swift Hydra's episodes of proposal and reward-based selection.

    ``fit_resample`` standardises ``X`` (and power-transforms heavily skewed columns, as
    :class:`~swifthydra.hydra.SwiftHydra` does), trains the conditional VAE on it, fits
    ``estimator`` on the real rows unless it is fitted already, and runs ``episodes`` episodes:
    each proposes candidates (:class:`~swifthydra.generators._core.LatentProposer`) and keeps the
    ``top_l`` best by Swift Hydra's reward (:class:`~swifthydra.rl.HydraReward`: diversity weight
    ``lam · gamma^e``, deception ``1 − gamma^e`` against the estimator's ``W(x)``, label-noise
    guard), spread apart. Unlike the Swift Hydra loop, neither the estimator nor the C-VAE is
    fine-tuned between episodes.
    """

    needs_labels = True

    def _common_checks(self):
        return {
            "episodes": _is_int(self.episodes, 1),
            "top_l": self.top_l is None or _is_int(self.top_l, 1),
            "lam": _is_real(self.lam) and self.lam >= 0,
            "gamma": _is_real(self.gamma) and 0 < self.gamma < 1,
            "latent_dim": _is_int(self.latent_dim, 1),
            "cvae_epochs": _is_int(self.cvae_epochs, 1),
            "num_envs": _is_int(self.num_envs, 1),
            "horizon": _is_int(self.horizon, 1),
            "n_jobs": _is_int(self.n_jobs, 1) or self.n_jobs == -1,
            "estimator": self.estimator is None
            or hasattr(self.estimator, "predict_proba")
            or hasattr(self.estimator, "decision_function"),
        }

    def _generate(self, X, y, seed):
        with torch_threads(self.n_jobs):
            return self._run(X, y, seed)

    def _run(self, X, y, seed):
        from swifthydra.generative import CVAE

        space = FeatureScaler.fit(X, self.feature_transform, seed)
        Xs = space.transform(X)
        unscale = space.inverse_transform

        est = default_estimator() if self.estimator is None else self.estimator
        if not _is_fitted(est):
            est = clone(est).fit(X, y)
        self.estimator_ = est

        def detector(x: torch.Tensor) -> torch.Tensor:
            rows = unscale(x.detach().to("cpu", torch.float32).numpy())
            return torch.as_tensor(anomaly_probability(est, rows), dtype=torch.float32, device=x.device)

        self.cvae_ = CVAE(
            latent_dim=int(self.latent_dim), epochs=int(self.cvae_epochs), random_state=seed, device=self.device
        ).fit(Xs, y)
        anchors, normals = Xs[y == 1], Xs[y == 0]
        # the shared loop (swifthydra.generators._episodes) with nothing after each keep and no
        # validation: every episode runs and every kept row is returned
        loop = Episodes(
            reward=make_reward(anchors, normals, detector, lam=self.lam, gamma=self.gamma, seed=seed),
            proposer=LatentProposer(self.name, num_envs=int(self.num_envs), horizon=int(self.horizon),
                                    ppo_iterations=int(getattr(self, "ppo_iterations", 1))),
            anchors=anchors, normals=normals, bounds=(Xs.min(axis=0), Xs.max(axis=0)),
            top_l=self.top_l if self.top_l is not None else default_top_l(len(anchors)), seed=seed, cvae=self.cvae_,
        ).run(int(self.episodes))
        self.history_ = loop.rows
        self.policy_ = loop.proposer.policy
        return unscale(loop.generated)


class CVAEGenerator(_LatentGenerator):
    """``"cvae"``: samples of the conditional VAE (``y = 1``) through Swift Hydra's reward-based
    selection (see :class:`_LatentGenerator`); ``2 · num_envs · horizon`` samples an episode.

    Parameters
    ----------
    estimator : object with ``predict_proba`` or ``decision_function``, or None
        The detector ``W`` of the deception term; fitted (a clone) on the real rows unless it is
        fitted already. ``None``: :func:`default_estimator`.
    episodes : int, default=4
    top_l : int or None, default=None
        Kept per episode; ``None`` = ``clip(4 · n_known_anomalies, 16, 128)``.
    lam, gamma : float, default=1.0, 0.9
    latent_dim, cvae_epochs : int, default=16, 60
    num_envs, horizon : int, default=64, 6
    feature_transform : {"auto", "yeo-johnson", "standard"}, default="auto"
    generated_weight : float, default=1.0
    device : str, default="cpu"
    n_jobs : int, default=1
        PyTorch threads.
    random_state : int, RandomState or None
    """

    name = "cvae"

    def __init__(
        self,
        estimator: Any = None,
        episodes: int = 4,
        top_l: int | None = None,
        lam: float = 1.0,
        gamma: float = 0.9,
        latent_dim: int = 16,
        cvae_epochs: int = 60,
        num_envs: int = 64,
        horizon: int = 6,
        feature_transform: str = "auto",
        generated_weight: float = 1.0,
        device: str = "cpu",
        n_jobs: int = 1,
        random_state: Any = None,
    ) -> None:
        self.estimator = estimator
        self.episodes = episodes
        self.top_l = top_l
        self.lam = lam
        self.gamma = gamma
        self.latent_dim = latent_dim
        self.cvae_epochs = cvae_epochs
        self.num_envs = num_envs
        self.horizon = horizon
        self.feature_transform = feature_transform
        self.generated_weight = generated_weight
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _param_checks(self):
        checks = self._common_checks()
        checks["feature_transform"] = self.feature_transform in ("auto", "yeo-johnson", "standard")
        return checks


class RLGenerator(CVAEGenerator):
    """``"rl"``: Swift Hydra's agent. A PPO agent walks the C-VAE's latent space from the known
    anomalies' codes, rewarded against ``estimator`` (see :class:`_LatentGenerator`); its
    rollouts go through the same selection as ``"cvae"``.

    Parameters: those of :class:`CVAEGenerator`, and ``ppo_iterations`` (default 8), the PPO
    iterations per episode.
    """

    name = "rl"

    def __init__(
        self,
        estimator: Any = None,
        episodes: int = 4,
        top_l: int | None = None,
        lam: float = 1.0,
        gamma: float = 0.9,
        latent_dim: int = 16,
        cvae_epochs: int = 60,
        num_envs: int = 64,
        horizon: int = 6,
        ppo_iterations: int = 8,
        feature_transform: str = "auto",
        generated_weight: float = 1.0,
        device: str = "cpu",
        n_jobs: int = 1,
        random_state: Any = None,
    ) -> None:
        super().__init__(
            estimator=estimator, episodes=episodes, top_l=top_l, lam=lam, gamma=gamma,
            latent_dim=latent_dim, cvae_epochs=cvae_epochs, num_envs=num_envs, horizon=horizon,
            feature_transform=feature_transform, generated_weight=generated_weight, device=device,
            n_jobs=n_jobs, random_state=random_state,
        )
        self.ppo_iterations = ppo_iterations

    def _param_checks(self):
        checks = super()._param_checks()
        checks["ppo_iterations"] = _is_int(self.ppo_iterations, 1)
        return checks


# ------------------------------------------------------------------ weights through a pipeline
class GeneratedWeightsWarning(UserWarning):
    """A generator ran in a plain ``imblearn.pipeline.Pipeline``, which drops ``sample_weight_``.

    Issued once per generator class and process (a cross-validation does not repeat it); silence
    it with ``warnings.filterwarnings("ignore", category=GeneratedWeightsWarning)`` to fit with
    every row at weight 1 on purpose.
    """


#: generator classes that have warned about a plain imbalanced-learn pipeline (once each)
_WARNED_PLAIN_PIPELINE: set[type] = set()


def _in_plain_imblearn_pipeline() -> bool:
    """Whether the nearest pipeline fitting this sampler (``Pipeline._fit`` up the call stack) is
    an imbalanced-learn ``Pipeline`` other than :class:`WeightedPipeline`."""
    frame = sys._getframe(1)
    for _ in range(50):
        if frame is None:
            return False
        if frame.f_code.co_name == "_fit":
            owner = frame.f_locals.get("self")
            if isinstance(owner, _ImbPipeline):
                return not isinstance(owner, WeightedPipeline)
        frame = frame.f_back
    return False


def _n_rows(X: Any) -> int:
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None else len(X)


class WeightedPipeline(_ImbPipeline):
    """An ``imblearn.pipeline.Pipeline`` that passes the generators' weights to the final step.

    Same parameters and behaviour as imbalanced-learn's ``Pipeline``, plus: after the samplers
    ran, the final estimator is fitted with ``sample_weight=`` the weights of its training rows,
    1.0 for a real row and ``sample_weight_`` of the generator for a generated one. The result is
    what ``clf.fit(X_res, y_res, sample_weight=gen.sample_weight_)`` gives by hand::

        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler
        from swifthydra.generators import make_generator, make_weighted_pipeline

        pipe = make_weighted_pipeline(StandardScaler(), make_generator("nngmix", random_state=0),
                                      LogisticRegression())
        pipe.fit(X, y)   # generated rows reach LogisticRegression.fit with their small weights

    * The weights reach the final step's ``fit`` (and its ``fit_predict`` / ``fit_transform``
      when those take ``sample_weight``), with or without metadata routing.
    * A final step whose ``fit`` takes no ``sample_weight`` (neither by name nor ``**kwargs``), or
      a nested scikit-learn ``Pipeline`` as final step, raises :class:`InvalidInputError` when a
      generated row weighs less than 1 (the weights would be lost); put the nested pipeline's
      steps into this one, or use ``imblearn.pipeline.Pipeline`` to fit every row at weight 1 on
      purpose. When every weight is 1 (``"none"``, no generated row) such a step is fitted
      without ``sample_weight``.
    * Weights the caller passes to the final step (``clf__sample_weight=w``, or ``sample_weight``
      requested through metadata routing), one per input row, weight the real rows; generated
      rows keep their own weights.
    * Other samplers may stand before a generator. After one, the weights follow the rows when
      that sampler records ``sample_indices_`` (the under-samplers); one that does not, after a
      generator, raises :class:`InvalidInputError`: put generators after such samplers.
    * Without a generator among its steps it is exactly ``imblearn.pipeline.Pipeline``.
    """

    def _check_method_params(self, method, props, **kwargs):
        routed = super()._check_method_params(method, props, **kwargs)
        if isinstance(routed, dict):
            return routed
        # metadata routing without metadata returns an object that makes a new, empty Bunch on
        # every access: make it one Bunch so that _fit can add the final step's weights to it
        return Bunch(**{name: routed[name] for name, step in self.steps if step is not None})

    def _fit(self, X, y=None, routed_params=None, **kwargs):
        n_rows = _n_rows(X)
        Xt, yt = super()._fit(X, y, routed_params, **kwargs)
        if routed_params is not None and self._final_estimator not in (None, "passthrough"):
            self._route_weights(n_rows, routed_params)
        return Xt, yt

    def _step_weights(self, n_rows: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(w, origin)`` for the final step's training rows: each row's generated weight (1.0
        for a real row) and the index of the input row it is (-1: generated; ``origin`` None
        when unknown). ``(None, None)`` without a generator."""
        w = np.ones(n_rows, dtype=np.float64)
        origin: np.ndarray | None = np.arange(n_rows)
        seen = False
        for name, step in self.steps[:-1]:
            if isinstance(step, BaseGenerator):
                gw = np.asarray(step.sample_weight_, dtype=np.float64)
                n_in = len(gw) - int(step.n_generated_)
                if w is None:  # after a sampler that does not say which rows it kept
                    w = np.ones(n_in, dtype=np.float64)
                if len(w) != n_in:
                    raise InvalidInputError(
                        f"step {name!r} received {n_in} rows, {len(w)} expected: a step before it "
                        "changed the number of rows without being a sampler."
                    )
                w = np.concatenate([w * gw[:n_in], gw[n_in:]])
                if origin is not None:
                    origin = np.concatenate([origin, np.full(len(gw) - n_in, -1)])
                seen = True
            elif hasattr(step, "fit_resample"):
                idx = getattr(step, "sample_indices_", None)
                if idx is not None and w is not None:
                    idx = np.asarray(idx)
                    w = w[idx]
                    origin = origin[idx] if origin is not None else None
                elif seen and w is not None and np.any(w != 1.0):
                    raise InvalidInputError(
                        f"sampler {name!r} ({type(step).__name__}) follows a generator and does not "
                        "record which rows it kept (sample_indices_), so the generated rows' "
                        "weights cannot follow them: put the generators after it."
                    )
                else:
                    w, origin = None, None
        return (w, origin) if seen else (None, None)

    def _route_weights(self, n_rows: int, routed_params: Any) -> None:
        w, origin = self._step_weights(n_rows)
        if w is None:
            return
        last_name, final = self.steps[-1]
        step_params = routed_params[last_name]
        from sklearn.pipeline import Pipeline as _SkPipeline

        supported = takes_sample_weight(final.fit) and not isinstance(final, _SkPipeline)
        user_given = any(
            "sample_weight" in (step_params.get(m) or {}) for m in ("fit", "fit_predict", "fit_transform")
        )
        if not supported:
            if np.all(w == 1.0) and not user_given:
                return  # nothing would be lost: fit as imbalanced-learn does
            what = ("a scikit-learn Pipeline: put its steps into this pipeline"
                    if isinstance(final, _SkPipeline)
                    else "its fit takes no sample_weight")
            raise InvalidInputError(
                f"the final step {last_name!r} ({type(final).__name__}) cannot take the generated "
                f"rows' weights, {what}; use a classifier whose fit takes sample_weight, or "
                "imblearn.pipeline.Pipeline to fit every row at weight 1 on purpose."
            )
        for method in ("fit", "fit_predict", "fit_transform"):
            if method != "fit" and not takes_sample_weight(getattr(final, method, None)):
                continue
            params = dict(step_params.get(method) or {})
            params["sample_weight"] = self._combine(w, origin, params.get("sample_weight"), n_rows)
            step_params[method] = params

    @staticmethod
    def _combine(w: np.ndarray, origin: np.ndarray | None, given: Any, n_rows: int) -> np.ndarray:
        if given is None:
            return w
        given = np.asarray(given, dtype=np.float64).reshape(-1)
        if len(given) != n_rows:
            raise InvalidInputError(
                f"sample_weight for the final step has {len(given)} values; give one per input "
                f"row ({n_rows}): the generated rows get their own weights."
            )
        if origin is None:
            raise InvalidInputError(
                "sample_weight for the final step cannot follow the rows through a sampler that "
                "does not record which rows it kept (sample_indices_)."
            )
        out = w.copy()
        real = origin >= 0
        out[real] *= given[origin[real]]
        return out


def make_weighted_pipeline(*steps: Any, memory: Any = None, verbose: bool = False) -> WeightedPipeline:
    """:class:`WeightedPipeline` from its steps, named as ``imblearn.pipeline.make_pipeline``
    names them (lower-case class names)::

        pipe = make_weighted_pipeline(StandardScaler(), make_generator("mixup", random_state=0),
                                      LogisticRegression())
    """
    named = _imb_make_pipeline(*steps, memory=memory, verbose=verbose)
    return WeightedPipeline(named.steps, memory=memory, verbose=verbose)
