"""Persistence of the neural detectors: ``get_config`` (JSON) + ``state_dict`` (tensors) out,
``from_config`` back, checked before any memory is committed (docs/design.md §11)."""

from __future__ import annotations

import math
from typing import Any

import torch

from swifthydra._torch import resolve_device
from swifthydra.detectors._params import check_int
from swifthydra.detectors._training import seeded
from swifthydra.exceptions import InvalidInputError
from swifthydra.io import to_jsonable
from swifthydra.nn.mamba import MambaConfig

# 2: a MoME's expert weights are stacked (``MoME._upgrade_state_dict`` reads format 1)
CONFIG_FORMAT_VERSION = 2


def scorer_numel(
    n_features: int, tokenizer: str, cfg: MambaConfig, tokenizer_kwargs: dict[str, int], *, standardize: bool
) -> int:
    """Values in the state_dict of ``MambaScorer(n_features, tokenizer, cfg, standardize=...,
    tokenizer_kwargs=...)`` (:mod:`swifthydra.nn`), by arithmetic; a test compares it with built
    networks of every kind."""
    f, d = int(n_features), int(cfg.d_model)
    n = 2 * f if standardize else 0  # Standardize: mean, scale
    if tokenizer == "row":
        m = int(tokenizer_kwargs.get("feature_dim", 0))
        n += 2 * f * m + (f * max(m, 1) * d + d)  # embeddings, projection
    elif tokenizer == "feature":
        n += 2 * f * d
    else:  # patch
        p = max(int(tokenizer_kwargs.get("patch_size") or 1), math.ceil(f / int(tokenizer_kwargs.get("max_tokens", 32))))
        length = math.ceil(f / p)
        n += length * p * d + length * d
    d_in, state, rank, conv = int(cfg.d_inner), int(cfg.d_state), int(cfg.rank), int(cfg.d_conv)
    # conv1d (depthwise, bias), x_proj, dt_proj (bias), A_log, D
    ssm = (d_in * conv + d_in) + d_in * (rank + 2 * state) + (rank * d_in + d_in) + d_in * state + d_in
    # RMSNorm, in_proj, out_proj, one or two SSMs
    block = d + d * 2 * d_in + d_in * d + ssm * (2 if cfg.bidirectional else 1)
    return n + int(cfg.n_layers) * block + d + (d + 1)  # blocks, final norm, head


