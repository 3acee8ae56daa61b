"""read_table: CSV and Parquet, categorical and missing handling, reusable preprocessing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from swifthydra.datasets import TablePreprocessor, read_table
from swifthydra.exceptions import InvalidInputError


@pytest.fixture
def frame():
    return pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e"],
            "amount": [1.0, 2.0, np.nan, 4.0, 100.0],
            "count": [1, 2, 3, 4, 5],
            "country": ["fr", "de", None, "fr", "us"],
            "is_fraud": [0, 0, None, 1, "1"],
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_read_table_encodes_imputes_and_keeps_ids(tmp_path, frame, suffix):
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.astype({"is_fraud": "string"}).to_parquet(path)
    t = read_table(path, label_column="is_fraud", id_column="id")
    assert t.y.tolist() == [0, 0, 0, 1, 1]
    assert t.ids.tolist() == ["a", "b", "c", "d", "e"]
    assert t.feature_names == [
        "amount", "count", "country=__missing__", "country=de", "country=fr", "country=us",
        "country=__other__",
    ]
    assert t.X.shape == (5, 7)
    assert t.X[2, 0] == 3.0  # median of 1, 2, 4, 100
    np.testing.assert_array_equal(t.X[:, 2:].sum(axis=1), np.ones(5))
    assert t.X[2, 2] == 1.0  # missing category


def test_preprocessing_reapplies_by_name_and_roundtrips_json(tmp_path, frame):
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    t = read_table(path, label_column="is_fraud", id_column="id")
    state = json.loads(json.dumps(t.preprocessor.to_dict()))
    pre = TablePreprocessor.from_dict(state)
    new = pd.DataFrame({"country": ["us", "jp"], "count": [7, 8], "amount": [np.nan, 5.0]})
    X = pre.transform(new)  # columns in another order, an unseen category, a missing value
    assert X.shape == (2, 7)
    assert X[0, 0] == 3.0 and X[1, 0] == 5.0
    assert X[1, -1] == 1.0  # unseen -> __other__
    new_path = tmp_path / "new.csv"
    new.assign(id=["x", "y"]).to_csv(new_path, index=False)
    t2 = read_table(new_path, id_column="id", preprocessor=pre)
    np.testing.assert_array_equal(t2.X, X)


def test_column_mismatch_lists_columns(frame):
    pre = TablePreprocessor(exclude=["id", "is_fraud"]).fit(frame)
    with pytest.raises(InvalidInputError, match=r"missing columns \['count'\].*unexpected columns \['extra'\]"):
        pre.transform(frame.drop(columns=["count"]).assign(extra=1))


def test_reject_choices_name_the_columns(tmp_path, frame):
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InvalidInputError, match=r"non-numeric columns \['country'\]"):
        read_table(path, label_column="is_fraud", id_column="id", categorical="reject")
    with pytest.raises(InvalidInputError, match=r"missing values in columns \['amount', 'country'\]"):
        read_table(path, label_column="is_fraud", id_column="id", missing="reject")
    with pytest.raises(InvalidInputError, match="categorical must be"):
        read_table(path, categorical="drop-it")


def test_numeric_column_with_text_at_scoring_time(frame):
    pre = TablePreprocessor(exclude=["id", "is_fraud"]).fit(frame)
    bad = frame.drop(columns=["id", "is_fraud"]).astype({"amount": object})
    bad.loc[1, "amount"] = "lots"
    with pytest.raises(InvalidInputError, match="'amount' holds non-numeric"):
        pre.transform(bad)


def test_broken_files(tmp_path):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3,4,5,6\n")
    with pytest.raises(InvalidInputError, match="cannot read"):
        read_table(ragged)
    fake = tmp_path / "fake.parquet"
    fake.write_text("this is text, not parquet")
    with pytest.raises(InvalidInputError, match="cannot read"):
        read_table(fake)
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_table(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b\n")
    with pytest.raises(InvalidInputError, match="no data rows"):
        read_table(empty)
    odd = tmp_path / "x.xlsx"
    odd.write_text("x")
    with pytest.raises(InvalidInputError, match="unsupported file type"):
        read_table(odd)
    ok = tmp_path / "ok.csv"
    ok.write_text("a,b\n1,2\n")
    with pytest.raises(InvalidInputError, match="label column 'label' is not in"):
        read_table(ok, label_column="label")
