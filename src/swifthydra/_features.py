"""The one feature transform every network input goes through (docs/design.md §2).

:class:`FeatureScaler`: standardise each column (training mean and std; a constant column keeps
scale 1), power-transform the heavily skewed ones (:class:`~swifthydra._power.PowerGate`,
``feature_transform``), clip to ±:data:`MAX_STANDARDISED`, float32 out. SwiftHydra, the
generators, ``explain`` and the ONNX export all use it; :meth:`FeatureScaler.torch_module` is its
float64 torch twin, so the exported graph computes the same numbers instead of a second copy.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from swifthydra._power import PowerGate

# Standardised values are clipped to +-this: far beyond any training row (|z| <= sqrt(n)) and
# beyond the detectors' own clip (100 of their std), so scores do not change, but a row far out of
# the training range (e.g. 1e29 in a column of std 1e-10) scores as extreme instead of overflowing.
MAX_STANDARDISED = 1e6
# the power transform is fitted on a sample of at most this many rows
MAX_POWER_FIT_ROWS = 200_000


def std_floor(std: np.ndarray, center: np.ndarray | float = 0.0) -> np.ndarray:
    """Scale of each column: its std, or 1 for a constant column.

    A column counts as constant when its std is 0 or within float64 rounding of 0 relative to its
    mean (at most 6e-16 |mean| for identical values): a relative test, so data of any scale (e.g.
    values around 1e-13) is standardised rather than flattened to a constant.
    """
    return np.where(std > 1e-13 * np.abs(center), std, 1.0)


def column_std(X: np.ndarray) -> np.ndarray:
    """Per-column std; columns of tiny magnitude are rescaled first (their squares underflow)."""
    std = X.std(axis=0)
    peak = np.abs(X).max(axis=0)
    small = (peak > 0) & (peak < 1e-100)
    if small.any():
        std[small] = (X[:, small] / peak[small]).std(axis=0) * peak[small]
    return std


class FeatureScaler:
    """Standardise, power-transform skewed columns, clip: rows as the networks see them.

    Attributes: ``center_`` and ``scale_`` (per column, float64) and ``power_`` (the
    :class:`~swifthydra._power.PowerGate`).
    """

    def __init__(self, center: np.ndarray, scale: np.ndarray, power: PowerGate) -> None:
        self.center_ = np.asarray(center, dtype=np.float64)
        self.scale_ = np.asarray(scale, dtype=np.float64)
        self.power_ = power

    @classmethod
    def fit(cls, X: np.ndarray, feature_transform: str = "auto", seed: int = 0) -> FeatureScaler:
        """Fit on rows ``X`` (float64, finite); ``feature_transform`` as SwiftHydra's."""
        return cls.fit_standardise(X, feature_transform, seed)[0]

    @classmethod
    def fit_standardise(
        cls, X: np.ndarray, feature_transform: str = "auto", seed: int = 0
    ) -> tuple[FeatureScaler, np.ndarray]:
        """Fit on rows ``X`` and return them standardised as well (``standardise(X)``): the one
        pass over ``X`` a fit makes; :meth:`network_input` and the density prior start from it."""
        center = X.mean(axis=0)
        scaler = cls(center, std_floor(column_std(X), center), PowerGate.fit(np.zeros((2, 0)), "standard"))
        Z = scaler.standardise(X)
        sample = Z
        if Z.shape[0] > MAX_POWER_FIT_ROWS:
            sample = Z[np.random.RandomState(seed).choice(Z.shape[0], MAX_POWER_FIT_ROWS, replace=False)]
        scaler.power_ = PowerGate.fit(sample, feature_transform)
        return scaler, Z

    def standardise(self, X: np.ndarray) -> np.ndarray:
        """``(X - center_) / scale_``, clipped (float64)."""
        with np.errstate(over="ignore", invalid="ignore"):
            Z = (X - self.center_) / self.scale_
        return np.clip(Z, -MAX_STANDARDISED, MAX_STANDARDISED)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Rows as the networks see them: standardised, skewed columns power-transformed, float32."""
        return self.network_input(self.standardise(X))

    def network_input(self, Z: np.ndarray) -> np.ndarray:
        """Standardised rows ``Z`` (:meth:`standardise`'s output, left unchanged) as the networks
        see them: skewed columns power-transformed, clipped, float32."""
        return np.clip(self.power_.transform(Z), -MAX_STANDARDISED, MAX_STANDARDISED).astype(np.float32)

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        """Rows of the networks' space back in the input's units (float64)."""
        return self.power_.inverse_transform(np.asarray(Z, dtype=np.float64)) * self.scale_ + self.center_

    def torch_module(self):
        """A ``torch.nn.Module``: float64 rows ``(B, F)`` -> the float32 rows :meth:`transform`
        returns, in torch ops that export to ONNX."""
        return _TorchFeatureScaler(self)


class _TorchFeatureScaler(nn.Module):
    """:class:`FeatureScaler` as torch ops (float64 in, float32 out), for the ONNX graph."""

    def __init__(self, scaler: FeatureScaler) -> None:
        super().__init__()
        self.register_buffer("center", torch.from_numpy(np.ascontiguousarray(scaler.center_, dtype=np.float64)))
        self.register_buffer("scale", torch.from_numpy(np.ascontiguousarray(scaler.scale_, dtype=np.float64)))
        gate = scaler.power_
        self.power = gate.columns.size > 0
        if self.power:  # the Yeo-Johnson transform of the gated columns (swifthydra._power)
            lam, lo, hi, _, _, slope = gate._edges(slice(None))
            for name, value in {"p_columns": gate.columns, "p_lambda": lam, "p_low": lo, "p_high": hi,
                                "p_slope": slope, "p_center": gate.center, "p_scale": gate.scale}.items():
                self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(value)))

    def _power(self, z: torch.Tensor) -> torch.Tensor:
        """Yeo-Johnson of the gated columns inside their training range, linear beyond it."""
        cols = z.index_select(1, self.p_columns)  # (B, P)
        inside = torch.minimum(torch.maximum(cols, self.p_low), self.p_high)
        lam = self.p_lambda
        two = 2.0 - lam
        near0, near2 = lam.abs() < 1e-8, two.abs() < 1e-8
        pos = torch.where(near0, torch.log1p(inside.clamp(min=0.0)),
                          torch.expm1(lam * torch.log1p(inside.clamp(min=0.0))) / torch.where(near0, 1.0, lam))
        neg = torch.where(near2, -torch.log1p(-inside.clamp(max=0.0)),
                          -torch.expm1(two * torch.log1p(-inside.clamp(max=0.0))) / torch.where(near2, 1.0, two))
        t = torch.where(inside >= 0, pos, neg) + self.p_slope * (cols - inside)
        t = (t - self.p_center) / self.p_scale
        return z.index_copy(1, self.p_columns, t)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (B, F) float64
        z = ((features - self.center) / self.scale).clamp(-MAX_STANDARDISED, MAX_STANDARDISED)
        if self.power:
            z = self._power(z).clamp(-MAX_STANDARDISED, MAX_STANDARDISED)
        return z.to(torch.float32)
