"""The model registry of the benchmark: peers from their own libraries, and swifthydra.

A model is a *factory*: a function ``factory(seed, n_jobs, **params)`` that returns an unfitted
estimator following PyOD's contract:

* ``fit(X)`` (unsupervised models) or ``fit(X, y)`` (models that use labels, ``y`` being the weak
  labels: 1 = labelled anomaly, 0 = unlabelled);
* ``decision_function(X)``: one score per row, higher = more anomalous.

Register one with the :func:`register_model` decorator::

    from swifthydra.bench import register_model

    @register_model("swifthydra", supervision="semi-supervised", min_labeled=0,
                    libraries=("swifthydra", "torch"))
    def _swifthydra(seed, n_jobs, **params):
        from swifthydra import SwiftHydra
        kwargs = {"n_jobs": n_jobs}
        kwargs.update(params)
        return SwiftHydra(random_state=seed, **kwargs)

``seed`` is the cell's seed (every peer gets it), ``n_jobs`` the number of threads the cell may
use, ``params`` the user's overrides (``--param MODEL.KEY=VALUE`` on the command line), which win
over the registered ``defaults``.

Documented default settings of the peers (the libraries' own defaults unless stated):

=========== ======== ===========================================================================
name        library  settings
=========== ======== ===========================================================================
iforest     PyOD     ``IForest(n_estimators=100, max_samples="auto", random_state=seed)``
ecod        PyOD     ``ECOD()`` (deterministic; no seed)
cblof       PyOD     ``CBLOF(n_clusters=8, alpha=0.9, beta=5, random_state=seed)``
xgbod       PyOD     ``XGBOD(random_state=seed)``: 41 unsupervised detectors (KNN, LOF, HBOS,
                     OCSVM, IForest) as extra features for an XGBoost classifier
devnet      PyOD     ``DevNet(network_depth=2, epochs=50, batch_size=512, random_seed=seed)``;
                     torch and numpy global RNGs seeded with ``seed`` before ``fit``; PyOD's
                     swapped loss arguments corrected (see ``_patch_pyod_devnet_loss``)
catboost    CatBoost ``CatBoostClassifier(random_seed=seed)`` (1000 iterations, depth 6), quiet,
                     no files written; score = probability of class 1
xgboost     XGBoost  ``XGBClassifier(random_state=seed)`` (100 trees, depth 6, hist);
                     score = probability of class 1
=========== ======== ===========================================================================

Models can also come from plugin modules named in ``$SWIFTHYDRA_BENCH_PLUGINS`` (comma-separated
module names, imported in every process that looks a model up).

Supervised and semi-supervised peers need at least one labelled anomaly (``min_labeled=1``): at
labelled ratio 0 their cells are recorded as *skipped*.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from swifthydra.exceptions import InvalidInputError, SwiftHydraError

SUPERVISION = ("unsupervised", "semi-supervised", "supervised")
INSTALL_HINT = "pip install 'swifthydra[bench]'"


class MissingDependencyError(SwiftHydraError, ImportError):
    """An optional library a model or feature needs is not installed."""


@dataclass(frozen=True)
class ModelSpec:
    """A registered benchmark model.

    Attributes
    ----------
    name : str
        Registry key (lower case), as given to ``--models``.
    factory : callable
        ``factory(seed, n_jobs, **params) -> estimator``.
    supervision : {"unsupervised", "semi-supervised", "supervised"}
        Unsupervised models are fitted with ``fit(X)`` and never see labels; the others get
        ``fit(X, y_weak)``.
    min_labeled : int
        Fewest labelled training anomalies the model needs; with fewer, the cell is skipped.
    libraries : tuple of str
        Distributions whose versions are recorded with each result (e.g. ``("pyod",)``).
    defaults : mapping
        Parameters passed to the factory unless the user overrides them.
    description : str
        One line shown by ``swifthydra bench models``.
    peer : bool
        Part of the default ``peers`` selection.
    warmup : bool
        Fit once on small random data, untimed, before the first timed cell of a process (so
        imports and JIT compilation do not count as fit time). Turn off for slow models.
    generator_param : str, optional
        Name of the factory's parameter that chooses the model's own anomaly generator
        (``"generator"`` for ``swifthydra``). The benchmark's ``--generators`` then set that
        parameter instead of augmenting the training split in front of the model.
    """

    name: str
    factory: Callable[..., Any]
    supervision: str = "unsupervised"
    min_labeled: int = 0
    libraries: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    peer: bool = True
    warmup: bool = True
    generator_param: str | None = None

    @property
    def uses_labels(self) -> bool:
        return self.supervision != "unsupervised"

    def build(self, seed: int, n_jobs: int = 1, params: Mapping[str, Any] | None = None) -> Any:
        """Return a new unfitted estimator for ``seed`` with ``params`` over the defaults."""
        kwargs = dict(self.defaults)
        kwargs.update(params or {})
        return self.factory(int(seed), int(n_jobs), **kwargs)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    supervision: str = "unsupervised",
    min_labeled: int | None = None,
    libraries: tuple[str, ...] = (),
    defaults: Mapping[str, Any] | None = None,
    description: str = "",
    peer: bool = True,
    warmup: bool = True,
    generator_param: str | None = None,
    replace: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that registers ``factory(seed, n_jobs, **params)`` as benchmark model ``name``.

    Parameters
    ----------
    name : str
        Registry key; stored lower case.
    supervision : {"unsupervised", "semi-supervised", "supervised"}
        How the model uses labels (see :class:`ModelSpec`).
    min_labeled : int, optional
        Fewest labelled anomalies needed; defaults to 0 for unsupervised models, else 1.
    libraries : tuple of str
        Distributions whose versions each result records.
    defaults : mapping, optional
        Default keyword arguments of the factory.
    description : str
        One-line description.
    peer : bool
        Include the model in the ``peers`` selection (the default of ``--models``).
    warmup : bool
        Warm the model up once per process before timing (see :class:`ModelSpec`).
    generator_param : str, optional
        The factory's parameter choosing the model's own generator (see :class:`ModelSpec`).
    replace : bool
        Allow replacing an existing registration (otherwise a duplicate name is an error).

    Returns
    -------
    callable
        The decorator; it returns the factory unchanged.
    """
    key = str(name).strip().lower()
    if not key or "," in key or "." in key or key in ("peers", "all"):
        raise InvalidInputError(f"invalid model name {name!r}: no commas or dots, not 'peers'/'all'.")
    if supervision not in SUPERVISION:
        raise InvalidInputError(
            f"unknown supervision {supervision!r}: choose one of {', '.join(SUPERVISION)}."
        )

    def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
        _ensure_builtin()
        if key in _REGISTRY and not replace:
            raise InvalidInputError(f"model {key!r} is already registered (pass replace=True).")
        need = min_labeled if min_labeled is not None else (0 if supervision == "unsupervised" else 1)
        _REGISTRY[key] = ModelSpec(
            name=key,
            factory=factory,
            supervision=supervision,
            min_labeled=int(need),
            libraries=tuple(libraries),
            defaults=dict(defaults or {}),
            description=description or (factory.__doc__ or "").strip().split("\n")[0],
            peer=peer,
            warmup=warmup,
            generator_param=generator_param,
        )
        return factory

    return decorator


