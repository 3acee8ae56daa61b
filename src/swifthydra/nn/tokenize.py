"""Turning a table row into a token sequence for a Mamba stack.

A row ``x ∈ R^F`` has no sequence structure of its own, so a tokeniser imposes one:

- ``row``: the whole row is one token, ``W x + b`` (length 1). The cheapest: the selective scan
  reduces to a closed-form single step.
- ``feature``: feature ``j`` becomes the token ``x_j w_j + b_j`` with its own ``w_j, b_j ∈ R^D``
  (length ``F``); ``b_j`` doubles as a feature embedding. Costly on wide tables.
- ``patch``: consecutive groups of ``p`` features become one token through a per-patch linear map
  (length ``ceil(F / p)``). ``p`` is chosen so the length never exceeds ``max_tokens`` (32 by
  default here, so 1555 features become 32 tokens of 49 features; ``MambaDetector`` passes 8);
  with ``F <= max_tokens`` and ``p = 1`` it is the ``feature`` tokeniser (docs/design.md §3.1).

Every tokeniser maps ``(B, F)`` to ``(B, L, D)`` and exposes ``seq_len`` (``L``).
:func:`make_tokenizer` builds one by name.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from swifthydra.exceptions import InvalidInputError

TOKENIZERS = ("row", "feature", "patch")


class Standardize(nn.Module):
    """``clamp((x - mean) / scale, ±clip)`` with statistics stored as buffers.

    The buffers start as identity (mean 0, scale 1); :meth:`fit` sets them from data. Clamping
    keeps absurd values (a corrupt row 1e20 standard deviations out) from overflowing the float32
    network while still scoring them as extreme.
    """

    def __init__(self, n_features: int, clip: float = 100.0) -> None:
        super().__init__()
        self.clip = float(clip)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> Standardize:
        """Set mean and scale from ``x`` of shape ``(n, F)`` (constant columns get scale 1)."""
        x = x.to(dtype=torch.float64)
        mean = x.mean(0)
        std = x.std(0, unbiased=False) if x.shape[0] > 1 else torch.zeros_like(mean)
        std = torch.where(std > 1e-12, std, torch.ones_like(std))
        self.mean.copy_(mean.to(self.mean.dtype))
        self.scale.copy_(std.to(self.scale.dtype))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F) -> (B, F)
        return ((x - self.mean) / self.scale).clamp_(-self.clip, self.clip)


class RowTokenizer(nn.Module):
    """The whole row as one token: ``(B, F) -> (B, 1, D)``.

    With ``feature_dim = m > 0`` each feature first gets its own piecewise-linear embedding
    ``relu(x_j v_j + c_j) ∈ R^m`` (the "linear-ReLU" numerical embedding of Gorishniy et al.,
    2022) and the token is a linear map of their concatenation. This gives a one-token model the
    per-feature non-linearity (thresholds, saturation) that feature tokens get from being
    normalised one by one, at the cost of an ``F m``-wide projection.
    """

    def __init__(self, n_features: int, d_model: int, feature_dim: int = 0) -> None:
        super().__init__()
        if feature_dim < 0:
            raise InvalidInputError(f"feature_dim must be >= 0, got {feature_dim}.")
        self.seq_len = 1
        self.feature_dim = feature_dim
        if feature_dim:
            self.embed_weight = nn.Parameter(torch.randn(n_features, feature_dim))
            self.embed_bias = nn.Parameter(torch.randn(n_features, feature_dim))
        self.proj = nn.Linear(n_features * max(feature_dim, 1), d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F) -> (B, 1, D)
        if self.feature_dim:
            e = torch.addcmul(self.embed_bias, x.unsqueeze(-1), self.embed_weight)  # (B, F, m)
            x = torch.relu_(e).flatten(1)  # (B, F m)
        return self.proj(x).unsqueeze(1)


class FeatureTokenizer(nn.Module):
    """One token per feature, ``x_j w_j + b_j``: ``(B, F) -> (B, F, D)``."""

    def __init__(self, n_features: int, d_model: int) -> None:
        super().__init__()
        self.seq_len = n_features
        bound = 1.0 / math.sqrt(d_model)
        self.weight = nn.Parameter(torch.empty(n_features, d_model).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_features, d_model).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F) -> (B, F, D)
        return x.unsqueeze(-1) * self.weight + self.bias


class PatchTokenizer(nn.Module):
    """Groups of ``patch_size`` features as tokens: ``(B, F) -> (B, ceil(F / p), D)``.

    Parameters
    ----------
    n_features : int
        Number of input features ``F``.
    d_model : int
        Token size ``D``.
    patch_size : int, optional
        Features per token. Raised if needed so that the length stays ``<= max_tokens``;
        ``None`` means the smallest such size, ``ceil(F / max_tokens)``.
    max_tokens : int
        Upper bound on the sequence length.
    """

    def __init__(
        self, n_features: int, d_model: int, patch_size: int | None = None, max_tokens: int = 32
    ) -> None:
        super().__init__()
        if max_tokens < 1:
            raise InvalidInputError(f"max_tokens must be >= 1, got {max_tokens}.")
        if patch_size is not None and patch_size < 1:
            raise InvalidInputError(f"patch_size must be >= 1, got {patch_size}.")
        p = max(patch_size or 1, math.ceil(n_features / max_tokens))
        self.patch_size = p
        self.seq_len = math.ceil(n_features / p)
        self.pad = self.seq_len * p - n_features
        bound = 1.0 / math.sqrt(p)
        self.weight = nn.Parameter(torch.empty(self.seq_len, p, d_model).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(self.seq_len, d_model).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F) -> (B, L, D)
        if self.pad:
            x = nn.functional.pad(x, (0, self.pad))  # (B, L * p), zero-padded
        patches = x.view(x.shape[0], self.seq_len, self.patch_size)  # (B, L, p)
        if self.patch_size == 1:
            return patches * self.weight[:, 0] + self.bias  # (B, L, D)
        return torch.einsum("blp,lpd->bld", patches, self.weight) + self.bias  # (B, L, D)


def make_tokenizer(name: str, n_features: int, d_model: int, **kwargs) -> nn.Module:
    """Build a tokeniser by name.

    Parameters
    ----------
    name : {"row", "feature", "patch"}
        Tokeniser kind.
    n_features : int
        Number of input features.
    d_model : int
        Token size.
    **kwargs
        Passed to the tokeniser: ``patch_size``, ``max_tokens`` for ``"patch"``;
        ``feature_dim`` for ``"row"``.

    Returns
    -------
    torch.nn.Module
        Maps ``(B, n_features)`` to ``(B, L, d_model)``; ``.seq_len`` is ``L``.
    """
    if name not in TOKENIZERS:
        raise InvalidInputError(f"unknown tokenizer {name!r}; choose one of {list(TOKENIZERS)}.")
    if int(n_features) < 1 or int(d_model) < 1:
        raise InvalidInputError(
            f"n_features and d_model must be >= 1, got n_features={n_features}, d_model={d_model}."
        )
    if name == "patch":
        return PatchTokenizer(n_features, d_model, **kwargs)
    if name == "row" and set(kwargs) <= {"feature_dim"}:
        return RowTokenizer(n_features, d_model, **kwargs)
    if kwargs:
        raise InvalidInputError(f"tokenizer {name!r} does not take options {sorted(kwargs)}.")
    return FeatureTokenizer(n_features, d_model)
