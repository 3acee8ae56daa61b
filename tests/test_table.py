"""read_table: CSV and Parquet, categorical and missing handling, reusable preprocessing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from swifthydra.datasets import TablePreprocessor, read_table
from swifthydra.exceptions import DataWarning, InvalidInputError


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


@pytest.mark.parametrize(
    ("change", "problems", "advice"),
    [
        (lambda f: f.assign(extra=1), "unexpected columns ['extra']",
         "To score it, drop the unexpected columns (a column that only identifies the rows can be named as the id column"),
        (lambda f: f.drop(columns=["count"]), "missing columns ['count']",
         "To score it, add the missing columns: the model scores with every training column."),
        (lambda f: f.rename(columns={"count": "n"}), "missing columns ['count']; unexpected columns ['n']",
         "To score it, give a renamed column its training name, add the other missing columns and drop the other "
         "unexpected ones"),
        (lambda f: f.set_axis(["amount" if c == "count" else c for c in f.columns], axis=1),
         "missing columns ['count']; duplicated columns ['amount']",
         "add the missing columns: the model scores with every training column; give every column its own name."),
    ],
    ids=["extra", "missing", "renamed", "duplicated"],
)
def test_column_mismatch_says_what_to_do(frame, change, problems, advice):
    pre = TablePreprocessor(exclude=["id", "is_fraud"]).fit(frame)
    with pytest.raises(InvalidInputError) as info:
        pre.check_columns(list(change(frame).columns))
    message = str(info.value)
    assert message.startswith(f"the table does not match the training columns: {problems}. ")
    assert advice in message


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


@pytest.mark.parametrize(
    "name, content",
    [
        ("semicolon.csv", "a;b;label\n1.5;x;1\n2;y;0\n3;x;0\n"),
        ("tab.csv", "a\tb\tlabel\n1.5\tx\t1\n2\ty\t0\n3\tx\t0\n"),
        ("pipe.txt", "a|b|label\n1.5|x|1\n2|y|0\n3|x|0\n"),
        ("quoted.csv", 'a,b,label\n1.5,"x;1|2",1\n2,y,0\n3,"x;1|2",0\n'),
        ("plain.tsv", "a\tb\tlabel\n1.5\tx\t1\n2\ty\t0\n3\tx\t0\n"),
    ],
)
def test_the_separator_is_detected(tmp_path, name, content):
    from swifthydra.tabular.table import iter_table, table_columns

    path = tmp_path / name
    path.write_text(content)
    assert table_columns(path) == ["a", "b", "label"]
    t = read_table(path, label_column="label")
    assert t.y.tolist() == [1, 0, 0]
    assert t.X[:, 0].tolist() == [1.5, 2.0, 3.0]
    assert t.feature_names[0] == "a" and t.feature_names[1].startswith("b=")
    chunks = list(iter_table(path, ["a", "b"], chunk_rows=2, string_columns=["b"]))
    assert pd.concat(chunks)["a"].tolist() == [1.5, 2.0, 3.0]


def test_a_header_split_by_no_separator_is_an_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a;b\n1\n2\n")  # the header says ';', the rows do not
    with pytest.raises(InvalidInputError, match=r"single column 'a;b': its header holds ';'"):
        read_table(path)
    from swifthydra.tabular.table import table_columns

    with pytest.raises(InvalidInputError, match="single column"):
        table_columns(path)
    single = tmp_path / "single.csv"
    single.write_text("value\n1\n2\n")  # one column without any separator is fine
    assert read_table(single).X.tolist() == [[1.0], [2.0]]


@pytest.mark.parametrize(
    "content, match",
    [
        ("a,b\n1,2\n3,4\n5,6,7\n", "Expected 2 fields in line 4, saw 3"),
        ("a,b\n1,2,3\n4,5,6\n", "line 2 has 3 fields but the header has 2"),  # pandas: a row index
        ("a,b\n\n1,2,3\n4,5\n", "line 3 has 3 fields but the header has 2"),
        ("a,b\n1,2,\n4,5,\n", "line 2 has 3 fields .*separator at the end of the lines"),
    ],
)
def test_rows_with_too_many_fields_name_their_line(tmp_path, content, match):
    from swifthydra.tabular.table import iter_table

    path = tmp_path / "ragged.csv"
    path.write_text(content)
    with pytest.raises(InvalidInputError, match=match):
        read_table(path)
    for columns in (["a", "b"], ["a"]):  # also when not every column is wanted
        with pytest.raises(InvalidInputError, match=match):
            list(iter_table(path, columns, chunk_rows=1))


def test_iter_table_names_absent_columns(tmp_path):
    from swifthydra.tabular.table import iter_table

    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InvalidInputError, match=r"columns \['z'\] are not in the file"):
        list(iter_table(path, ["a", "z"]))


def test_numbers_read_as_text_or_objects_are_numeric(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("a,b,c\n1,99999999999999999999999999,x\n2,3,y\n3,,x\n")
    t = read_table(path)  # pandas reads b as Python ints in an object column
    assert t.feature_names == ["a", "b", "c=x", "c=y", "c=__other__"]
    assert t.X[:, 1].tolist() == [1e26, 3.0, (1e26 + 3.0) / 2]  # the missing value gets the median
    pre = TablePreprocessor.from_dict(json.loads(json.dumps(t.preprocessor.to_dict())))
    # at scoring time the same column may come as int64, float64 or objects, chunk by chunk
    for b in (pd.Series([5, 6]), pd.Series([5.0, np.nan]), pd.Series([10**20, 6], dtype=object), pd.Series(["5", "6"])):
        X = pre.transform(pd.DataFrame({"a": [1, 2], "b": b, "c": ["x", "y"]}))
        assert X[0, 1] == float(b[0])
    with pytest.raises(InvalidInputError, match="'b' holds non-numeric"):
        pre.transform(pd.DataFrame({"a": [1], "b": ["many"], "c": ["x"]}))
    # text that is not all numbers stays categorical; an all-missing column is left out (issue 23)
    df = pd.DataFrame({"n": ["1", "2", "3"], "t": ["1", "2", "three"], "e": pd.Series([None] * 3, dtype=object)})
    with pytest.warns(DataWarning, match=r"\['e'\] are empty"):
        pre = TablePreprocessor().fit(df)
    assert pre.numeric_columns_ == ["n"] and sorted(pre.categories_) == ["t"] and pre.constant_columns_ == ["e"]


def test_preprocessing_saved_by_an_older_version_loads(frame):
    state = TablePreprocessor(exclude=["id", "is_fraud"]).fit(frame).to_dict()
    for key in ("dropped_columns", "modes"):  # not written by the first format
        state.pop(key)
    pre = TablePreprocessor.from_dict(state)
    X = pre.transform(frame.drop(columns=["id", "is_fraud"]).astype({"count": object}))
    assert X.shape == (5, 7) and X[:, 1].tolist() == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------- kinds, timestamps, ranges
def _timed_frame(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x": rng.normal(size=n),
        "when": pd.date_range("2024-03-01 06:00", periods=n, freq="5h").strftime("%Y-%m-%dT%H:%M:%S"),
        "city": rng.choice(["paris", "lyon"], n),
    })


def test_kinds_timestamps_and_ranges_roundtrip_json_and_transform_identically():
    df = _timed_frame()
    df.loc[3, "when"] = None
    pre = TablePreprocessor().fit(df)
    assert pre.kinds_ == {"x": "numeric", "when": "datetime", "city": "categorical"}
    assert pre.feature_names_ == ["x", "when:hour", "when:weekday", "when:elapsed_days",
                                  "city=lyon", "city=paris", "city=__other__"]
    assert pre.ranges_ == {"x": [df["x"].min(), df["x"].max()]}
    state = json.loads(json.dumps(pre.to_dict()))
    assert state["kinds"] == pre.kinds_ and state["datetimes"][0][0] == "when"
    back = TablePreprocessor.from_dict(state)
    new = _timed_frame(n=20, seed=1)
    new["x"] = new["x"] * 5  # some values beyond the training range
    np.testing.assert_array_equal(back.transform(df), pre.transform(df))
    a, b = pre.transform_checked(new), back.transform_checked(new)
    np.testing.assert_array_equal(a.X, b.X)
    outside = int(((new["x"] < df["x"].min()) | (new["x"] > df["x"].max())).sum())
    assert outside > 0 and a.out_of_range == b.out_of_range == {"x": outside}
    X = pre.transform(df)
    # 2024-03-01 06:00 was a Friday (weekday 4); the first timestamp is the origin
    np.testing.assert_allclose(X[0, 1:4], [6.0, 4.0, 0.0])
    np.testing.assert_allclose(X[1, 1:4], [11.0, 4.0, 5 / 24])
    np.testing.assert_allclose(X[3, 1:4], pre.baseline_()[1:4])  # missing: the median timestamp


def test_only_iso_dates_are_timestamps_and_numbers_as_text_stay_numeric():
    n = 6
    df = pd.DataFrame({
        "iso_date": [f"2024-01-0{i}" for i in range(1, n + 1)],
        "zulu": ["2024-01-01T10:00:00Z", "2024-01-01T11:00:00+01:00", "2024-01-02T10:00:00Z"] * 2,
        "ids": [f"2024-{i}" for i in range(n)],  # codes that are not dates
        "slashes": ["01/02/2024", "03/02/2024"] * 3,  # ambiguous day/month: a category
        "compact": ["20240101", "20240102"] * 3,  # a number
        "bad_month": ["2024-13-01", "2024-14-01"] * 3,  # ISO-shaped but not a date
        "numbers_as_text": pd.Series([str(i) for i in range(n)], dtype="string"),
        "stamp": pd.date_range("2024-01-01", periods=n, freq="D", tz="America/New_York"),
    })
    pre = TablePreprocessor().fit(df)
    assert pre.kinds_ == {
        "iso_date": "datetime", "zulu": "datetime", "ids": "categorical", "slashes": "categorical",
        "compact": "numeric", "bad_month": "categorical", "numbers_as_text": "numeric", "stamp": "datetime",
    }
    X = pre.transform(df)
    names = pre.feature_names_
    # times with an offset or a time zone are taken in UTC: 10:00Z and 11:00+01:00 are the same instant
    hour = names.index("zulu:hour")
    assert X[0, hour] == X[1, hour] == 10.0
    assert X[0, names.index("stamp:hour")] == 5.0  # midnight in New York = 05:00 UTC


def test_a_column_of_another_kind_is_an_error_and_bad_values_name_a_1_based_row():
    df = _timed_frame(n=10)
    pre = TablePreprocessor().fit(df)
    with pytest.raises(InvalidInputError, match=r"column 'x' held numbers in training but holds dates/times \(datetime64\) now"):
        pre.transform(df.assign(x=pd.date_range("2024-01-01", periods=10)))
    with pytest.raises(InvalidInputError, match=r"column 'when' held dates/times in training but holds text now \('soon' in data row 1"):
        pre.transform(df.assign(when=["soon"] * 10))
    with pytest.raises(InvalidInputError, match="column 'city' held text categories in training but holds numbers now"):
        pre.transform(df.assign(city=np.arange(10.0)))
    # an all-missing column is of no kind: imputed
    X = pre.transform(df.assign(when=None, x=np.nan, city=None))
    np.testing.assert_allclose(X[:, :4], np.tile(pre.baseline_()[:4], (10, 1)))
    bad = df.astype({"x": object})
    bad.loc[4, "x"] = "n/a"
    bad.loc[7, "when"] = "2024-02-30T10:00:00"
    with pytest.raises(InvalidInputError, match=r"column 'x' holds non-numeric values.*'n/a' in data row 5 .*, and 1 more row"):
        pre.transform(bad)
    with pytest.raises(InvalidInputError, match=r"'n/a' in data row 105 "):
        pre.transform_checked(bad, first_row=101)
    for policy in ("skip", "nan"):
        out = pre.transform_checked(bad, on_bad_rows=policy)
        assert np.flatnonzero(out.bad).tolist() == [4, 7] and "data row 5" in out.first_bad
        np.testing.assert_array_equal(out.X[~out.bad], pre.transform(df)[~out.bad])
        np.testing.assert_array_equal(out.X[4], pre.baseline_())
    huge = pre.transform_checked(df.assign(x=[1e300] + [0.0] * 9), on_bad_rows="skip", max_abs=1e30)
    assert huge.bad.tolist() == [True] + [False] * 9 and "magnitude 1e+300" in huge.first_bad


def test_old_preprocessing_without_kinds_ranges_or_timestamps_still_loads(frame):
    pre = TablePreprocessor(exclude=["id", "is_fraud"]).fit(frame)
    state = json.loads(json.dumps(pre.to_dict()))
    for key in ("kinds", "ranges", "datetimes"):
        state.pop(key)
    old = TablePreprocessor.from_dict(state)
    assert old.kinds_ == pre.kinds_ and old.ranges_ == {} and old.datetimes_ == {}
    new = frame.drop(columns=["id", "is_fraud"]).assign(amount=1e6)
    np.testing.assert_array_equal(old.transform(new), pre.transform(new))
    assert old.transform_checked(new).out_of_range == {}  # no ranges stored: no range check
    assert pre.transform_checked(new).out_of_range == {"amount": 5, "count": 0}
    state["kinds"] = {**pre.kinds_, "amount": "datetime"}
    with pytest.raises(InvalidInputError, match="column kinds do not match"):
        TablePreprocessor.from_dict(state)
