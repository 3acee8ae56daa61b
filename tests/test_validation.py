"""Input checks: each bad input gets one clear InvalidInputError."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from swifthydra._validation import check_X, check_y
from swifthydra.exceptions import InvalidInputError, SwiftHydraError


@pytest.mark.parametrize(
    "X, match",
    [
        (None, "is None"),
        (np.array([[1.0, np.nan]]), "NaN"),
        (np.array([[1.0, np.inf]]), "infinite"),
        (np.array([1.0, 2.0]), "must be 2-D.*reshape"),
        (np.zeros((2, 2, 2)), "must be 2-D"),
        (np.zeros((0, 3)), "0 rows"),
        (np.zeros((3, 0)), "0 feature"),
        ([["a", "b"]], "non-numeric"),
        (np.array([[1 + 1j]]), "complex"),
        (np.array([[1e300, 0.0]]), "magnitude"),
        (np.array([[-1e31, 0.0]]), "magnitude"),
        ([[1, 2], [3]], "cannot be read|non-numeric"),
        (pd.DataFrame({"a": [1.0], "b": ["x"]}), r"non-numeric columns \['b'\]"),
    ],
)
def test_bad_X(X, match):
    with pytest.raises(InvalidInputError, match=match) as info:
        check_X(X)
    assert isinstance(info.value, SwiftHydraError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_float32_overflow_is_caught():
    with pytest.raises(InvalidInputError, match="too large for float32"):
        check_X(np.array([[1e39]]), dtype=np.float32, max_abs=None)


def test_good_inputs():
    assert check_X(torch.ones(3, 2)).dtype == np.float64
    assert check_X(pd.DataFrame({"a": [1, 2], "b": [True, False]})).shape == (2, 2)
    assert check_X([[1, 2]], dtype=np.float32).dtype == np.float32
    with pytest.raises(InvalidInputError, match="fitted with 3"):
        check_X(np.ones((2, 2)), n_features=3)


def test_check_y():
    assert check_y([0, 1, 1.0], 3).tolist() == [0, 1, 1]
    assert check_y(np.array([[0], [1]]), 2).tolist() == [0, 1]
    for y, match in [([0, 2], "only 0"), ([0, 1, 0], "3 labels but X has 2"), (["a", "b"], "0 .*1"), ([0, np.nan], "only 0")]:
        with pytest.raises(InvalidInputError, match=match):
            check_y(y, 2)