class PersistenceMixin:
    """``get_config``/``state_dict``/``from_config`` for a fitted detector (``model_``)."""

    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable description from which :meth:`from_config` rebuilds the network.

        Holds the class name, the constructor parameters, the fitted shape (``n_features_in_``,
        and what else the subclass needs, e.g. ``n_experts_``) and ``threshold_``.
        """
        self._check_fitted()
        return {
            "class": type(self).__name__,
            "format_version": CONFIG_FORMAT_VERSION,
            "params": to_jsonable(self.get_params()),
            "n_features_in": int(self.n_features_in_),
            "threshold": float(self.threshold_),
            "n_epochs": int(self.n_epochs_),
            "architecture": self._architecture(),
        }

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The network's tensors (CPU, contiguous), ready for ``safetensors.torch.save_file``."""
        self._check_fitted()
        # copies: on CPU ``.cpu()`` would share storage with the live parameters, and a kept
        # state would change with further training
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.model_.state_dict().items()}

    @classmethod
    def from_config(
        cls,
        config: dict[str, Any],
        state_dict: dict[str, torch.Tensor],
        *,
        device: str | None = None,
    ) -> Any:
        """Rebuild a fitted detector from :meth:`get_config` and :meth:`state_dict` output.

        Everything is checked before memory is committed, so a damaged or hostile config cannot
        make it allocate more than the stored tensors: the number of values the network holds is
        worked out from the config by arithmetic (:meth:`_net_numel`) and, when it equals the
        number stored, the network is built (as many values as are already in memory) and its
        tensor names and shapes compared with ``state_dict``; otherwise the network is built on
        PyTorch's ``meta`` device (no storage; slower: it imports ``torch._dynamo``, about a second)
        to name what does not match. Tensors holding NaN or infinite values are refused. Any
        mismatch raises :class:`~swifthydra.exceptions.InvalidInputError`.
        """
        if not isinstance(config, dict) or not isinstance(state_dict, dict):
            raise InvalidInputError("a detector config must be a JSON object and state_dict a dict of tensors.")
        if config.get("class") != cls.__name__:
            raise InvalidInputError(
                f"config describes a {config.get('class')!r}, not a {cls.__name__}."
            )
        try:
            version = int(config.get("format_version", 0))
            if version > CONFIG_FORMAT_VERSION:
                raise InvalidInputError(
                    f"config format {config.get('format_version')} is newer than this swifthydra "
                    f"supports ({CONFIG_FORMAT_VERSION}): upgrade swifthydra."
                )
            params = dict(config["params"])
            if device is not None:
                params["device"] = device
            est = cls(**params)
            est._validate_params()
            arch = config.get("architecture", {})
            if not isinstance(arch, dict):
                raise InvalidInputError("config.architecture must be a JSON object.")
            est._restore_architecture(arch)
            state_dict = est._upgrade_state_dict(state_dict)
            n_features = config["n_features_in"]
            check_int("n_features_in", n_features, 1)
            # every layer and expert owns tensors: more than the file holds cannot match it
            # (checked before building, which would otherwise create that many modules)
            if max(int(est.n_layers), int(getattr(est, "n_experts_", 1))) > len(state_dict):
                raise InvalidInputError(
                    f"state_dict holds {len(state_dict)} tensors, too few for the config's "
                    "layers and experts."
                )
            threshold = float(config["threshold"])
            n_epochs = int(config.get("n_epochs", 0))
            n_features = int(n_features)
            stored = sum(int(t.numel()) for t in state_dict.values() if isinstance(t, torch.Tensor))
            net = None
            if est._net_numel(n_features) == stored:
                # as many values as the file holds (already in memory): build the real network
                with seeded(0, torch.device("cpu")):
                    net = est._build_net(n_features, None, 0)
                expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
            else:  # shapes only, no memory, to say what does not match
                with torch.device("meta"):
                    expected = {k: tuple(v.shape) for k, v in est._build_net(n_features, None, 0).state_dict().items()}
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RuntimeError) as exc:
            raise InvalidInputError(f"invalid {cls.__name__} config ({type(exc).__name__}: {exc}).") from None
        for name, tensor in state_dict.items():
            if not isinstance(tensor, torch.Tensor):
                raise InvalidInputError(f"state_dict entry {name!r} is not a tensor.")
            if name in expected and tuple(tensor.shape) != expected[name]:
                raise InvalidInputError(
                    f"state_dict does not match the config: {name!r} has shape {tuple(tensor.shape)}, "
                    f"expected {expected[name]}."
                )
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise InvalidInputError(f"state_dict entry {name!r} holds NaN or infinite values.")
        missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
        if missing or unexpected:
            raise InvalidInputError(
                f"state_dict does not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}."
            )
        est.device_ = resolve_device(est.device)
        est.n_features_in_ = n_features
        if net is None:  # _net_numel disagrees with a network that matches the file
            with seeded(0, est.device_):
                net = est._build_net(n_features, None, 0)
        try:
            net.load_state_dict(state_dict)
        except RuntimeError as exc:
            raise InvalidInputError(f"state_dict does not match the config: {exc}") from None
        est.model_ = net.to(est.device_).eval()
        # made when training resumes (partial_fit): a new AdamW has no state to restore
        est.optimizer_ = None
        est.threshold_ = threshold
        est.n_epochs_ = n_epochs
        est.history_ = []
        return est

    def _restore_architecture(self, arch: dict[str, Any]) -> None:
        pass

    def _upgrade_state_dict(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """``state_dict`` as this version's network names its tensors (an older layout renamed)."""
        return state_dict

    def _net_numel(self, n_features: int) -> int:
        """How many values the state_dict of ``_build_net(n_features, ...)`` holds, by arithmetic
        (nothing is built). Used by :meth:`from_config` to build the network only when it is no
        bigger than the stored tensors; a wrong count only costs time (the shapes are then
        checked on the ``meta`` device), never correctness. ``-1``: unknown."""
        return -1
