"""Anomaly generators in the benchmark: detector x generator cells on identical splits.

``swifthydra bench --generators none,mixup,nngmix,cvae,rl`` adds a *generator* to every cell's
key. How a generator reaches a model depends on the model:

* a model that owns its generator (``swifthydra``: :attr:`ModelSpec.generator_param`) gets it as
  that parameter (``SwiftHydra(generator="rl")``). Without ``--generators`` such a model runs
  with its own default (or ``--param swifthydra.generator=...``), and the cell records that
  generator, so the column always says what ran;
* any other model that uses labels is fitted on the training split augmented by the sampler of
  :mod:`swifthydra.generators` (``X_res, y_res = gen.fit_resample(X_train, y_train)``), with
  ``sample_weight=gen.sample_weight_`` when its ``fit`` accepts ``sample_weight`` (else
  unweighted; the row's ``extra`` says which). Generation time counts in the fit time;
* the generators that reward candidates against a detector (``cvae``, ``rl``: their
  ``estimator`` parameter) are rewarded against *the detector they augment*: a copy of the
  cell's model fitted on the real training rows (its fit counts in the cell's fit time).
  ``--param gen.rl.estimator=default`` uses the generator's own default estimator instead;
* generators that take ``n_jobs`` get the cell's thread count;
* unsupervised models never see labels: their cells with a generator other than ``none`` are
  stored as ``skipped`` (not applicable), not run again under another name.

``none`` leaves the split untouched and never imports the generators package, so a benchmark
without ``--generators`` is exactly the benchmark as it was before generators existed.

Per-generator settings are given as ``--param gen.NAME.KEY=VALUE`` (e.g.
``--param gen.nngmix.n_neighbors=5``); they are part of the cell's generator key, written
``NAME{"KEY":VALUE}`` (canonical JSON).
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from swifthydra.exceptions import InvalidInputError

#: Generators the benchmark knows by name (those of :mod:`swifthydra.generators` are added).
GENERATOR_NAMES = ("none", "mixup", "nngmix", "cvae", "rl")
PARAM_PREFIX = "gen."


def _tokens(values: Any) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values:
        out.extend(p.strip() for p in str(v).split(",") if p.strip())
    return out


def known_generators() -> tuple[str, ...]:
    """The benchmark's generator names, plus any other name :mod:`swifthydra.generators` has."""
    names = list(GENERATOR_NAMES)
    try:
        from swifthydra.generators import GENERATORS
    except ImportError:
        return tuple(names)
    names.extend(str(n) for n in GENERATORS if str(n) not in names)
    return tuple(names)


def resolve_generators(values: str | Iterable[str] | None) -> list[str] | None:
    """Parse ``--generators`` (comma-separated or a list); ``None`` when none were given.

    Raises
    ------
    InvalidInputError
        An unknown name; the message lists the known ones.
    """
    tokens = [t.lower() for t in _tokens(values)]
    if not tokens:
        return None
    known = known_generators()
    out: list[str] = []
    for t in tokens:
        if t not in known:
            raise InvalidInputError(f"unknown generator {t!r}: choose from {', '.join(known)}.")
        if t not in out:
            out.append(t)
    return out


def is_generator_param(item: str) -> bool:
    """``gen.NAME.KEY=VALUE`` (a generator setting) rather than ``MODEL.KEY=VALUE``."""
    return str(item).strip().lower().startswith(PARAM_PREFIX)


def parse_generator_params(
    items: Iterable[str] | Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, dict[str, Any]]:
    """Parse ``gen.NAME.KEY=VALUE`` items (VALUE read as JSON when it parses), or a mapping
    ``{NAME: {KEY: VALUE}}``, into ``{NAME: {KEY: VALUE}}``."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return {str(k).lower(): dict(v) for k, v in items.items()}
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        parts = name.strip().split(".", 2)
        if not sep or len(parts) != 3 or parts[0].lower() != "gen" or not parts[1] or not parts[2]:
            raise InvalidInputError(
                f"bad --param {item!r}: write gen.GENERATOR.KEY=VALUE, e.g. "
                "gen.nngmix.n_neighbors=5."
            )
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        out.setdefault(parts[1].lower(), {})[parts[2].strip()] = parsed
    return out


def generator_label(name: str, params: Mapping[str, Any] | None = None) -> str:
    """The cell's generator key: ``name``, or ``name{canonical JSON of params}``."""
    from swifthydra.bench.store import canonical_config

    if not params:
        return str(name)
    return f"{name}{canonical_config(params)}"


