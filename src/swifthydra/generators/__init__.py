"""Anomaly generators as detector-agnostic samplers (imbalanced-learn's ``fit_resample`` contract).

::

    from swifthydra.generators import GENERATORS, make_generator

    gen = make_generator("nngmix", random_state=0)
    X_res, y_res = gen.fit_resample(X, y)   # y: 1 = known anomaly, 0 = unlabeled
    # X_res[:n] is X and y_res[:n] is y (real rows first, same order); generated rows follow, y = 1
    clf.fit(X_res, y_res, sample_weight=gen.sample_weight_)

Generators (:data:`GENERATORS`):

* ``"none"``: ``X`` and ``y`` unchanged.
* ``"mixup"``: anomaly–anomaly and anomaly–unlabeled mixup (:class:`MixupGenerator`).
* ``"nngmix"``: NNG-Mix, Dong et al. 2023 (:class:`NNGMixGenerator`).
* ``"cvae"``: conditional-VAE samples through Swift Hydra's reward-based selection
  (:class:`CVAEGenerator`).
* ``"rl"``: Swift Hydra's PPO agent in the C-VAE's latent space, rewarded against a detector
  (:class:`RLGenerator`, ``estimator=`` any object with ``predict_proba`` or
  ``decision_function``).

Every generated row has weight ``min(1, generated_weight · n_known_anomalies / n_generated)``
(``sample_weight_``): together at most ``generated_weight`` times the real anomalies.
imbalanced-learn's ``Pipeline`` cannot pass a sampler's weights on (every row would weigh 1; a
generator in one warns once, :class:`GeneratedWeightsWarning`). :func:`make_weighted_pipeline` /
:class:`WeightedPipeline` do: the final estimator's ``fit`` gets ``sample_weight=`` 1.0 for each
real row and the generator's weight for each generated row, as by hand above::

    pipe = make_weighted_pipeline(StandardScaler(), make_generator("nngmix", random_state=0),
                                  LogisticRegression())
    pipe.fit(X, y)

:class:`~swifthydra.hydra.SwiftHydra` runs the same proposal and selection steps
(:mod:`swifthydra.generators._core`) inside its self-reinforcing loop, and
:class:`SelfReinforcingClassifier` runs that loop around any classifier (CatBoost, DevNet, ...):
each episode's anomalies are rewarded against the classifier of the previous episode, which is
then refitted with them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from swifthydra.exceptions import InvalidInputError

if TYPE_CHECKING:
    from swifthydra.generators._samplers import (
        BaseGenerator,
        CVAEGenerator,
        GeneratedWeightsWarning,
        MixupGenerator,
        NNGMixGenerator,
        NoGenerator,
        RLGenerator,
        WeightedPipeline,
        anomaly_probability,
        default_estimator,
        make_weighted_pipeline,
    )
    from swifthydra.generators.loop import SelfReinforcingClassifier

# Imported when first used (PEP 562): SwiftHydra's own loop needs only ``_core`` and
# ``_episodes``, and the samplers import imbalanced-learn (0.28 s of a fresh process that fits
# without generation; docs/benchmarks.md §10.13).
_LAZY = {
    **dict.fromkeys(
        ["BaseGenerator", "CVAEGenerator", "GeneratedWeightsWarning", "MixupGenerator", "NNGMixGenerator",
         "NoGenerator", "RLGenerator", "WeightedPipeline", "anomaly_probability", "default_estimator",
         "make_weighted_pipeline"],
        "_samplers",
    ),
    "SelfReinforcingClassifier": "loop",
}


def __getattr__(name: str) -> Any:
    if name == "GENERATORS":
        from swifthydra.generators import _samplers as s

        value: Any = {  # GENERATORS: generator name -> class
            "none": s.NoGenerator,
            "mixup": s.MixupGenerator,
            "nngmix": s.NNGMixGenerator,
            "cvae": s.CVAEGenerator,
            "rl": s.RLGenerator,
        }
    elif name in _LAZY:
        value = getattr(importlib.import_module(f"swifthydra.generators.{_LAZY[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def make_generator(name: str, random_state: Any = None, **params: Any) -> BaseGenerator:
    """A generator by name (see :data:`GENERATORS`) with its parameters.

    Raises
    ------
    InvalidInputError
        For an unknown name (the message lists the names) or a parameter the generator does not
        take (the message lists those it takes).
    """
    generators = globals().get("GENERATORS") or __getattr__("GENERATORS")
    key = str(name).strip().lower() if isinstance(name, str) else name
    if key not in generators:
        raise InvalidInputError(
            f"unknown generator {name!r}: choose one of {', '.join(generators)}."
        )
    cls = generators[key]
    accepted = cls._get_param_names()
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InvalidInputError(
            f"generator {key!r} takes no parameter {unknown[0]!r}; it takes {', '.join(accepted)}."
        )
    return cls(random_state=random_state, **params)


__all__ = [
    "GENERATORS",
    "BaseGenerator",
    "CVAEGenerator",
    "GeneratedWeightsWarning",
    "MixupGenerator",
    "NNGMixGenerator",
    "NoGenerator",
    "RLGenerator",
    "SelfReinforcingClassifier",
    "WeightedPipeline",
    "anomaly_probability",
    "default_estimator",
    "make_generator",
    "make_weighted_pipeline",
]
