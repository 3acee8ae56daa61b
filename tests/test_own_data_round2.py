"""A user's own table, right every time (issue 23): numbers written with separators, empty and
constant columns, duplicate column names, time zones, one label vocabulary for fit and evaluate,
one-line errors for bad options and warnings. Through the real command line or the public API,
on tiny tables."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from _cli import error_line as _error_line
from _cli import invoke as _invoke
from swifthydra.cli.evaluate import TRUE_ANOMALY, TRUE_NORMAL, truth_labels
from swifthydra.datasets import TablePreprocessor, read_table
from swifthydra.exceptions import DataWarning, InvalidInputError
from swifthydra.tabular.table import (
    NEGATIVE_LABELS,
    POSITIVE_LABELS,
    iter_table,
    labels_from_column,
    parse_formatted_numbers,
)

FAST = ["--quick", "--generator", "rl", "--episodes", "0", "--seed", "0"]


def _amounts(n=300, seed=0):
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(6.0, 1.0, n).round(2)
    label = np.zeros(n, dtype=int)
    label[:6] = 1
    amount[:6] *= 40
    return amount, label, rng


# -- numbers with thousands separators, currency signs, decimal commas -------------------------
def test_parse_formatted_numbers_reads_separators_and_refuses_ambiguity():
    got = parse_formatted_numbers(["1,500.64", "$1,500", "-2,000,000.5", "12", "€ 3.5", "1'234.5", None], ".")
    np.testing.assert_array_equal(got, [1500.64, 1500.0, -2000000.5, 12.0, 3.5, 1234.5, np.nan])
    assert np.isnan(parse_formatted_numbers(["1,2", "12,34.5", "1,5000", "abc", "1.2.3"], ".")).all()
    got = parse_formatted_numbers(["1.500,64", "12,5", "1 500,25", "7"], ",")
    np.testing.assert_array_equal(got, [1500.64, 12.5, 1500.25, 7.0])


def test_thousands_separators_are_numbers_not_categories(tmp_path):
    amount, label, _ = _amounts()
    plain = pd.DataFrame({"amount": amount, "label": label})
    written = pd.DataFrame({"amount": [f"{v:,.2f}" for v in amount], "label": label})
    assert written["amount"].str.contains(",").any()
    plain.to_csv(tmp_path / "plain.csv", index=False)
    written.to_csv(tmp_path / "written.csv", index=False)
    a = read_table(tmp_path / "plain.csv", "label")
    b = read_table(tmp_path / "written.csv", "label")
    assert b.feature_names == ["amount"] and b.preprocessor.number_formats_ == {"amount": "."}
    np.testing.assert_array_equal(a.X, b.X)
    # the saved preprocessing reads the same spelling at scoring time, and plain numbers too
    pre = TablePreprocessor.from_dict(b.preprocessor.to_dict())
    np.testing.assert_array_equal(pre.transform(written.drop(columns="label")), a.X)
    np.testing.assert_array_equal(pre.transform(plain.drop(columns="label")), a.X)
    # a value that is not such a number is a bad value naming its column and row
    bad = written.drop(columns="label").copy()
    bad.loc[4, "amount"] = "1,2,3"
    with pytest.raises(InvalidInputError, match=r"column 'amount' holds non-numeric values.*'1,2,3'.*data row 5"):
        pre.transform(bad)


def test_currency_and_decimal_comma_in_a_semicolon_file(tmp_path):
    amount, label, _ = _amounts()
    euro = [f"{v:,.2f} €".replace(",", "X").replace(".", ",").replace("X", ".") for v in amount]
    df = pd.DataFrame({"amount": euro, "fee": [f"{v:.1f}".replace(".", ",") for v in amount / 100], "label": label})
    df.to_csv(tmp_path / "eu.csv", index=False, sep=";")
    t = read_table(tmp_path / "eu.csv", "label")
    assert t.feature_names == ["amount", "fee"]
    np.testing.assert_allclose(t.X[:, 0], amount)
    np.testing.assert_allclose(t.X[:, 1], np.round(amount / 100, 1))
    # the decimal comma is not guessed in a comma-separated file: "12,5" stays text there
    df[["fee", "label"]].to_csv(tmp_path / "us.csv", index=False)
    assert read_table(tmp_path / "us.csv", "label").preprocessor.kinds_["fee"] == "categorical"


def test_cli_fit_and_score_a_table_with_separators(tmp_path):
    amount, label, rng = _amounts()
    df = pd.DataFrame({"amount": [f"${v:,.2f}" for v in amount], "zone": rng.choice(["c", "a", "b"], len(amount)),
                       "label": label})
    df.to_csv(tmp_path / "t.csv", index=False)
    fit = _invoke("fit", tmp_path / "t.csv", "--label-column", "label", "--out", tmp_path / "m", *FAST)
    assert fit.exit_code == 0, fit.output
    assert "numbers with separators or a currency sign ['amount']" in fit.output
    assert "2 columns -> 5 features" in fit.output  # amount + zone's three categories and __other__
    info = _invoke("info", tmp_path / "m")
    assert "formatted      amount (decimal '.')" in info.output, info.output
    scored = _invoke("score", tmp_path / "m", tmp_path / "t.csv", "--out", tmp_path / "s.csv")
    assert scored.exit_code == 0, scored.output


# -- empty and constant columns ----------------------------------------------------------------
def test_empty_and_constant_columns_are_left_out_with_a_warning(tmp_path):
    amount, label, rng = _amounts()
    df = pd.DataFrame({"amount": amount, "empty": np.nan, "one": 7.0, "same": "x",
                       "zone": rng.choice(["b", "a"], len(amount)), "label": label})
    with pytest.warns(DataWarning, match=r"columns \['empty', 'one', 'same'\] are empty or hold a single value"):
        pre = TablePreprocessor(exclude=["label"]).fit(df)
    assert pre.constant_columns_ == ["empty", "one", "same"]
    assert pre.input_columns_ == ["amount", "zone"]
    X = pre.transform(df.drop(columns="label"))
    # the empty column holding values later changes nothing (it was never a feature) ...
    later = df.drop(columns="label").assign(empty=1e9, one=-5.0, same="y")
    np.testing.assert_array_equal(pre.transform(later), X)
    # ... and it may be absent at scoring time
    np.testing.assert_array_equal(pre.transform(df.drop(columns=["label", "empty", "one", "same"])), X)
    assert TablePreprocessor.from_dict(pre.to_dict()).constant_columns_ == pre.constant_columns_


def test_a_single_value_beside_missing_ones_is_kept():
    df = pd.DataFrame({"flag": [1.0, np.nan] * 20, "x": np.arange(40.0)})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        pre = TablePreprocessor().fit(df)
    assert pre.input_columns_ == ["flag", "x"]


def test_only_constant_columns_is_an_error():
    with pytest.raises(InvalidInputError, match="every feature column is empty or holds a single value"):
        TablePreprocessor().fit(pd.DataFrame({"a": [np.nan] * 5, "b": ["x"] * 5}))


def test_cli_names_left_out_columns_and_scores_a_filled_empty_column_normally(tmp_path):
    amount, label, rng = _amounts()
    df = pd.DataFrame({"amount": amount, "velocity": rng.normal(size=len(amount)), "notes": np.nan, "label": label})
    df.to_csv(tmp_path / "t.csv", index=False)
    fit = _invoke("fit", tmp_path / "t.csv", "--label-column", "label", "--out", tmp_path / "m", *FAST)
    assert fit.exit_code == 0, fit.output
    assert "warning: columns ['notes'] are empty or hold a single value in training" in fit.output
    assert "table.py" not in fit.output  # a one-line warning, no library path
    assert "left out       notes" in _invoke("info", tmp_path / "m").output
    df.assign(notes=123456.0).to_csv(tmp_path / "later.csv", index=False)
    for name in ("t", "later"):
        result = _invoke("score", tmp_path / "m", tmp_path / f"{name}.csv", "--out", tmp_path / f"{name}.s.csv")
        assert result.exit_code == 0, result.output
    before, after = pd.read_csv(tmp_path / "t.s.csv"), pd.read_csv(tmp_path / "later.s.csv")
    np.testing.assert_array_equal(before["score"], after["score"])


# -- duplicate column names --------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_duplicate_column_names_are_refused_naming_them(tmp_path, kind):
    path = tmp_path / f"dup.{kind}"
    if kind == "csv":
        path.write_text("amount,zone,amount\n1,a,2\n3,b,4\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table([[1, 3], ["a", "b"], [2, 4]], names=["amount", "zone", "amount"]), path)
    with pytest.raises(InvalidInputError, match=r"columns \['amount'\] appear more than once"):
        read_table(path)
    with pytest.raises(InvalidInputError, match=r"columns \['amount'\] appear more than once"):
        next(iter(iter_table(path)))


def test_duplicate_columns_at_fit_and_score_through_the_cli(tmp_path):
    amount, label, rng = _amounts()
    good = pd.DataFrame({"amount": amount, "velocity": rng.normal(size=len(amount)), "label": label})
    good.to_csv(tmp_path / "t.csv", index=False)
    dup = good.copy()
    dup.columns = ["amount", "amount", "label"]
    dup.to_csv(tmp_path / "dup.csv", index=False)
    line = _error_line(_invoke("fit", tmp_path / "dup.csv", "--label-column", "label", "--out", tmp_path / "x", *FAST))
    assert "columns ['amount'] appear more than once" in line
    assert _invoke("fit", tmp_path / "t.csv", "--label-column", "label", "--out", tmp_path / "m", *FAST).exit_code == 0
    line = _error_line(_invoke("score", tmp_path / "m", tmp_path / "dup.csv", "--out", tmp_path / "s.csv"))
    assert "columns ['amount'] appear more than once" in line


# -- time zones --------------------------------------------------------------------------------
def _times(n=48, tz=None):
    times = pd.date_range("2024-03-01 08:00", periods=n, freq="h", tz=tz)
    return pd.DataFrame({"time": times, "x": np.arange(n, dtype=float)})


def test_time_zones_are_remembered_and_the_other_kind_is_an_error():
    naive = _times()
    text = naive.assign(time=naive["time"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    pre = TablePreprocessor().fit(text)
    assert pre.time_zones_ == {"time": {"kind": "naive", "zone": ""}}
    with pytest.raises(InvalidInputError, match=r"column 'time' held times with no time zone in training but holds "
                                                r"times with a time zone \(\+02:00\)"):
        pre.transform(text.assign(time=text["time"] + "+02:00"))
    with pytest.raises(InvalidInputError, match="held times with no time zone in training"):
        pre.transform(_times(tz="Europe/Paris"))
    np.testing.assert_array_equal(pre.transform(naive), pre.transform(text))  # naive datetime64 is fine
    aware = TablePreprocessor().fit(_times(tz="Europe/Paris"))
    assert aware.time_zones_["time"] == {"kind": "aware", "zone": "Europe/Paris"}
    with pytest.raises(InvalidInputError, match=r"held times with a time zone \(Europe/Paris\) in training but "
                                                r"holds times without a time zone"):
        aware.transform(text)
    # aware times in another zone are the same instants: converted to UTC, as documented
    utc = _times(tz="Europe/Paris").assign(time=lambda d: d["time"].dt.tz_convert("UTC"))
    np.testing.assert_array_equal(aware.transform(utc), aware.transform(_times(tz="Europe/Paris")))
    assert TablePreprocessor.from_dict(aware.to_dict()).time_zones_ == aware.time_zones_


def test_mixed_time_zones_in_one_column_are_an_error():
    df = _times()
    text = df.assign(time=df["time"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    text.loc[3, "time"] = "2024-03-01 11:00:00Z"
    with pytest.raises(InvalidInputError, match=r"column 'time' mixes times with a time zone \(Z\) and times without "
                                                r"one \('2024-03-01 11:00:00Z' in data row 4"):
        TablePreprocessor().fit(text)


def test_old_preprocessing_files_without_time_zones_still_score():
    pre = TablePreprocessor().fit(_times())
    state = pre.to_dict()
    del state["time_zones"], state["number_formats"], state["constant_columns"]
    old = TablePreprocessor.from_dict(state)
    np.testing.assert_array_equal(old.transform(_times()), pre.transform(_times()))


# -- labels ------------------------------------------------------------------------------------
def test_one_label_vocabulary_for_fit_and_evaluate():
    assert TRUE_ANOMALY == POSITIVE_LABELS and TRUE_NORMAL == NEGATIVE_LABELS
    values = pd.Series(["inlier"] * 8 + ["outlier", "Anomalous"])
    y_fit = labels_from_column(values, column="kind")
    y_eval, known = truth_labels(values, "kind")
    np.testing.assert_array_equal(y_fit, y_eval)
    assert y_fit.sum() == 2 and known.all()


@pytest.mark.parametrize("values", [[0] * 10, ["no"] * 10, [None] * 10, ["normal"] * 6 + [None] * 4])
def test_a_label_column_that_marks_no_row_is_an_error(values):
    with pytest.raises(InvalidInputError, match=r"label column 'y' marks no row as a known anomaly.*leave the label "
                                                r"column out \(no --label-column\) to fit without labels on purpose"):
        labels_from_column(pd.Series(values, dtype=object), column="y")


def test_cli_fit_refuses_a_label_column_of_zeros(tmp_path):
    amount, _, _ = _amounts()
    pd.DataFrame({"amount": amount, "y": 0}).to_csv(tmp_path / "t.csv", index=False)
    line = _error_line(_invoke("fit", tmp_path / "t.csv", "--label-column", "y", "--out", tmp_path / "m", *FAST))
    assert "label column 'y' marks no row as a known anomaly" in line


# -- messages ----------------------------------------------------------------------------------
def test_fit_on_an_infinite_value_does_not_suggest_a_scoring_option(tmp_path):
    amount, label, _ = _amounts()
    df = pd.DataFrame({"amount": amount, "label": label})
    df.loc[3, "amount"] = np.inf
    df.to_csv(tmp_path / "t.csv", index=False)
    line = _error_line(_invoke("fit", tmp_path / "t.csv", "--label-column", "label", "--out", tmp_path / "m", *FAST))
    assert "column 'amount' holds a non-finite value" in line and "data row 4" in line
    assert "--on-bad-rows" not in line and "every training value must be usable" in line


@pytest.mark.parametrize("args, expected", [
    (["fit", "x.csv", "--bogus"], "error: No such option: --bogus"),
    (["fit"], "error: Missing argument 'data'."),
    (["score", "m", "x.csv", "--out", "s.csv", "--chunk-rows", "many"], "error: Invalid value for '--chunk-rows'"),
])
def test_bad_options_are_one_error_line(args, expected):
    result = subprocess.run([sys.executable, "-m", "swifthydra.cli", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), result.stderr
    assert "Traceback" not in result.stderr and "╭" not in result.stderr


def test_info_of_an_unsupervised_model_does_not_speak_of_known_anomalies(tmp_path):
    amount, _, rng = _amounts()
    pd.DataFrame({"amount": amount, "velocity": rng.normal(size=len(amount))}).to_csv(tmp_path / "t.csv", index=False)
    fit = _invoke("fit", tmp_path / "t.csv", "--out", tmp_path / "m", *FAST)
    assert fit.exit_code == 0 and "no label column" in fit.output, fit.output
    info = _invoke("info", tmp_path / "m").output
    assert "known anomalies with AUC" not in info
    assert "separates the pseudo-labelled anomalies with AUC" in info, info  # calibrated on pseudo-labels
