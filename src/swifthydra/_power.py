"""Yeo-Johnson power transform of heavily skewed columns (SwiftHydra's ``feature_transform="auto"``).

Neural detectors learn poorly from a column whose rows crowd into a corner of its range (hormone
levels, byte counts, ...): after standardisation nearly every row sits at -0.3 and a few at 40.
Trees do not care; a network does. Only columns with more than two distinct values and
``|skewness| > 2`` are transformed: the gate and the measurements behind it (with their commands)
are in docs/design.md §2.2.

The transform runs on standardised values ``z`` (so ``λ`` does not depend on the data's units),
then re-standardises. Forward and inverse are exact, monotone and finite for any finite input.
"""

from __future__ import annotations

import warnings

import numpy as np

SKEW_THRESHOLD = 2.0
_LAMBDA_RANGE = (-4.0, 6.0)  # keeps |z|**λ finite in float64 for |z| <= 1e6
_EPS = 1e-8


def yeo_johnson(z: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Yeo-Johnson transform of each column of ``z`` (float64) with its own ``λ``.

    Both branches in one pass: with ``L = log1p(|z|)`` and ``a = λ`` (z >= 0) or ``2 - λ`` (z < 0),
    the transform is ``sign(z) · expm1(a L) / a`` (``sign(z) · L`` where ``a = 0``).
    """
    z = np.asarray(z, dtype=np.float64)
    lam = np.asarray(lam, dtype=np.float64)
    neg = z < 0
    a = np.where(neg, 2.0 - lam, lam)
    L = np.log1p(np.abs(z))
    flat = np.abs(a) < _EPS
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.expm1(a * L)
        out /= np.where(flat, 1.0, a)
    if flat.any():
        np.copyto(out, L, where=flat)
    np.negative(out, out=out, where=neg)
    return out


def yeo_johnson_inverse(t: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Inverse of :func:`yeo_johnson` on its range."""
    t = np.asarray(t, dtype=np.float64)
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), t.shape)
    out = np.empty_like(t)
    pos = t >= 0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        lp, tp = lam[pos], t[pos]
        safe = np.where(np.abs(lp) < _EPS, 1.0, lp)
        out[pos] = np.where(np.abs(lp) < _EPS, np.expm1(tp), np.expm1(np.log1p(lp * tp) / safe))
        ln, tn = lam[~pos], t[~pos]
        two = 2.0 - ln
        safe = np.where(np.abs(two) < _EPS, 1.0, two)
        out[~pos] = np.where(np.abs(two) < _EPS, -np.expm1(-tn), -np.expm1(np.log1p(-two * tn) / safe))
    return out


class PowerGate:
    """Which standardised columns get a Yeo-Johnson transform, and its fitted constants.

    For each transformed column ``j`` (``columns``): ``λ`` (``lambdas``), the training range
    ``[low, high]`` of its standardised values, and ``center``/``scale`` that re-standardise the
    transformed values. Outside the training range the map continues linearly with its mean slope
    over that range: the transform stays monotone and unbounded, so a row far beyond anything seen
    in training still scores as far out instead of being squashed against the transform's bound.
    """

    def __init__(self, columns, lambdas, low, high, center, scale) -> None:
        self.columns = np.asarray(columns, dtype=np.int64)
        self.lambdas = np.asarray(lambdas, dtype=np.float64)
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        self.center = np.asarray(center, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The constants by name (what a model file stores)."""
        return {"columns": self.columns, "lambdas": self.lambdas, "low": self.low, "high": self.high,
                "center": self.center, "scale": self.scale}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> PowerGate:
        gate = cls(**{k: np.asarray(arrays[k]) for k in ("columns", "lambdas", "low", "high", "center", "scale")})
        k = gate.columns.size
        if any(a.shape != (k,) for a in gate.arrays.values()) or (gate.low > gate.high).any():
            raise ValueError("power-transform constants of inconsistent shape")
        finite = [np.isfinite(a).all() for a in gate.arrays.values()]
        if not all(finite) or (gate.scale <= 0).any() or (gate.high - gate.low <= 0).any():
            raise ValueError("non-finite or degenerate power-transform constants")
        return gate

    @classmethod
    def fit(cls, Z: np.ndarray, mode: str) -> PowerGate:
        """Choose columns of the standardised rows ``Z`` and fit ``λ`` per column by maximum
        likelihood. ``mode``: ``"auto"`` (non-binary columns with ``|skewness| > 2``),
        ``"yeo-johnson"`` (every non-binary column) or ``"standard"`` (none)."""
        from scipy import stats

        columns: list[int] = []
        if mode != "standard":
            for j in range(Z.shape[1]):
                col = Z[:, j]
                if np.unique(col).size <= 2:
                    continue  # binary or constant: any monotone map is affine here
                if mode == "auto":
                    with warnings.catch_warnings(), np.errstate(all="ignore"):
                        warnings.simplefilter("ignore")
                        skew = float(stats.skew(col))
                    if not (np.isfinite(skew) and abs(skew) > SKEW_THRESHOLD):
                        continue
                columns.append(j)
        gate = cls(columns, *(np.zeros(len(columns)) for _ in range(5)))
        for i, j in enumerate(columns):
            col = Z[:, j].astype(np.float64)
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                lam = float(stats.yeojohnson_normmax(col))
            gate.lambdas[i] = float(np.clip(lam if np.isfinite(lam) else 1.0, *_LAMBDA_RANGE))
            gate.low[i], gate.high[i] = float(col.min()), float(col.max())
            gate.center[i], gate.scale[i] = 0.0, 1.0
            t = gate._forward(col[:, None], [i])[:, 0]
            mu, sd = float(t.mean()), float(t.std())
            gate.center[i], gate.scale[i] = mu, (sd if sd > 1e-12 * max(abs(mu), 1.0) else 1.0)
        return gate

    def _edges(self, idx) -> tuple[np.ndarray, ...]:
        lam, lo, hi = self.lambdas[idx], self.low[idx], self.high[idx]
        t_lo = yeo_johnson(lo[None, :], lam[None, :])[0]
        t_hi = yeo_johnson(hi[None, :], lam[None, :])[0]
        slope = (t_hi - t_lo) / (hi - lo)
        return lam, lo, hi, t_lo, t_hi, slope

    def _forward(self, Z: np.ndarray, idx) -> np.ndarray:
        lam, lo, hi, _, _, slope = self._edges(idx)
        inside = np.clip(Z, lo, hi)
        T = yeo_johnson(inside, lam[None, :]) + slope * (Z - inside)
        return (T - self.center[idx]) / self.scale[idx]

    def transform(self, Z: np.ndarray) -> np.ndarray:
        """Transform standardised rows ``Z`` (a copy); other columns pass unchanged."""
        if not self.columns.size:
            return Z
        Z = np.array(Z, dtype=np.float64, copy=True)
        Z[:, self.columns] = self._forward(Z[:, self.columns], slice(None))
        return Z

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        """Standardised rows from transformed rows ``Z`` (a copy)."""
        if not self.columns.size:
            return Z
        lam, lo, hi, t_lo, t_hi, slope = self._edges(slice(None))
        Z = np.array(Z, dtype=np.float64, copy=True)
        T = Z[:, self.columns] * self.scale + self.center
        inside = np.clip(T, t_lo, t_hi)
        out = yeo_johnson_inverse(inside, lam[None, :])
        out = np.clip(out, lo, hi) + (T - inside) / slope
        Z[:, self.columns] = out
        return Z
