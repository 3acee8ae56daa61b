"""Parameter and input checks of the neural detectors: one clear error per bad value."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from swifthydra.exceptions import InvalidInputError


def check_int(name: str, value: Any, low: int, high: float = math.inf) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not (low <= value <= high)
    ):
        bound = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
        raise InvalidInputError(f"{name} must be an integer {bound}, got {value!r}.")


def check_float(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = (
            math.isfinite(v)
            and (v > low if low_open else v >= low)
            and (v < high if high_open else v <= high)
        )
    if not ok:
        lb, hb = "(" if low_open else "[", ")" if high_open else "]"
        raise InvalidInputError(f"{name} must be a number in {lb}{low}, {high}{hb}, got {value!r}.")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidInputError(f"{name} must be one of {list(choices)}, got {value!r}.")


def check_vector(v: Any, n_rows: int, name: str, *, nonneg: bool = False) -> np.ndarray:
    if hasattr(v, "detach") and hasattr(v, "cpu"):
        v = v.detach().cpu().numpy()
    try:
        arr = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a 1-D array of numbers.") from None
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise InvalidInputError(
            f"{name} must be 1-D with one value per row ({n_rows}), got shape {arr.shape}."
        )
    if not np.isfinite(arr).all():
        raise InvalidInputError(f"{name} contains NaN or infinite values.")
    if nonneg and (arr < 0).any():
        raise InvalidInputError(f"{name} must be >= 0.")
    return arr
