"""Saving and loading a fitted :class:`~swifthydra.hydra.SwiftHydra` (its model directory).

A model directory (:mod:`swifthydra.io`) holds ``model.safetensors`` (every tensor, named by
part: ``center``, ``scale``, ``power.*``, ``detector.*``, ``mome.*``, ``cvae.*``, ``policy.*``,
``prior.*``, the generated and anchor rows, the training scores) and ``config.json`` (the
estimator's parameters, the fitted scalars, the history, each part's configuration and the
checksums). Loading never executes code from the files; a damaged or foreign directory is one
:class:`~swifthydra.exceptions.ModelFileError`. Parameters saved before version 0.2 (the
generation settings and ``n_experts`` at the top level) are read into today's places
(:func:`swifthydra._settings.legacy_params`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from swifthydra._features import FeatureScaler
from swifthydra._power import PowerGate
from swifthydra._settings import MODEL_KIND, legacy_params
from swifthydra._torch import torch_threads
from swifthydra.exceptions import ModelFileError, SwiftHydraError
from swifthydra.io import load_model_dir, save_model_dir, to_jsonable


def save_swifthydra(est: Any, path, *, overwrite: bool = False, extra_files: dict | None = None, verify=None):
    """Write fitted ``est`` to the model directory ``path`` (see ``SwiftHydra.save``)."""
    tensors = {"center": torch.from_numpy(est.center_), "scale": torch.from_numpy(est.scale_),
               "generated": torch.from_numpy(est.generated_), "anchors": torch.from_numpy(est._anchors),
               "decision_scores": torch.from_numpy(est.decision_scores_)}
    tensors.update({f"power.{k}": torch.from_numpy(np.ascontiguousarray(v))
                    for k, v in est.power_transform_.arrays.items()})
    tensors.update({f"detector.{k}": v for k, v in est.detector_.state_dict().items()})
    config = {
        "params": to_jsonable(est.get_params()),
        "n_features_in": int(est.n_features_in_),
        "threshold": float(est.threshold_),
        "used_pseudo_labels": bool(est.used_pseudo_labels_),
        "best_episode": int(getattr(est, "best_episode_", 0)),
        "history": to_jsonable(est.history_),
        **({"feature_names_in": [str(c) for c in est.feature_names_in_]}
           if hasattr(est, "feature_names_in_") else {}),
        "detector": est.detector_.get_config(),
    }
    if getattr(est, "prior_", None) is not None:
        tensors.update({f"prior.{k}": v for k, v in est.prior_.state_tensors().items()})
        config["prior"] = {**est.prior_.get_config(), "weight_scale": float(est.prior_scale_),
                           "weight": float(est.prior_weight_),
                           **({"tail_scale": float(est.prior_tail_scale_), "tail_from": float(est.prior_tail_from_)}
                              if est.prior_tail_scale_ > 0 else {}),
                           "auc": float(est.prior_auc_) if np.isfinite(est.prior_auc_) else None}
    if est.mome_ is not None:
        tensors.update({f"mome.{k}": v for k, v in est.mome_.state_dict().items()})
        config["mome"] = est.mome_.get_config()
    if est.cvae_ is not None:
        tensors.update({f"cvae.{k}": v for k, v in est.cvae_.state_dict().items()})
        config["cvae"] = to_jsonable(est.cvae_.get_config())
    if est.policy_ is not None:
        tensors.update({f"policy.{k}": v for k, v in est.policy_.state_dict().items()})
        config["policy"] = {"obs_dim": est.policy_.obs_dim, "act_dim": est.policy_.act_dim}
    return save_model_dir(path, MODEL_KIND, config, tensors, overwrite=overwrite, extra_files=extra_files,
                          verify=verify)


def load_swifthydra(cls: type, path, device: str | None = None):
    """A fitted ``cls`` (SwiftHydra) read from the model directory ``path`` (see ``SwiftHydra.load``)."""
    from swifthydra.detectors import MambaDetector, MoME
    from swifthydra.generative import CVAE
    from swifthydra.rl import GaussianPolicy

    meta, tensors = load_model_dir(path, MODEL_KIND)
    cfg = meta.get("config")
    if not isinstance(cfg, dict):
        raise ModelFileError(f"{path} has no model configuration in its config.json; the model is damaged.")
    broken = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:  # a fitted model never holds NaN or inf
        raise ModelFileError(f"{path} holds NaN or infinite values in {sorted(broken)[:3]}; the model is damaged.")

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}

    try:
        params = legacy_params(cfg["params"])  # flat generation settings before version 0.2
        params.setdefault("prior_weight", 0.0)  # written before the density prior existed
        if device is not None:
            params["device"] = device
        est = cls(**params)
        est._validate_params()
        est.generation_ = est._generation()
        est.n_features_in_ = int(cfg["n_features_in"])
        est.threshold_ = float(cfg["threshold"])
        est.used_pseudo_labels_ = bool(cfg["used_pseudo_labels"])
        est.best_episode_ = int(cfg["best_episode"])
        est.history_ = list(cfg["history"])
        if cfg.get("feature_names_in") is not None:
            est.feature_names_in_ = np.asarray([str(c) for c in cfg["feature_names_in"]], dtype=object)
            if len(est.feature_names_in_) != est.n_features_in_:
                raise ValueError("feature_names_in does not have one name per feature")
        power = {k[len("power."):]: v.numpy() for k, v in tensors.items() if k.startswith("power.")}
        if power:
            gate = PowerGate.from_arrays(power)
        else:  # written before the power transform existed: standardisation only
            gate = PowerGate.fit(np.zeros((2, 0)), "standard")
            est.feature_transform = "standard"
        est.scaler_ = FeatureScaler(
            tensors["center"].numpy().astype(np.float64), tensors["scale"].numpy().astype(np.float64), gate
        )
        est.generated_ = tensors["generated"].numpy().astype(np.float64)
        est._anchors = tensors["anchors"].numpy()
        est.decision_scores_ = tensors["decision_scores"].numpy().astype(np.float64)
        est.labels_ = (est.decision_scores_ > est.threshold_).astype(np.int64)
        est.detector_ = MambaDetector.from_config(cfg["detector"], part("detector"), device=device)
        est.mome_ = MoME.from_config(cfg["mome"], part("mome"), device=device) if "mome" in cfg else None
        est.cvae_ = CVAE.from_state(cfg["cvae"], part("cvae"), device=device) if "cvae" in cfg else None
        est.prior_, est.prior_scale_, est.prior_weight_, est.prior_auc_ = None, 0.0, 0.0, float("nan")
        est.prior_tail_scale_, est.prior_tail_from_ = 0.0, float("inf")
        if "prior" in cfg:
            from swifthydra.detectors.prior import DensityPrior

            est.prior_ = DensityPrior.from_state(cfg["prior"], part("prior"))
            est.prior_scale_ = float(cfg["prior"]["weight_scale"])
            est.prior_weight_ = float(cfg["prior"].get("weight", float("nan")))
            est.prior_auc_ = float(cfg["prior"].get("auc") or float("nan"))
            if "tail_scale" in cfg["prior"]:  # version 0.4: the far tail at full weight (docs/design.md §10.1)
                est.prior_tail_scale_ = float(cfg["prior"]["tail_scale"])
                est.prior_tail_from_ = float(cfg["prior"]["tail_from"])
                if not (math.isfinite(est.prior_tail_scale_) and est.prior_tail_scale_ > 0
                        and math.isfinite(est.prior_tail_from_)):
                    raise ValueError("density prior: non-finite or non-positive tail")
            if not (math.isfinite(est.prior_scale_) and est.prior_scale_ >= 0
                    and est.prior_.reference.shape[1] == est.n_features_in_):
                raise ValueError("density prior: weight or feature count do not fit the model")
        est.policy_ = None
        if "policy" in cfg:
            # one thread: the orthogonal initialisation (replaced right away) runs QR
            # factorisations that take ~0.4 s with a multi-threaded pool on a busy machine
            with torch_threads(1):
                est.policy_ = GaussianPolicy(int(cfg["policy"]["obs_dim"]), int(cfg["policy"]["act_dim"]))
            est.policy_.load_state_dict(part("policy"))
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RuntimeError, SwiftHydraError) as exc:
        detail = " ".join(str(exc).split())  # torch's state_dict errors span several lines
        raise ModelFileError(f"{path} holds an inconsistent SwiftHydra model ({type(exc).__name__}: {detail}).") from None
    cols = est.power_transform_.columns
    if cols.size and (cols.min() < 0 or cols.max() >= est.n_features_in_ or np.unique(cols).size != cols.size):
        raise ModelFileError(f"{path} holds an inconsistent SwiftHydra model (power-transform columns).")
    if est.center_.shape != (est.n_features_in_,) or est.scale_.shape != (est.n_features_in_,):
        raise ModelFileError(f"{path} holds an inconsistent SwiftHydra model (feature count).")
    if not (np.isfinite(est.center_).all() and np.isfinite(est.scale_).all() and (est.scale_ > 0).all()):
        raise ModelFileError(f"{path} holds an inconsistent SwiftHydra model (non-finite or non-positive scaling).")
    return est
