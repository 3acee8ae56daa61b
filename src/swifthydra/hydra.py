"""SwiftHydra: the estimator that runs the self-reinforcing loop (docs/design.md §1).

Training, for rows ``X`` with weak labels ``y`` (1 = known anomaly, 0 = unlabeled):

1. **Episode 0.** Standardise the features and power-transform the heavily skewed ones; train
   the conditional β-VAE ``G`` and the large Mamba detector ``W`` on the real rows (its early
   stopping uses the held-out rows that also pick the best episode, when there are any). With no known anomaly, the top ``contamination`` rows
   of an IForest+ECOD rank average become pseudo-anomalies (``history_`` says so).
2. **Episodes 1..E.** A PPO agent walks the VAE's latent space from the known anomalies' codes;
   each visited point is decoded (``y = 1``) into a candidate and rewarded with
   ``λ γ^e ΔH + (1 − γ^e)(−log W)`` minus a penalty for landing inside dense normal data. The
   ``top_l`` accepted candidates (spread apart) join the training data as anomalies, with their
   total weight capped relative to the real anomalies; ``W`` and ``G`` are fine-tuned. With at
   least ``min_validation_anomalies`` known anomalies, the detector state with the best
   validation AUC (on held-out training rows) is kept and the loop stops after ``patience``
   episodes without improvement; with fewer, every episode runs and the last state is kept.
3. **Inference model.** A Mixture of Mamba Experts is trained on the final combined data (every
   real row, the held-out ones included, plus the kept generated anomalies), distilled from ``W``; it is what scores by default (``inference="mome"``).

Steps 1-2 are the paper's method, ``generator="rl"``. The default, ``generator="none"``, trains
``W`` on the real rows and goes straight to step 3 (no C-VAE, no episodes): on the full tables of
docs/benchmarks.md §12 the generation was level with it in accuracy, nowhere significantly better,
for twice the fit time. Ablations: ``generator="cvae"`` replaces the agent by plain VAE samples,
``"nngmix"`` and ``"mixup"`` by mixes of the known anomalies with their neighbours (same
reward-based selection and guard; the proposal and selection steps are those of
:mod:`swifthydra.generators`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.metrics import roc_auc_score
from sklearn.utils._param_validation import Interval, Options, StrOptions

from swifthydra._features import FeatureScaler
from swifthydra._scoring import contamination_threshold, sigmoid
from swifthydra._settings import (  # noqa: F401  (re-exported: swifthydra.hydra.GENERATION_DEFAULTS etc.)
    GENERATION_CONSTRAINTS,
    GENERATION_DEFAULTS,
    MODEL_KIND,
    MOVED,
    OWN_KEYS,
    legacy_params,
    moved_message,
    no_bool_ints,
)
from swifthydra._torch import torch_threads
from swifthydra._validation import check_not_constant, check_X, check_y, seed_from
from swifthydra.exceptions import (
    InvalidInputError,
    NotFittedError,
    SwiftHydraError,
    TrainingDivergedError,
)

_GENERATORS = ("rl", "cvae", "nngmix", "mixup", "none")
_LATENT_GENERATORS = ("rl", "cvae")  # the generators that train a C-VAE
_TRANSFORMS = ("auto", "yeo-johnson", "standard")
_INFERENCE = ("mome", "large")
#: The MoME's training inside SwiftHydra, before ``mome_params`` (docs/benchmarks.md §10); its
#: number of experts searched on 1,000 sampled rows, not 2,000 (version 0.3: a tenth less fit time,
#: level on the full tables, docs/benchmarks.md §10.17).
MOME_DEFAULTS = {"max_epochs": 10, "patience": 3, "gmm_max_rows": 1000}
# The large detector inside SwiftHydra, before ``detector_params``: without a validation set (one
# known anomaly) it stops once its training loss levels off instead of running every epoch (half
# the fit time of such fits, level in accuracy: docs/benchmarks.md §10.6), and it has one
# bidirectional Mamba layer instead of two (a third less fit time, level on the panel's standard
# cells and better on its unseen types: docs/benchmarks.md §10.8)
DETECTOR_DEFAULTS = {"loss_tol": 0.01, "n_layers": 1}
# prior_weight="auto": AUTO_PRIOR_WEIGHT * max(AUTO_PRIOR_FLOOR, 2 AUC - 1), the AUC being how well
# the density prior alone separates the known anomalies from the unlabeled rows (docs/design.md §10.1)
AUTO_PRIOR_WEIGHT = 2.0
AUTO_PRIOR_FLOOR = 0.1


@contextlib.contextmanager
def _stage(where: str) -> Iterator[None]:
    """Re-raise a :class:`TrainingDivergedError` naming the episode / stage of the loop."""
    try:
        yield
    except TrainingDivergedError as exc:
        raise TrainingDivergedError(f"Swift Hydra {where}: {exc}") from None


@contextlib.contextmanager
def _alongside(job, parallel: bool) -> Iterator[Any]:
    """Run ``job()`` on a second thread while the caller's block runs (``parallel``), or at once
    on this thread before it; yields a function returning the job's result (joining it).

    The two sides are independent models (the detector and the C-VAE), each with its own
    generators, and only the job touches torch's global RNG, so the results do not depend on
    ``parallel``. Each side runs single-threaded ops; the second core runs the other side
    (docs/design.md §4.4).
    """
    if not parallel:
        value = job()
        yield lambda: value
        return
    from concurrent.futures import ThreadPoolExecutor

    from swifthydra.detectors._training import single_threaded_ops

    # set once around both sides: each side's own set/restore then leaves it at one thread
    with single_threaded_ops(), ThreadPoolExecutor(1, thread_name_prefix="swifthydra") as pool:
        future = pool.submit(job)
        yield future.result


@dataclass
class _Rows:
    """The standardised training rows split for episode selection (``X_val`` may be empty)."""

    X_tr: np.ndarray
    y_tr: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray

    @property
    def anchors(self) -> np.ndarray:
        """The known anomalies the agent starts from."""
        return self.X_tr[self.y_tr == 1]

    @property
    def normals(self) -> np.ndarray:
        return self.X_tr[self.y_tr == 0]


class _NamesMovedParameters:
    """Construction with a parameter of before version 0.2 (a flat generation setting or
    ``n_experts``) raises one error naming its new place instead of Python's bare TypeError.

    It is ``__new__`` on a base class, so ``SwiftHydra.__init__`` keeps the explicit signature
    scikit-learn reads (``get_params``, ``clone``) and takes no ``**kwargs``."""

    def __new__(cls, *args: Any, **kwargs: Any):
        moved = {k: v for k, v in kwargs.items() if k in MOVED}
        if moved:
            raise InvalidInputError(moved_message(moved))
        return super().__new__(cls)


class SwiftHydra(OutlierMixin, BaseEstimator, _NamesMovedParameters):
    """Swift Hydra anomaly detector: self-reinforcing generation of hard anomalies, Mamba models.

    Follows PyOD's detector contract: ``fit(X, y=None)``, ``decision_function`` (higher = more
    anomalous), ``predict`` (0/1 by ``threshold_``), ``predict_proba``, ``decision_scores_``,
    ``labels_``, ``threshold_``.

    Parameters
    ----------
    episodes : int, default=4
        Generation episodes after episode 0 (``E``), with a generator other than ``"none"``.
    generator : {"none", "rl", "cvae", "nngmix", "mixup"}, default="none"
        How the candidate anomalies of each episode are proposed. ``"rl"`` is the paper's method:
        the PPO agent's rollouts in the C-VAE's latent space. ``"cvae"`` samples the C-VAE,
        ``"nngmix"`` and ``"mixup"`` mix the known anomalies with unlabeled rows and with each
        other (no C-VAE is trained for these two); every proposal goes through the same
        reward-based selection (:mod:`swifthydra.generators`, whose samplers run the same steps
        around any detector). ``"none"`` (the default) generates nothing: on the full tables of
        docs/benchmarks.md §12 (31 ADBench datasets, seeds 1-3, 1 % and 5 % labels and unseen
        anomaly types) ``"rl"`` was level with it in accuracy, nowhere significantly better, for
        twice the fit time.
    generation_params : dict or None
        The generation loop's settings, over :data:`GENERATION_DEFAULTS` (every key, its default
        and what it controls is listed there): ``top_l`` (kept per episode), ``gamma`` and
        ``lam`` (the reward's schedule and diversity scale), ``generated_weight``, ``deception``
        (``"log"``, the paper's ``-log W``, or ``"boundary"``), the agent's ``ppo_iterations``,
        ``num_envs`` and ``horizon``, the C-VAE's ``latent_dim`` and ``cvae_epochs``,
        ``finetune_epochs`` (W and G per episode), and the choice of the best episode:
        ``validation_fraction`` of the rows held out when there are at least
        ``min_validation_anomalies`` known anomalies, ``patience`` episodes without a better
        validation AUC before the loop stops (docs/design.md §6-§8.4). Unknown keys are an error.
    feature_transform : {"auto", "yeo-johnson", "standard"}, default="auto"
        Input preparation after standardisation: ``"auto"`` applies a Yeo-Johnson power transform
        to heavily skewed columns (``|skewness| > 2``, more than two distinct values), which
        neural detectors need and trees do not; ``"yeo-johnson"`` to every non-binary column;
        ``"standard"`` only standardises. See :mod:`swifthydra._power` and docs/design.md §2.2.
    detector_params : dict or None
        Extra parameters of the large :class:`~swifthydra.detectors.MambaDetector`, over
        :data:`DETECTOR_DEFAULTS`: one layer (``n_layers=1``; ``{"n_layers": 2}`` is the deeper
        detector of before version 0.2, docs/benchmarks.md §10.8), and ``loss_tol=0.01`` (with one
        known anomaly, no validation set, training stops once the loss levels off;
        ``{"loss_tol": None}`` runs every epoch: docs/benchmarks.md §10.6).
    mome_params : dict or None
        Extra parameters of the :class:`~swifthydra.detectors.MoME`, over :data:`MOME_DEFAULTS`;
        e.g. ``n_experts`` (default ``"auto"``: data-driven,
        :func:`~swifthydra.nn.moe.choose_num_experts`).
        ``random_state``, ``device`` and ``contamination`` are SwiftHydra's own and refused in
        both dicts.
    inference : {"mome", "large"}, default="mome"
        Which model scores: the mixture of experts or the large detector.
    distill : bool, default=True
        Distil the MoME from the large detector's scores.
    prior_weight : float or "auto", default="auto"
        Weight of the k-NN density prior added to the network's score: the standardised log
        distance of a row to its 5 nearest unlabeled training rows (a sample of at most 2,048),
        times the weight times the spread (interquartile range) of the network's scores on the
        unlabeled training rows. It carries what labels cannot teach: an anomaly of a kind
        nobody labelled still lies far from the normal data. ``"auto"``: ``2 max(0.1, 2 AUC - 1)``,
        the AUC being how well the prior alone separates the known anomalies from the unlabeled
        rows (``prior_auc_``): where the known anomalies are not far from the normal rows the
        prior keeps a small weight (0.2), for the kinds that are; and the part of a row's term
        beyond every unlabeled training row's counts at the full weight 2 (a row unlike any the
        networks learned from). ``0`` scores with the network alone (docs/design.md §10.1).
    max_samples : int or None, default=100000
        At most this many rows train the networks: every known anomaly (at most half of them
        when there are more) and a seeded random sample of the other rows. The features'
        scaling is fitted on every row, and ``decision_scores_`` covers every row. Each network
        sees at most ``max_steps_per_epoch`` batches per epoch anyway, so a larger table would
        only cost time scoring its training rows (docs/design.md §4.4). ``None``: every row.
    contamination : float, default=0.1
        Expected share of anomalies: sets ``threshold_`` and the pseudo-label count.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    random_state : int, RandomState or None, default=None
        Fixes every random choice: same seed, same scores on the same machine.
    n_jobs : int, default=1
        Threads while fitting and scoring (-1: all cores). Every training op runs on one
        intra-op thread (many small ops: a thread pool only adds waiting, and a steep slowdown
        when other processes share the cores); with ``n_jobs >= 2`` the second thread trains the
        C-VAE beside the large detector, and scoring spreads whole batches over ``n_jobs``
        threads. The scores do not depend on ``n_jobs`` (docs/design.md §4.4).
    verbose : int, default=0
        0 silent, 1 progress bar, 2 one line per episode.

    Fifteen parameters in all: the loop's length and kind (``episodes``, ``generator``), four
    groups as dicts (``generation_params``, ``detector_params``, ``mome_params``, and the
    preparation ``feature_transform``), the scoring model (``inference``, ``distill``,
    ``prior_weight``), and the run (``max_samples``, ``contamination``, ``device``,
    ``random_state``, ``n_jobs``, ``verbose``). Before version 0.2 the generation settings were
    top-level parameters; passing one there is an error naming its new place, and model files
    saved then load unchanged.

    Attributes
    ----------
    detector_ : MambaDetector
        The large detector (state of the best episode).
    mome_ : MoME or None
        The mixture of experts (``None`` with ``inference="large"``).
    cvae_ : CVAE or None
    policy_ : GaussianPolicy or None
    power_transform_ : PowerGate
        Which standardised columns were power-transformed (``columns``) and the constants.
    generated_ : ndarray of shape (n_generated, n_features)
        Generated anomalies kept for training, in the input's units.
    generation_ : dict
        The generation settings in force (:data:`GENERATION_DEFAULTS` with ``generation_params``).
    history_ : list of dict
        Per episode: reward terms, anomaly-set entropy, candidates generated and kept, detector
        loss, validation AUC, seconds. ``history_[0]["pseudo_labels"]`` tells whether
        pseudo-labels were used.
    used_pseudo_labels_ : bool
    best_episode_ : int
    prior_ : DensityPrior or None
        The density prior (``None`` with ``prior_weight=0``).
    prior_auc_ : float
        How well the prior alone separates the known anomalies from the unlabeled training rows
        (NaN without a prior).
    prior_weight_ : float
        The weight used (``prior_weight``, or what ``"auto"`` chose; 0 without a prior).
    prior_scale_ : float
        What the prior's standardised term is multiplied by before it is added to the score:
        ``prior_weight_`` times the spread of the network's scores on the unlabeled rows.
    prior_tail_from_, prior_tail_scale_ : float
        With ``prior_weight="auto"`` below the full weight: the largest term of an unlabeled
        training row, and what the term's excess over it is multiplied by (the rest of the full
        weight 2 times the same spread); ``inf`` and 0 otherwise.
    decision_scores_, labels_, threshold_, n_features_in_
        As in PyOD.
    feature_names_in_ : ndarray of str
        The column names when fitted on a DataFrame whose column names are all strings (saved
        with the model); scoring a DataFrame with other names, or in another order, is an error.
    """

    _parameter_constraints: dict = {  # noqa: RUF012 - scikit-learn's declarative validation
        "episodes": [Interval(Integral, 0, None, closed="left")],
        "generator": [StrOptions(set(_GENERATORS))],
        "generation_params": [dict, None],
        "feature_transform": [StrOptions(set(_TRANSFORMS))],
        "detector_params": [dict, None],
        "mome_params": [dict, None],
        "inference": [StrOptions(set(_INFERENCE))],
        "distill": ["boolean"],
        "prior_weight": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "max_samples": [Interval(Integral, 2, None, closed="left"), None],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
        "device": [str, None],
        "random_state": ["random_state"],
        "n_jobs": [Interval(Integral, 1, None, closed="left"), Options(Integral, {-1})],
        "verbose": [Interval(Integral, 0, None, closed="left"), "boolean"],
    }

    def __init__(
        self,
        episodes: int = 4,
        generator: str = "none",
        generation_params: dict | None = None,
        feature_transform: str = "auto",
        detector_params: dict | None = None,
        mome_params: dict | None = None,
        inference: str = "mome",
        distill: bool = True,
        prior_weight: float | str = "auto",
        max_samples: int | None = 100_000,
        contamination: float = 0.1,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        n_jobs: int = 1,
        verbose: int = 0,
    ) -> None:
        self.episodes = episodes
        self.generator = generator
        self.generation_params = generation_params
        self.feature_transform = feature_transform
        self.detector_params = detector_params
        self.mome_params = mome_params
        self.inference = inference
        self.distill = distill
        self.prior_weight = prior_weight
        self.max_samples = max_samples
        self.contamination = contamination
        self.device = device
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    # ----------------------------------------------------------------------------- validation
    def _validate_params(self) -> None:
        """Check the parameters against :attr:`_parameter_constraints` (scikit-learn's
        declarative validation), as one :class:`InvalidInputError` naming the parameter."""
        from sklearn.utils._param_validation import InvalidParameterError

        try:
            super()._validate_params()
        except InvalidParameterError as exc:
            raise InvalidInputError(str(exc)) from None
        no_bool_ints(self._parameter_constraints, self.get_params(deep=False), "The {!r} parameter of SwiftHydra")
        self._generation()  # the generation_params dict: known keys, values in range
        for name in ("detector_params", "mome_params"):
            own = [k for k in OWN_KEYS if k in (getattr(self, name) or {})]
            if own:
                raise InvalidInputError(
                    f"{name} sets {own}, which SwiftHydra sets itself: pass {own[0]}= to SwiftHydra instead."
                )

    def _generation(self) -> dict[str, Any]:
        """The generation settings in force: :data:`GENERATION_DEFAULTS` with
        ``generation_params`` over them, checked against :data:`GENERATION_CONSTRAINTS`."""
        from sklearn.utils._param_validation import (
            InvalidParameterError,
            validate_parameter_constraints,
        )

        given = dict(self.generation_params or {})
        unknown = sorted(str(k) for k in given if k not in GENERATION_DEFAULTS)
        if unknown:
            raise InvalidInputError(
                f"generation_params has unknown keys {unknown}: it takes {', '.join(GENERATION_DEFAULTS)}."
            )
        g = {**GENERATION_DEFAULTS, **given}
        try:
            validate_parameter_constraints(GENERATION_CONSTRAINTS, g, caller_name="generation_params")
        except InvalidParameterError as exc:
            raise InvalidInputError(str(exc).replace("parameter of generation_params", "key of generation_params")) from None
        no_bool_ints(GENERATION_CONSTRAINTS, g, "The {!r} key of generation_params")
        return g

    # ------------------------------------------------------------------------------ helpers
    def _scale(self, X: np.ndarray) -> np.ndarray:
        """Rows as the networks see them (:class:`~swifthydra._features.FeatureScaler`)."""
        return self.scaler_.transform(X)

    def _unscale(self, Z: np.ndarray) -> np.ndarray:
        return self.scaler_.inverse_transform(Z)

    # the scaler's fitted parts, under the names SwiftHydra has always had
    center_ = property(lambda self: self.scaler_.center_, doc="Training mean of each column.")
    scale_ = property(lambda self: self.scaler_.scale_, doc="Training std of each column (1 if constant).")
    power_transform_ = property(lambda self: self.scaler_.power_, doc="The Yeo-Johnson gate of skewed columns.")

    def _make_detector(self, seed: int):
        from swifthydra.detectors import MambaDetector

        params = {"contamination": self.contamination, "device": self.device, **DETECTOR_DEFAULTS}
        params.update(self.detector_params or {})
        params["random_state"] = seed
        return MambaDetector(**params)

    def _make_mome(self, seed: int):
        from swifthydra.detectors import MoME

        params = {
            "contamination": self.contamination,
            "device": self.device,
            "n_experts": "auto",
            **MOME_DEFAULTS,
        }
        params.update(self.mome_params or {})
        params["random_state"] = seed
        return MoME(**params)

    def _data_only_beside(self) -> bool:
        """Run :meth:`_data_only_parts` on a second thread: with two or more threads (``n_jobs``)
        on CPU, unless the C-VAE already takes that thread (docs/design.md §4.4)."""
        from swifthydra._torch import resolve_device

        return (
            not self._side_by_side()
            and torch.get_num_threads() >= 2
            and resolve_device(self.device).type == "cpu"
        )

    def _data_only_parts(self, Z: np.ndarray, y: np.ndarray, X_fit: np.ndarray, seed: int, experts: bool):
        """The parts of a fit that need the data but none of the networks: the density prior
        fitted on the unlabeled rows, its term on every training row, and (``experts``: when no
        generated rows will join the MoME's training rows) the MoME, its number of experts searched
        on the rows it will train on. ``(prior or None, term or None, MoME or None)``."""
        from swifthydra.detectors.prior import DensityPrior

        prior = DensityPrior.fit_unlabeled(Z, y, seed) if self.prior_weight != 0 else None
        term = None if prior is None else prior.term(Z)
        mome = self._make_mome(seed).search_experts(X_fit) if experts and self.inference == "mome" else None
        return prior, term, mome

    def _side_by_side(self) -> bool:
        """Train the detector and the C-VAE on two threads: with two or more threads (``n_jobs``)
        on CPU and a C-VAE to train (docs/design.md §4.4)."""
        from swifthydra._torch import resolve_device

        return (
            self.generator in _LATENT_GENERATORS
            and torch.get_num_threads() >= 2
            and resolve_device(self.device).type == "cpu"
        )

    @staticmethod
    def _auc(y: np.ndarray, s: np.ndarray) -> float:
        if y.min() == y.max():
            return float("nan")
        return float(roc_auc_score(y, s))

    # ---------------------------------------------------------------------------------- fit
    def fit(self, X: Any, y: Any = None, *, callbacks: Any = None) -> SwiftHydra:
        """Run the self-reinforcing loop and train the inference model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), optional
            1 = known anomaly, 0 = unlabeled. ``None`` or all zeros: unsupervised, with
            pseudo-labels.
        callbacks : Callback or list of Callback, optional
            Told of every episode and of every model's epochs (:mod:`swifthydra.callbacks`);
            ``verbose`` adds a progress bar (1) or one printed line per episode (2).

        Returns
        -------
        self
        """
        from swifthydra._validation import check_params_keys, frame_feature_names
        from swifthydra.detectors import MambaDetector, MoME

        self._validate_params()
        check_params_keys("detector_params", self.detector_params, MambaDetector)
        check_params_keys("mome_params", self.mome_params, MoME)
        self.generation_ = self._generation()
        names = frame_feature_names(X)  # a DataFrame's column names, when all are strings
        vars(self).pop("feature_names_in_", None)
        from swifthydra.callbacks import PrintLog, ProgressBar, as_callback_list

        bar = ProgressBar() if self.verbose == 1 else None
        cb = as_callback_list(callbacks, bar, PrintLog(epochs=False, episode_keys=_ROW_KEYS) if self.verbose >= 2 else None)
        try:
            with torch_threads(self.n_jobs):
                self._fit(X, y, cb)
        finally:
            if bar is not None:
                bar.close()
        if names is not None:
            self.feature_names_in_ = names
        return self

    def _fit(self, X: Any, y: Any, cb) -> SwiftHydra:
        """The method, step by step (docs/design.md §1); each step is one method below."""
        X, y, seed = self._check_training_data(X, y)
        Z, Xs = self._fit_features(X, seed)  # §2.1-§2.2: standardise once, power-transform skewed columns
        y = self._weak_labels(X, y, seed)  # §2.3: pseudo-labels when no anomaly is labelled
        X_fit, y_fit = self._sample(Xs, y, seed)  # §4.4: at most max_samples rows train the networks
        data = self._hold_out(X_fit, y_fit, seed)  # §8.4: rows that pick the best episode, when enough
        total = 1 + (0 if self.generator == "none" else self.episodes)
        self.history_ = []
        t0 = time.perf_counter()
        generating = self.generator != "none" and self.episodes > 0
        # §4.4: what needs the data alone (the density prior; without generated rows, the MoME's
        # number of experts) runs on a second thread beside the networks when there is one
        data_only = functools.partial(self._data_only_parts, Z, y, X_fit, seed, not generating)
        with _alongside(data_only, self._data_only_beside()) as parts:
            self._episode_zero(data, seed, total, cb)  # §4, §5: W and G on the real rows
            generated = np.empty((0, X.shape[1]), dtype=np.float32)
            self.policy_ = None
            self.best_episode_ = 0  # a fitted attribute after every fit, also with no episode to run
            if generating:
                generated = self._self_reinforce(data, seed, total, cb)  # §6-§8: episodes 1..E
            prior, prior_term, mome = parts()
        self.generated_ = self._unscale(generated)
        self._anchors = data.anchors
        self._fit_inference_model(X_fit, y_fit, generated, seed, cb, mome)  # §9: the MoME, distilled from W
        raw = self._score_scaled(Xs)
        self._fit_prior(prior, Z, y, raw, prior_term)  # §10.1: the k-NN density prior, scaled to the scores
        self.fit_seconds_ = time.perf_counter() - t0
        self.decision_scores_ = raw if self.prior_ is None else raw + self._prior_part(prior_term)  # §10
        self.threshold_ = contamination_threshold(self.decision_scores_, self.contamination)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)
        return self

    def _check_training_data(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray, int]:
        X = check_X(X, name="X", min_rows=8)
        check_not_constant(X)
        y = np.zeros(X.shape[0], dtype=np.int64) if y is None else check_y(y, X.shape[0])
        if y.sum() == X.shape[0]:
            raise InvalidInputError(
                "every row is labelled an anomaly: pass unlabeled (mostly normal) rows with label 0 too."
            )
        self.n_features_in_ = X.shape[1]
        return X, y, seed_from(self.random_state)

    def _fit_features(self, X: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``(Z, Xs)``: the rows standardised once (float64; the density prior's space) and, from
        them, the networks' input (power-transformed, float32)."""
        self.scaler_, Z = FeatureScaler.fit_standardise(X, self.feature_transform, seed)
        Xs = self.scaler_.network_input(Z)
        if not np.isfinite(Xs).all():
            raise InvalidInputError("X is too large to standardise in float32: rescale the data.")
        return Z, Xs

    def _weak_labels(self, X: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
        from swifthydra.pseudo import pseudo_labels

        self.used_pseudo_labels_ = bool(y.sum() == 0)
        return pseudo_labels(X, self.contamination, random_state=seed) if self.used_pseudo_labels_ else y

    def _sample(self, Xs: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """At most ``max_samples`` rows: every known anomaly (at most half the sample) and a
        seeded sample of the others, in their original order."""
        if self.max_samples is None or len(y) <= self.max_samples:
            return Xs, y
        from swifthydra.detectors import sample_rows

        n = int(self.max_samples)
        idx = sample_rows(y, n, np.random.RandomState(seed), max_known=n // 2)
        return Xs[idx], y[idx]

    def _hold_out(self, Xs: np.ndarray, y: np.ndarray, seed: int) -> _Rows:
        """Hold out rows to choose the best episode (the one rule,
        :func:`~swifthydra.generators._episodes.hold_out`)."""
        from swifthydra.generators._episodes import hold_out

        train_idx, val_idx = hold_out(
            y, fraction=float(self.generation_["validation_fraction"]),
            min_anomalies=int(self.generation_["min_validation_anomalies"]),
            enabled=self.episodes > 0 and self.generator != "none", seed=seed,
        )
        return _Rows(Xs[train_idx], y[train_idx], Xs[val_idx], y[val_idx])

    def _episode_zero(self, data: _Rows, seed: int, total: int, cb) -> None:
        from swifthydra.generative import CVAE

        cb.on_episode_begin(0, total)
        t0 = time.perf_counter()
        # the held-out rows also stop the detector's training early, so all of X_tr trains it
        eval_set = (data.X_val, data.y_val) if len(data.y_val) else None
        detector = self._make_detector(seed)
        self.cvae_ = None
        if self.generator in _LATENT_GENERATORS:
            # built here, before the detector may start on another thread: building draws from
            # torch's global RNG, training the C-VAE only from its own generators
            self.cvae_ = CVAE(
                latent_dim=self.generation_["latent_dim"], epochs=self.generation_["cvae_epochs"], random_state=seed,
                device=self.device,
            ).build(data.X_tr)

        def train_detector():
            with _stage("episode 0 (training the large detector)"):
                return detector.fit(data.X_tr, data.y_tr, eval_set=eval_set, callbacks=cb)

        with _alongside(train_detector, self._side_by_side()) as trained:
            if self.cvae_ is not None:
                with _stage("episode 0 (training the C-VAE)"):
                    self.cvae_.fit(data.X_tr, data.y_tr, callbacks=cb)
            self.detector_ = trained()
        self.history_.append(
            {
                "episode": 0,
                "pseudo_labels": self.used_pseudo_labels_,
                "known_anomalies": int(data.y_tr.sum()),
                "candidates": 0,
                "kept": 0,
                "generated_total": 0,
                "detector_loss": _last(self.detector_.history_, "train_loss"),
                "val_auc": self._val_auc(data),
                "seconds": time.perf_counter() - t0,
            }
        )
        cb.on_episode_end(0, total, self.history_[-1])

    def _fit_inference_model(self, Xs, y, generated, seed: int, cb, mome=None) -> None:
        """The MoME learns from every real row (the held-out ones included) and the kept
        generated anomalies, distilled from the large detector."""
        X_comb, y_comb, w_comb = self._combined(Xs, y, generated)
        self.mome_ = None
        self.mome_seconds_ = 0.0
        if self.inference == "mome":
            teacher = self.detector_.decision_function(X_comb) if self.distill else None
            t1 = time.perf_counter()
            with _stage("inference model (training the mixture of experts after the last episode)"):
                self.mome_ = (mome if mome is not None else self._make_mome(seed)).fit(
                    X_comb, y_comb, sample_weight=w_comb, teacher_scores=teacher, callbacks=cb
                )
            self.mome_seconds_ = time.perf_counter() - t1

    def _val_auc(self, data: _Rows) -> float:
        return self._auc(data.y_val, self.detector_.decision_function(data.X_val)) if len(data.y_val) else float("nan")

    def _combined(self, X_tr, y_tr, generated):
        from swifthydra.generators._core import generated_weight

        n_real = max(int(y_tr.sum()), 1)
        X_comb = np.vstack([X_tr, generated]).astype(np.float32)
        y_comb = np.concatenate([y_tr, np.ones(len(generated), dtype=np.int64)])
        w = np.ones(len(y_comb))
        if len(generated):
            w[len(y_tr):] = generated_weight(n_real, len(generated), float(self.generation_["generated_weight"]))
        return X_comb, y_comb, w

    def _detector_probability(self, x: torch.Tensor) -> torch.Tensor:
        """``W(x)`` for the reward: the large detector's anomaly probability of standardised rows."""
        p = self.detector_.predict_proba(x.detach().to("cpu", torch.float32).numpy())[:, 1]
        return torch.as_tensor(p, dtype=torch.float32, device=x.device)

    def _self_reinforce(self, data: _Rows, seed: int, total: int, cb) -> np.ndarray:
        """Episodes 1..E (the loop of :mod:`swifthydra.generators._episodes`); returns the
        generated rows of the episode that is kept (§8.4)."""
        from swifthydra.generators._core import LatentProposer, default_top_l, make_reward
        from swifthydra.generators._episodes import Episodes

        what = {"rl": "training the PPO agent", "cvae": "sampling the C-VAE"}.get(self.generator, "mixing anomalies")
        g = self.generation_
        loop = Episodes(
            reward=make_reward(data.anchors, data.normals, self._detector_probability,
                               lam=g["lam"], gamma=g["gamma"], seed=seed, deception_mode=g["deception"]),
            proposer=LatentProposer(self.generator, num_envs=int(g["num_envs"]), horizon=int(g["horizon"]),
                                    ppo_iterations=int(g["ppo_iterations"])),
            anchors=data.anchors, normals=data.normals,
            bounds=(data.X_tr.min(axis=0), data.X_tr.max(axis=0)),
            top_l=g["top_l"] if g["top_l"] is not None else default_top_l(len(data.anchors)),
            seed=seed, patience=int(g["patience"]), cvae=self.cvae_, callbacks=cb,
            reward_update=self._reward_update, stage=lambda e: _stage(f"episode {e} ({what})"),
            best_score=self.history_[0]["val_auc"],
        )
        # state_dict() returns copies: the kept state does not follow later fine-tuning
        loop.best = (self.detector_.state_dict(), loop.generated)
        loop.run(
            self.episodes,
            after_keep=lambda e, generated: self._finetune(e, data, generated, cb),
            evaluate=lambda: self._val_auc(data),
            snapshot=lambda: (self.detector_.state_dict(), loop.generated),
            record=lambda episode: self._episode_row(episode, data, loop),
            total=total,
        )
        self.history_.extend(loop.rows)
        self.best_episode_ = loop.best_episode
        self.policy_ = loop.proposer.policy
        state, generated = loop.best
        self.detector_.load_state_dict(state)
        self.detector_.set_threshold(self._combined(data.X_tr, data.y_tr, generated)[0])
        return generated

    def _reward_update(self, e: int) -> dict[str, Any]:
        """What the reward learns at the start of episode ``e`` besides the anomaly set: the
        current detector (and, with ``deception="boundary"``, its threshold logit) (§7)."""
        extra: dict[str, Any] = {"detector": self._detector_probability}
        if self.generation_["deception"] == "boundary":  # the bump sits on the detector's threshold logit
            extra["boundary_center"] = float(self.detector_.threshold_)
            extra["boundary_width"] = max(float(np.std(self.detector_.decision_scores_)), 1e-3)
        return extra

    def _finetune(self, e: int, data: _Rows, generated: np.ndarray, cb) -> None:
        """W and G fine-tuned on the real rows and every kept generated row (§8.3), side by side
        with two threads."""
        epochs = int(self.generation_["finetune_epochs"])
        if epochs <= 0:
            return
        X_comb, y_comb, w_comb = self._combined(data.X_tr, data.y_tr, generated)

        def finetune_detector():
            with _stage(f"episode {e} (fine-tuning the large detector)"):
                self.detector_.partial_fit(
                    X_comb, y_comb, sample_weight=w_comb, epochs=epochs, callbacks=cb
                )

        with _alongside(finetune_detector, self._side_by_side()) as finetuned:
            if self.cvae_ is not None:  # "mixup" and "nngmix" have no C-VAE
                with _stage(f"episode {e} (fine-tuning the C-VAE)"):
                    self.cvae_.partial_fit(X_comb, y_comb, epochs=epochs, callbacks=cb)
            finetuned()

    def _episode_row(self, episode, data: _Rows, loop) -> dict[str, Any]:
        """The ``history_`` row of one episode (§8.5)."""
        from swifthydra.rl.reward import kl_entropy

        return {
            "episode": episode.index,
            "pseudo_labels": self.used_pseudo_labels_,
            "candidates": int(episode.candidates.shape[0]),
            "accepted": int(episode.terms["accepted"].sum()),
            "kept": int(len(episode.kept)),
            "generated_total": int(len(episode.generated)),
            "weights_diversity": loop.reward.weights[0],
            "weights_deception": loop.reward.weights[1],
            "reward_mean_kept": episode.kept_mean("reward"),
            "entropy_gain_mean_kept": episode.kept_mean("entropy_gain"),
            "deception_mean_kept": episode.kept_mean("deception"),
            "w_mean_kept": episode.kept_mean("w"),
            "anomaly_set_entropy": _safe(kl_entropy, np.vstack([data.anchors, episode.generated])),
            "detector_loss": _last(self.detector_.history_, "train_loss"),
            "val_auc": episode.score,
            "seconds": episode.seconds,
            **episode.stats,
        }

    # ------------------------------------------------------------------------------ scoring
    def _check_fitted(self) -> None:
        if not hasattr(self, "detector_"):
            raise NotFittedError("This SwiftHydra is not fitted yet: call fit(X, y) first.")

    @property
    def scorer_(self):
        """The network that scores: the mixture of experts, or the large detector when
        ``inference="large"``."""
        self._check_fitted()
        return self.mome_ if self.mome_ is not None else self.detector_

    def _score_scaled(self, Xs: np.ndarray) -> np.ndarray:
        """The network's scores of rows in its own space (without the density prior)."""
        scores = self.scorer_.decision_function(Xs)
        if not np.isfinite(scores).all():
            raise SwiftHydraError("the model produced non-finite scores; please report this with the data shape.")
        return scores

    def _with_prior(self, scores: np.ndarray, Z: np.ndarray) -> np.ndarray:
        """The network's ``scores`` of rows ``Z`` (standardised, ``scaler_.standardise``'s output)
        plus the weighted density prior, which lives in that space, before the power transform
        (docs/design.md §10.1)."""
        if getattr(self, "prior_", None) is None:
            return scores
        return scores + self._prior_part(self.prior_.term(Z))

    def _prior_part(self, term):
        """The prior's part of the score from its term (numpy or torch; docs/design.md §10.1)."""
        from swifthydra.detectors.prior import prior_part

        return prior_part(term, self.prior_scale_, self.prior_tail_scale_, self.prior_tail_from_)

    def _fit_prior(self, prior, Z: np.ndarray, y: np.ndarray, raw: np.ndarray, term: np.ndarray) -> None:
        """Weigh the k-NN density ``prior`` (fitted on the unlabeled rows by
        :meth:`_data_only_parts`; ``None`` without one) and scale it to the network's scores:
        ``prior_weight`` times the interquartile range of the unlabeled rows' scores. With
        ``prior_weight="auto"`` and a weight below the rule's full :data:`AUTO_PRIOR_WEIGHT`, a row
        whose ``term`` exceeds every unlabeled training row's (``prior_tail_from_``) counts the excess
        at the full weight (``prior_tail_scale_``). The prior's rows are standardised, not
        power-transformed: the transform shrinks the long tails where anomalies lie (docs/design.md
        §10.1)."""
        from swifthydra.detectors.prior import spread

        self.prior_, self.prior_scale_ = None, 0.0
        self.prior_tail_scale_, self.prior_tail_from_ = 0.0, float("inf")
        self.prior_auc_, self.prior_weight_ = float("nan"), 0.0
        y = np.asarray(y)
        unlabeled = np.flatnonzero(y == 0)
        if prior is None:
            return
        known = np.flatnonzero(y == 1)
        self.prior_auc_ = prior.separation(Z[known])
        if self.prior_weight == "auto":
            separation = 2.0 * self.prior_auc_ - 1.0 if np.isfinite(self.prior_auc_) else 0.5
            weight = AUTO_PRIOR_WEIGHT * max(AUTO_PRIOR_FLOOR, separation)
        else:
            weight = float(self.prior_weight)
        if weight <= 0:
            return
        self.prior_, self.prior_weight_ = prior, float(weight)
        unit = spread(raw[unlabeled], 1e-6)
        self.prior_scale_ = float(weight) * unit
        if self.prior_weight == "auto" and weight < AUTO_PRIOR_WEIGHT:
            self.prior_tail_from_ = float(np.max(term[unlabeled]))
            self.prior_tail_scale_ = (AUTO_PRIOR_WEIGHT - float(weight)) * unit

    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly score per row (a logit; higher = more anomalous).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        from swifthydra._validation import check_feature_names

        self._check_fitted()
        check_feature_names(X, getattr(self, "feature_names_in_", None))
        X = check_X(X, name="X", n_features=self.n_features_in_)
        Z = self.scaler_.standardise(X)  # once: the network's input and the prior's both start here
        Xs = self.scaler_.network_input(Z)
        if not np.isfinite(Xs).all():
            raise InvalidInputError("X has values too large to score after standardisation: rescale the data.")
        with torch_threads(getattr(self, "n_jobs", 1)):
            return self._with_prior(self._score_scaled(Xs), Z)

    def score_samples(self, X: Any) -> np.ndarray:
        """Opposite of :meth:`decision_function` (scikit-learn convention: lower = more abnormal)."""
        return -self.decision_function(X)

    def predict(self, X: Any) -> np.ndarray:
        """1 for rows scoring above ``threshold_`` (the training ``contamination`` quantile), else 0."""
        return (self.decision_function(X) > self.threshold_).astype(np.int64)

    def predict_proba(self, X: Any, method: str = "sigmoid") -> np.ndarray:
        """``[P(normal), P(anomaly)]`` per row.

        ``method="sigmoid"`` maps the logit through the logistic function (the detector is trained
        with class-balanced weights, so this is not calibrated to the base rate);
        ``method="linear"`` is PyOD's min-max scaling by the training scores.
        """
        s = self.decision_function(X)
        if method == "sigmoid":
            p = sigmoid(s)
        elif method == "linear":
            lo, hi = self.decision_scores_.min(), self.decision_scores_.max()
            p = np.clip((s - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
        else:
            raise InvalidInputError(f"method must be 'sigmoid' or 'linear', got {method!r}.")
        return np.stack([1.0 - p, p], axis=1)

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit, then return ``labels_``."""
        return self.fit(X, y).labels_

    # ------------------------------------------------------------------------ generation
    def sample_anomalies(self, n: int, random_state: int | None = None) -> np.ndarray:
        """Draw ``n`` new anomalies from the trained generator (agent rollouts, or VAE samples).

        Returns
        -------
        ndarray of shape (n, n_features), in the input's units
        """
        self._check_fitted()
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise InvalidInputError(f"n must be a positive integer, got {n!r}.")
        if self.cvae_ is None:
            raise InvalidInputError(
                f"this model was fitted with generator={self.generator!r}: it has no generator to sample "
                "(neither a C-VAE nor an agent)."
            )
        seed = 0 if random_state is None else int(random_state)
        if self.policy_ is None:
            return self._unscale(self.cvae_.sample(int(n), 1, random_state=seed))
        from swifthydra.rl import generate_candidates, make_latent_env

        def no_reward(x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], device=x.device)

        env = make_latent_env(
            self.cvae_, self._anchors, no_reward, num_envs=int(self.generation_["num_envs"]),
            horizon=int(self.generation_["horizon"]), seed=seed,
        )
        per_rollout = env.num_envs * env.horizon
        cand = generate_candidates(env, self.policy_, n_rollouts=math.ceil(n / per_rollout), seed=seed)["x"]
        return self._unscale(cand[:n].detach().cpu().numpy())

    # ------------------------------------------------------------------------- persistence
    def save(self, path, overwrite: bool = False, extra_files: dict | None = None, verify=None):
        """Save to a model directory (safetensors + JSON; see :mod:`swifthydra.io`).

        ``extra_files`` (file name -> JSON-serialisable content) are stored beside the model with
        their checksums, e.g. the table preprocessing that ``swifthydra fit`` saves; read them
        back with :func:`swifthydra.io.read_model_json`. ``verify(tmp_dir)`` runs on the complete
        directory before it is moved into place; when it raises nothing is saved (see
        :func:`swifthydra.io.save_model_dir`). The format: :mod:`swifthydra.persistence`.
        """
        from swifthydra.persistence import save_swifthydra

        self._check_fitted()
        return save_swifthydra(self, path, overwrite=overwrite, extra_files=extra_files, verify=verify)

    @classmethod
    def load(cls, path, device: str | None = None) -> SwiftHydra:
        """Load a model saved with :meth:`save`. Never executes code from the files."""
        from swifthydra.persistence import load_swifthydra

        return load_swifthydra(cls, path, device)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags


# ---------------------------------------------------------------------------- small helpers
def _last(history: list[dict], key: str) -> float:
    for row in reversed(history or []):
        if key in row and row[key] is not None:
            return float(row[key])
    return float("nan")


def _safe(fn, *args) -> float:
    try:
        value = float(fn(*args))
    except (ValueError, RuntimeError, SwiftHydraError):
        return float("nan")
    return value if math.isfinite(value) else float("nan")


# the numbers of an episode's line with verbose=2
_ROW_KEYS = ("episode", "kept", "generated_total", "reward_mean_kept", "detector_loss", "val_auc", "seconds")