def unregister_model(name: str) -> None:
    """Remove a model from the registry (mainly for tests)."""
    _REGISTRY.pop(str(name).strip().lower(), None)


def get_model(name: str) -> ModelSpec:
    """Return the :class:`ModelSpec` of ``name``.

    Raises
    ------
    InvalidInputError
        Unknown name; the message lists the registered models.
    """
    _ensure_builtin()
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise InvalidInputError(
            f"unknown model {name!r}: choose from {', '.join(sorted(_REGISTRY))} "
            "(or 'peers', 'all')."
        )
    return _REGISTRY[key]


def list_models() -> list[ModelSpec]:
    """All registered models, in registration order."""
    _ensure_builtin()
    return list(_REGISTRY.values())


def resolve_models(names: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Expand a comma-separated selection (``peers``, ``all`` or names) into registry keys.

    ``None`` or an empty selection means ``peers``. Order is kept and duplicates dropped.
    """
    _ensure_builtin()
    if names is None:
        tokens = ["peers"]
    elif isinstance(names, str):
        tokens = [names]
    else:
        tokens = list(names)
    out: list[str] = []
    for token in tokens:
        for part in str(token).split(","):
            part = part.strip().lower()
            if not part:
                continue
            if part == "peers":
                chosen = [s.name for s in _REGISTRY.values() if s.peer]
            elif part == "all":
                chosen = list(_REGISTRY)
            else:
                chosen = [get_model(part).name]
            out.extend(c for c in chosen if c not in out)
    if not out:
        out = [s.name for s in _REGISTRY.values() if s.peer]
    return out


def require(module: str, what: str) -> Any:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} needs the '{module.split('.')[0]}' package ({exc}): {INSTALL_HINT}"
        ) from None


# --------------------------------------------------------------------------------------------
# Adapters
# --------------------------------------------------------------------------------------------


class ClassifierDetector:
    """Wrap a binary classifier as a detector: ``decision_function`` = P(class 1).

    Parameters
    ----------
    classifier : estimator with ``fit`` and ``predict_proba``
        Trained on the weak labels (unlabelled rows count as normal).
    """

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier

    def fit(self, X, y, sample_weight=None):
        if sample_weight is None:
            self.classifier.fit(X, y)
        else:
            self.classifier.fit(X, y, sample_weight=sample_weight)
        return self

    def decision_function(self, X):
        return self.classifier.predict_proba(X)[:, 1]


class DensityPriorAlone:
    """SwiftHydra's k-NN density prior scoring by itself (docs/design.md §10.1): the rows
    standardised as SwiftHydra standardises them, the prior fitted on the unlabeled rows exactly as
    SwiftHydra fits it, no network. It shows what the prior adds to SwiftHydra's score and what the
    networks add to the prior.

    Parameters
    ----------
    random_state : int
        Seeds the reference sample (as SwiftHydra's ``random_state``).
    """

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def fit(self, X, y=None):
        import numpy as np

        from swifthydra._features import FeatureScaler
        from swifthydra._validation import seed_from
        from swifthydra.detectors.prior import DensityPrior
        from swifthydra.exceptions import InvalidInputError

        X = np.asarray(X, dtype=np.float64)
        y = np.zeros(len(X), dtype=np.int64) if y is None else np.asarray(y)
        seed = seed_from(self.random_state)  # the seed SwiftHydra(random_state=...) derives
        self.scaler_, Z = FeatureScaler.fit_standardise(X, "standard", seed)
        self.prior_ = DensityPrior.fit_unlabeled(Z, y, seed)
        if self.prior_ is None:
            raise InvalidInputError("the density prior needs more unlabeled rows (label 0) than its k + 1 neighbours.")
        return self

    def decision_function(self, X):
        import numpy as np

        return self.prior_.term(self.scaler_.standardise(np.asarray(X, dtype=np.float64)))


class _QuietDetector:
    """Silence a detector's prints (PyOD's DevNet prints every epoch) and seed global RNGs."""

    def __init__(self, detector: Any, seed: int | None = None) -> None:
        self.detector = detector
        self.seed = seed

    def fit(self, X, y=None):
        if self.seed is not None:
            import numpy as np

            np.random.seed(self.seed)
            try:
                import torch

                torch.manual_seed(self.seed)
            except ImportError:  # pragma: no cover - torch is a core dependency
                pass
        with contextlib.redirect_stdout(io.StringIO()):
            if y is None:
                self.detector.fit(X)
            else:
                self.detector.fit(X, y)
        return self

    def decision_function(self, X):
        with contextlib.redirect_stdout(io.StringIO()):
            return self.detector.decision_function(X)


def _patch_pyod_devnet_loss(module: Any) -> None:
    """Correct PyOD's DevNet training loss in place (idempotent).

    PyOD 2.x/3.x's ``DevNet.fit`` calls ``deviation_loss(outputs, labels)`` although the function
    is ``deviation_loss(y_true, y_pred)``: the labels become the "scores" and the network's
    outputs the "labels", and the ``(B, 1)`` outputs broadcast against the ``(B,)`` labels. The
    network is then pushed down on every row, and its scores come out *inverted* (AUC-ROC 0.04 on
    ``wine``, 0.001 on ``WDBC`` at labelled ratio 0.05). The module-level function is replaced by
    one that swaps the arguments back and flattens both, i.e. the deviation loss of the DevNet
    paper. Pass ``--param devnet.fix_pyod_loss=false`` to run the library unchanged.
    """
    original = module.deviation_loss
    if getattr(original, "_swifthydra_fixed", False):
        return

    def deviation_loss(outputs, labels):
        return original(labels.reshape(-1), outputs.reshape(-1))

    deviation_loss._swifthydra_fixed = True  # type: ignore[attr-defined]
    deviation_loss._original = original  # type: ignore[attr-defined]
    module.deviation_loss = deviation_loss


def _unpatch_pyod_devnet_loss(module: Any) -> None:
    original = getattr(module.deviation_loss, "_original", None)
    if original is not None:
        module.deviation_loss = original


class DevNetReference:
    """DevNet as published (Pang, Shen and van den Hengel, KDD 2019), in PyTorch.

    Follows the authors' Keras code, which ADBench runs: each of ``nb_batch`` batches per epoch
    holds ``batch_size / 2`` unlabelled rows and ``batch_size / 2`` labelled anomalies, drawn
    with replacement (so a handful of labels is seen in every batch); the deviation loss with
    5000 reference scores from N(0, 1) and confidence margin 5; RMSprop (lr 1e-3, rho 0.9);
    an L2 penalty of 0.01 on the first layer. ``network_depth=2`` is the authors' default
    ``dev_network_s`` (one hidden layer of 20 ReLU units); 4 is ``dev_network_d``
    (1000-250-20); 1 is linear. PyOD's ``DevNet`` differs: it iterates over shuffled rows
    (labelled anomalies rarely appear in a batch) and swaps the loss arguments.

    Parameters
    ----------
    network_depth : {1, 2, 4}
    epochs, nb_batch, batch_size : int
    learning_rate, margin, l2 : float
    random_state : int, optional
    """

    def __init__(self, network_depth=2, epochs=50, nb_batch=20, batch_size=512,
                 learning_rate=1e-3, margin=5.0, l2=0.01, random_state=None):
        self.network_depth = network_depth
        self.epochs = epochs
        self.nb_batch = nb_batch
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.margin = margin
        self.l2 = l2
        self.random_state = random_state

    def _network(self, d):
        import torch.nn as nn

        if self.network_depth == 4:
            return nn.Sequential(nn.Linear(d, 1000), nn.ReLU(), nn.Linear(1000, 250), nn.ReLU(),
                                 nn.Linear(250, 20), nn.ReLU(), nn.Linear(20, 1))
        if self.network_depth == 2:
            return nn.Sequential(nn.Linear(d, 20), nn.ReLU(), nn.Linear(20, 1))
        if self.network_depth == 1:
            return nn.Sequential(nn.Linear(d, 1))
        raise InvalidInputError(f"network_depth must be 1, 2 or 4, got {self.network_depth!r}.")

    def fit(self, X, y):
        import numpy as np
        import torch

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y).astype(int)
        outliers, inliers = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        if len(outliers) == 0 or len(inliers) == 0:
            raise InvalidInputError("DevNet needs labelled anomalies and unlabelled rows.")
        seed = 0 if self.random_state is None else int(self.random_state)
        rng = np.random.RandomState(seed)
        torch.manual_seed(seed)
        self.net_ = self._network(X.shape[1])
        first = self.net_[0].weight
        opt = torch.optim.RMSprop(self.net_.parameters(), lr=self.learning_rate, alpha=0.9,
                                  eps=1e-7)
        half = self.batch_size // 2
        Xt = torch.from_numpy(X)
        target = torch.cat([torch.zeros(half), torch.ones(self.batch_size - half)])
        self.net_.train()
        for _ in range(self.epochs):
            for _ in range(self.nb_batch):
                idx = np.concatenate([rng.choice(inliers, half),
                                      rng.choice(outliers, self.batch_size - half)])
                pred = self.net_(Xt[idx]).reshape(-1)
                ref = torch.randn(5000)
                dev = (pred - ref.mean()) / ref.std()
                loss = torch.mean((1 - target) * dev.abs()
                                  + target * torch.clamp(self.margin - dev, min=0))
                loss = loss + self.l2 * (first ** 2).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.net_.eval()
        return self

    def decision_function(self, X):
        import numpy as np
        import torch

        with torch.no_grad():
            out = self.net_(torch.from_numpy(np.asarray(X, dtype=np.float32)))
        return out.reshape(-1).numpy().astype(np.float64)


# --------------------------------------------------------------------------------------------
# Built-in peers
# --------------------------------------------------------------------------------------------

_BUILTIN_DONE = False
PLUGINS_ENV = "SWIFTHYDRA_BENCH_PLUGINS"


def _load_plugins() -> None:
    """Import the modules named in ``$SWIFTHYDRA_BENCH_PLUGINS`` (comma-separated).

    A plugin module registers models with :func:`register_model` when imported; because the
    variable is read in every process (worker processes included), plugin models work with
    every backend and from the command line.
    """
    import importlib
    import os

    for name in os.environ.get(PLUGINS_ENV, "").split(","):
        name = name.strip()
        if not name:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise InvalidInputError(
                f"cannot import benchmark plugin {name!r} named in ${PLUGINS_ENV}: {exc}"
            ) from None


def _ensure_builtin() -> None:
    global _BUILTIN_DONE
    if _BUILTIN_DONE:
        return
    _BUILTIN_DONE = True
    _register_builtin()
    _load_plugins()


def _register_builtin() -> None:

    @register_model("iforest", libraries=("pyod", "scikit-learn"),
                    description="PyOD IForest (100 trees, max_samples='auto')")
    def _iforest(seed, n_jobs, **params):
        mod = require("pyod.models.iforest", "iforest")
        return mod.IForest(random_state=seed, n_jobs=n_jobs, **params)

    @register_model("ecod", libraries=("pyod",), description="PyOD ECOD (parameter-free)")
    def _ecod(seed, n_jobs, **params):
        mod = require("pyod.models.ecod", "ecod")
        return mod.ECOD(**params)

    @register_model("cblof", libraries=("pyod", "scikit-learn"),
                    description="PyOD CBLOF (8 k-means clusters, alpha 0.9, beta 5)")
    def _cblof(seed, n_jobs, **params):
        mod = require("pyod.models.cblof", "cblof")
        return mod.CBLOF(random_state=seed, n_jobs=n_jobs, **params)

    @register_model("xgbod", supervision="semi-supervised", libraries=("pyod", "xgboost"),
                    description="PyOD XGBOD (41 unsupervised scores + XGBoost)")
    def _xgbod(seed, n_jobs, **params):
        require("xgboost", "xgbod")
        mod = require("pyod.models.xgbod", "xgbod")
        return mod.XGBOD(random_state=seed, n_jobs=n_jobs, **params)

    @register_model("devnet", supervision="semi-supervised", libraries=("pyod", "torch"),
                    description="PyOD DevNet (library defaults, 50 epochs; loss-argument bug fixed)")
    def _devnet(seed, n_jobs, fix_pyod_loss=True, **params):
        mod = require("pyod.models.devnet", "devnet")
        if fix_pyod_loss:
            _patch_pyod_devnet_loss(mod)
        else:
            _unpatch_pyod_devnet_loss(mod)
        return _QuietDetector(mod.DevNet(random_seed=seed, device="cpu", **params), seed=seed)

    @register_model("devnet-ref", supervision="semi-supervised", libraries=("torch",),
                    peer=False,
                    description="DevNet as published (balanced batches), reimplemented in torch")
    def _devnet_ref(seed, n_jobs, **params):
        return DevNetReference(random_state=seed, **params)

    @register_model("prior", supervision="semi-supervised", min_labeled=0, libraries=("swifthydra", "torch"),
                    peer=False, description="SwiftHydra's k-NN density prior alone (no network; known "
                                            "anomalies left out of its reference)")
    def _prior(seed, n_jobs, **params):
        return DensityPriorAlone(random_state=seed, **params)

    @register_model("catboost", supervision="supervised", libraries=("catboost",),
                    description="CatBoostClassifier (library defaults: 1000 iterations)")
    def _catboost(seed, n_jobs, **params):
        mod = require("catboost", "catboost")
        kwargs = {"verbose": False, "allow_writing_files": False, "thread_count": n_jobs}
        kwargs.update(params)
        return ClassifierDetector(mod.CatBoostClassifier(random_seed=seed, **kwargs))

    @register_model("xgboost", supervision="supervised", libraries=("xgboost",),
                    description="XGBClassifier (library defaults: 100 trees, depth 6)")
    def _xgboost(seed, n_jobs, **params):
        mod = require("xgboost", "xgboost")
        kwargs = {"n_jobs": n_jobs, "verbosity": 0}
        kwargs.update(params)
        return ClassifierDetector(mod.XGBClassifier(random_state=seed, **kwargs))

    @register_model("swifthydra", supervision="semi-supervised", min_labeled=0,
                    libraries=("swifthydra", "torch"), peer=False, warmup=False,
                    generator_param="generator",
                    description="Swift Hydra (this package); not in 'peers'")
    def _swifthydra(seed, n_jobs, **params):
        try:
            from swifthydra.hydra import SwiftHydra, legacy_params
        except ImportError as exc:
            raise MissingDependencyError(
                f"the SwiftHydra estimator cannot be imported: {exc}"
            ) from None
        kwargs = {"n_jobs": n_jobs}
        # --param swifthydra.cvae_epochs=30 (the flat names of before version 0.2) still works here
        kwargs.update(legacy_params(params))
        return SwiftHydra(random_state=seed, **kwargs)


# --------------------------------------------------------------------------------------------
# Generators of models that own one
# --------------------------------------------------------------------------------------------


def default_generator(spec: ModelSpec) -> str:
    """The generator ``spec``'s model uses when none is given: its registered default, else the
    default of the factory's parameter, else of the estimator class's ``__init__`` (for
    ``swifthydra``: ``SwiftHydra``'s ``generator`` default)."""
    import inspect

    param = spec.generator_param
    if param is None:
        return "none"
    if param in spec.defaults:
        return str(spec.defaults[param])
    sig = inspect.signature(spec.factory).parameters
    if param in sig and sig[param].default is not inspect.Parameter.empty:
        return str(sig[param].default)
    if spec.name == "swifthydra":
        from swifthydra.hydra import SwiftHydra

        return str(inspect.signature(SwiftHydra.__init__).parameters[param].default)
    raise InvalidInputError(f"cannot tell the default {param!r} of model {spec.name!r}: "
                            "register it with defaults={%r: ...}." % param)


def split_generator(model: str, config: str) -> tuple[str, str]:
    """``(generator, config)`` of a stored row written before cells had a generator column.

    Rows of a model that owns its generator (``generator_param``) get the generator named in
    their config (removed from it) or the model's current default; other rows get ``"none"``.
    """
    import json

    try:
        spec = get_model(model)
    except SwiftHydraError:  # a plugin model no longer registered
        return "none", config
    if spec.generator_param is None:
        return "none", config
    try:
        params = json.loads(config) if config else {}
    except ValueError:
        return default_generator(spec), config
    if not isinstance(params, dict):
        return default_generator(spec), config
    if spec.generator_param in params:
        name = str(params.pop(spec.generator_param))
        return name, json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return default_generator(spec), config
