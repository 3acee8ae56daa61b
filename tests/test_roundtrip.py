"""Round trips of a user's table: what is saved and loaded again scores exactly as before."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from swifthydra.datasets.table import TablePreprocessor
from swifthydra.io import read_model_json, save_model_dir


def _two_categories(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x1": rng.normal(size=n),
        "zone": rng.choice(list("ABCD"), n),  # after "app" alphabetically: the order a sorted file would lose
        "x2": rng.normal(size=n),
        "app": rng.choice(["ios", "android", "web"], n),
    })


def test_categorical_columns_keep_their_training_order_through_a_model_file(tmp_path):
    df = _two_categories()
    pre = TablePreprocessor().fit(df)
    assert list(pre.categories_) == ["zone", "app"]
    save_model_dir(tmp_path / "m", "test.kind", {}, {"w": torch.zeros(1)},
                   extra_files={"preprocessing.json": pre.to_dict()})
    back = TablePreprocessor.from_dict(read_model_json(tmp_path / "m", "preprocessing.json"))
    assert back.feature_names_ == pre.feature_names_
    np.testing.assert_array_equal(back.transform(df), pre.transform(df))


def test_a_file_written_with_sorted_keys_is_read_in_training_order():
    """Model files written before the fix hold the categories as an object with sorted keys:
    input_columns still has the training order, and loading follows it."""
    df = _two_categories()
    pre = TablePreprocessor().fit(df)
    state = pre.to_dict()
    state["categories"] = dict(sorted((c, cats) for c, cats in state["categories"]))
    back = TablePreprocessor.from_dict(state)
    assert list(back.categories_) == ["zone", "app"]
    np.testing.assert_array_equal(back.transform(df), pre.transform(df))