def parse_generator_label(label: str) -> tuple[str, dict[str, Any]]:
    """Inverse of :func:`generator_label`."""
    label = str(label or "none")
    name, brace, rest = label.partition("{")
    if not brace:
        return name, {}
    try:
        return name, dict(json.loads("{" + rest))
    except ValueError:
        return name, {}


def display_label(label: str) -> str:
    """``nngmix{"k":5}`` -> ``nngmix[k=5]`` (as model labels are shown in the report)."""
    name, params = parse_generator_label(label)
    if not params:
        return name
    return f"{name}[{','.join(f'{k}={v}' for k, v in params.items())}]"


def check_samplers(names: Iterable[str],
                   params: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Make sure :mod:`swifthydra.generators` provides every sampler in ``names`` (not ``none``)
    and that each takes the parameters given for it (before any cell runs)."""
    wanted = [n for n in names if n != "none"]
    if not wanted:
        return
    try:
        from swifthydra.generators import GENERATORS
    except ImportError as exc:
        raise InvalidInputError(
            f"generators {', '.join(wanted)} need the swifthydra.generators package, which "
            f"cannot be imported ({exc})."
        ) from None
    missing = [n for n in wanted if n not in GENERATORS]
    if missing:
        raise InvalidInputError(
            f"swifthydra.generators has no generator {missing[0]!r} (it has "
            f"{', '.join(map(str, GENERATORS))})."
        )
    for name in wanted:
        given = dict((params or {}).get(name) or {})
        if "random_state" in given:
            raise InvalidInputError(f"gen.{name}.random_state is the cell's seed: use --seeds.")
        accepted = _generator_init_params(name) - {"self", "random_state"}
        bad = [k for k in given if k not in accepted]
        if bad and accepted:
            raise InvalidInputError(
                f"generator {name!r} has no parameter {bad[0]!r} (it takes "
                f"{', '.join(sorted(accepted))})."
            )


def check_model_generators(spec: Any, names: Iterable[str]) -> None:
    """Refuse, before running anything, generators the model's own parameter does not accept.

    For ``swifthydra`` the accepted names are ``swifthydra.hydra._GENERATORS`` when it exists.
    """
    if spec.name != "swifthydra":
        return
    try:
        from swifthydra import hydra
    except ImportError:  # the cells will report it
        return
    accepted = getattr(hydra, "_GENERATORS", None)
    if not accepted:
        return
    bad = [n for n in names if n not in accepted]
    if bad:
        raise InvalidInputError(
            f"SwiftHydra(generator=...) does not accept {bad[0]!r} in this version (it accepts "
            f"{', '.join(accepted)})."
        )


def _base_estimator():
    from sklearn.base import BaseEstimator

    return BaseEstimator


class FittedDetector(_base_estimator()):
    """A fitted benchmark detector as a generator's ``estimator`` (``W(x)`` from its scores).

    Marked fitted (``__sklearn_is_fitted__``) so the generator neither clones nor refits it;
    ``decision_function`` is the detector's score (the generator takes its logistic function).
    """

    def __init__(self, detector: Any) -> None:
        self.detector = detector

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def fit(self, X, y=None):  # pragma: no cover - never called: it is fitted
        raise RuntimeError("FittedDetector wraps a detector that is fitted already.")

    def decision_function(self, X):
        return np.asarray(self.detector.decision_function(X), dtype=np.float64)


class FittedClassifier(FittedDetector):
    """:class:`FittedDetector` of a classifier: ``W(x)`` is its probability of class 1."""

    def predict_proba(self, X):
        return self.detector.classifier.predict_proba(X)

    @property
    def classes_(self):
        return getattr(self.detector.classifier, "classes_", [0, 1])


def _generator_init_params(name: str) -> set[str]:
    from swifthydra.generators import GENERATORS

    try:
        return set(inspect.signature(GENERATORS[name].__init__).parameters)
    except (KeyError, TypeError, ValueError):
        return set()


def fit_augmented(estimator: Any, X, y, name: str, params: Mapping[str, Any] | None,
                  seed: int, *, make_detector: Any = None,
                  threads: int = 1) -> tuple[Any, dict[str, Any]]:
    """Augment ``(X, y)`` with generator ``name`` and fit ``estimator`` on the result.

    ``make_detector()`` returns a new unfitted copy of the cell's detector: generators with an
    ``estimator`` parameter are rewarded against it, fitted on ``(X, y)`` (unless
    ``params["estimator"] == "default"``).

    Returns the fitted generator and what to record in the row's ``extra``: the generator,
    its parameters, how many rows it generated, their mean weight, whether the weights reached
    ``fit``, what the generator's reward was computed against and the generation seconds (part
    of the cell's fit time, which the caller measures).
    """
    from swifthydra.generators import make_generator

    t0 = time.perf_counter()
    kwargs = dict(params or {})
    accepted = _generator_init_params(name)
    reward_against = None
    if "estimator" in accepted:
        choice = kwargs.pop("estimator", "detector")
        if choice == "detector":
            if make_detector is None:
                raise InvalidInputError(f"generator {name!r} needs the cell's detector.")
            det = make_detector()
            det.fit(X, y)
            wrap = FittedClassifier if hasattr(getattr(det, "classifier", None),
                                               "predict_proba") else FittedDetector
            kwargs["estimator"] = wrap(det)
            reward_against = "the cell's detector, fitted on the real rows"
        elif choice in ("default", None):
            reward_against = "the generator's default estimator"
        else:
            raise InvalidInputError(
                f"gen.{name}.estimator must be 'detector' (the cell's model) or 'default', "
                f"got {choice!r}."
            )
    if "n_jobs" in accepted and "n_jobs" not in kwargs:
        kwargs["n_jobs"] = max(1, int(threads))
    gen = make_generator(name, random_state=int(seed), **kwargs)
    X_res, y_res = gen.fit_resample(X, y)
    generate_s = time.perf_counter() - t0
    weights = np.asarray(gen.sample_weight_, dtype=np.float64).reshape(-1)
    if len(weights) != len(X_res) or len(y_res) != len(X_res):
        raise ValueError(f"generator {name!r} returned {len(X_res)} rows, {len(y_res)} labels and "
                         f"{len(weights)} weights")
    from swifthydra.generators._core import takes_sample_weight

    weighted = takes_sample_weight(estimator.fit)
    if weighted:
        estimator.fit(X_res, y_res, sample_weight=weights)
    else:
        estimator.fit(X_res, y_res)
    n_gen = int(gen.n_generated_)
    info = {
        "name": name,
        "params": dict(params or {}),
        "applied": "sampler",
        "n_real": int(len(X)),
        "n_generated": n_gen,
        "generated_weight_mean": float(weights[len(X):].mean()) if n_gen else None,
        "sample_weight": "passed to fit" if weighted else "not used: fit has no sample_weight",
        "generate_seconds": generate_s,
    }
    if reward_against is not None:
        info["reward_against"] = reward_against
    return gen, info


_WARMED: set[str] = set()


def warm_up_generator(name: str, params: Mapping[str, Any] | None, n_features: int) -> None:
    """Run a sampler once per process on small random data, untimed (imports, JIT, pools)."""
    key = generator_label(name, params)
    if name == "none" or key in _WARMED:
        return
    _WARMED.add(key)
    rng = np.random.RandomState(0)
    X = rng.rand(256, n_features)
    y = np.zeros(256, dtype=int)
    y[:12] = 1
    X[:12] += 1.0
    try:
        from swifthydra.generators import make_generator

        kwargs = {k: v for k, v in dict(params or {}).items() if k != "estimator"}
        accepted = _generator_init_params(name)
        for key in ("episodes", "cvae_epochs", "ppo_iterations"):  # imports, not a real run
            if key in accepted:
                kwargs[key] = 1
        make_generator(name, random_state=0, **kwargs).fit_resample(X, y)
    except Exception:  # the real cell reports it
        pass
