"""A user's own table, right every time (issue 15): column kinds checked at scoring, timestamps as
features, label checks and --positive-label, drift warnings and values outside the training range,
1-based rows in errors and --on-bad-rows, and the Python API's feature names and parameter keys.
Through the real command line (in process) or the public API, on tiny tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from _cli import error_line as _error_line
from _cli import invoke as _invoke
from _presets import MICRO
from swifthydra import SwiftHydra
from swifthydra.cli._table import PREPROCESSING_FILE, load_table_model
from swifthydra.datasets import TablePreprocessor, read_table
from swifthydra.exceptions import InvalidInputError

FAST = ["--quick", "--generator", "rl", "--episodes", "1", "--seed", "0"]
ROW1 = "(row 1 = the first row after the header)"


def _transactions(n=300, seed=0):
    """Transactions with a timestamp (ISO text), fraud/legit labels, an id and a category."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.uniform(0, 30 * 86400, n)).round()
    time = pd.Timestamp("2024-03-01") + pd.to_timedelta(seconds, unit="s")
    df = pd.DataFrame({
        "tx_id": [f"tx{i:05d}" for i in range(n)],
        "amount": rng.lognormal(3.0, 0.8, n).round(2),
        "velocity": rng.normal(size=n).round(4),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "merchant": rng.choice(["fuel", "grocery", "online", "travel"], n),
        "label": "legit",
    })
    fraud = rng.choice(n, 24, replace=False)
    df.loc[fraud, "amount"] *= 25
    df.loc[fraud, "velocity"] += 5
    df.loc[fraud[:8], "label"] = "fraud"
    return df


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A model fitted by `swifthydra fit` on a table with a timestamp column and fraud/legit labels."""
    d = tmp_path_factory.mktemp("own_data")
    df = _transactions()
    df.to_csv(d / "train.csv", index=False)
    result = _invoke("fit", d / "train.csv", "--label-column", "label", "--positive-label", "fraud",
                     "--id-column", "tx_id", "--out", d / "model", "--contamination", "0.1", *FAST)
    assert result.exit_code == 0, result.output
    assert "8 known anomalies" in result.stderr
    assert "timestamps ['time'] -> hour, weekday, elapsed_days" in result.stderr
    return d, df


def _score(d, data, out, *extra):
    result = _invoke("score", d / "model", data, "--out", out, *extra)
    assert result.exit_code == 0, result.output
    return result


# ------------------------------------------------------------------------------------ labels
def test_labels_fraud_legit_need_positive_label_and_odd_labels_are_errors(tmp_path):
    df = _transactions(n=60)
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    # fraud/legit: before, silently "no labels, unsupervised"
    line = _error_line(_invoke("fit", path, "--label-column", "label", "--out", tmp_path / "m", *FAST))
    assert "label column 'label' has values ['legit', 'fraud']" in line
    assert "none is recognised as a known anomaly" in line and "--positive-label fraud" in line
    # a value that is not in the column
    line = _error_line(_invoke("fit", path, "--label-column", "label", "--positive-label", "Fraud!",
                               "--out", tmp_path / "m", *FAST))
    assert "no value of label column 'label' is 'Fraud!'" in line and "'legit', 'fraud'" in line
    # the -1/1 convention (1 = normal): 52 of 60 rows would become known anomalies
    df.assign(label=np.where(df["label"] == "fraud", -1, 1)).to_csv(path, index=False)
    line = _error_line(_invoke("fit", path, "--label-column", "label", "--out", tmp_path / "m", *FAST))
    assert "52 of 60 rows of label column 'label' are known anomalies: more than half" in line
    assert "-1/1 convention" in line and "--positive-label -1" in line
    # an inverted 0/1 label
    df.assign(label=np.where(df["label"] == "fraud", 0, 1)).to_csv(path, index=False)
    line = _error_line(_invoke("fit", path, "--label-column", "label", "--out", tmp_path / "m", *FAST))
    assert "52 of 60 rows" in line and "looks inverted" in line
    # --positive-label without a label column
    line = _error_line(_invoke("fit", path, "--positive-label", "fraud", "--out", tmp_path / "m", *FAST))
    assert "--positive-label needs --label-column" in line
    assert not (tmp_path / "m").exists()


def test_label_values_read_as_before_and_empty_is_unlabeled(tmp_path):
    df = _transactions(n=40).drop(columns=["time"])
    path = tmp_path / "t.csv"
    for nothing in ([""] * 40, ["0"] * 40):  # a label column that marks no row: an error (issue 23)
        df.assign(label=nothing).to_csv(path, index=False)
        with pytest.raises(InvalidInputError, match="marks no row as a known anomaly"):
            read_table(path, label_column="label", id_column="tx_id")
    cases = {
        "ones and empty": (["1"] * 3 + [""] * 37, [1] * 3 + [0] * 37),
        "yes/no": (["yes"] * 2 + ["no"] * 38, [1] * 2 + [0] * 38),
    }
    for label, expected in cases.values():
        df.assign(label=label).to_csv(path, index=False)
        assert read_table(path, label_column="label", id_column="tx_id").y.tolist() == expected
    df.assign(label=["Fraud"] * 5 + ["legit"] * 30 + [""] * 5).to_csv(path, index=False)
    t = read_table(path, label_column="label", id_column="tx_id", positive_label="fraud")  # any case
    assert t.y.tolist() == [1] * 5 + [0] * 35
    df.assign(label=[1.0] * 4 + [0.0] * 36).to_csv(path, index=False)
    assert read_table(path, label_column="label", positive_label="1").y.sum() == 4  # 1 matches 1.0


# -------------------------------------------------------------------------------- timestamps
def test_timestamps_become_three_features_listed_by_info(fitted, tmp_path):
    d, df = fitted
    info = _invoke("info", d / "model")
    assert "datetime       1: time (each -> hour, weekday, elapsed_days)" in info.stdout
    table = json.loads(_invoke("info", d / "model", "--json").stdout)["table"]
    assert table["datetime_columns"] == ["time"]
    names = table["feature_names"]
    assert names[:5] == ["amount", "velocity", "time:hour", "time:weekday", "time:elapsed_days"]
    assert not [n for n in names if n.startswith("time=")]  # no one-hot block of timestamps
    est, _, state = load_table_model(d / "model")
    pre = state["preprocessor"]
    assert pre.kinds_ == {"amount": "numeric", "velocity": "numeric", "time": "datetime", "merchant": "categorical"}
    assert dict(pre.feature_groups_)["time"] == [2, 3, 4]  # one group for explanations
    row = df.iloc[:2].drop(columns=["tx_id", "label"]).copy()
    row["time"] = ["2024-03-05 13:30:00", None]  # a Tuesday; a missing timestamp
    X = pre.transform(row)
    start = pd.Timestamp(df["time"].min())
    elapsed = (pd.Timestamp("2024-03-05 13:30:00") - start) / pd.Timedelta(days=1)
    np.testing.assert_allclose(X[0, 2:5], [13.5, 1.0, elapsed])
    np.testing.assert_allclose(X[1, 2:5], pre.baseline_()[2:5])  # imputed: the median timestamp
    median = pd.Series(pd.to_datetime(df["time"])).median()
    np.testing.assert_allclose(pre.baseline_()[4], (median - start) / pd.Timedelta(days=1))
    # the same table as Parquet with a datetime64 column scores the same; the same instants with a
    # time zone are an error, since training times had none (issue 23: no silent shift to UTC)
    df.assign(time=pd.to_datetime(df["time"])).to_parquet(tmp_path / "t.parquet")
    tz = df.assign(time=pd.to_datetime(df["time"]).dt.tz_localize("UTC").dt.tz_convert("Europe/Paris"))
    tz.to_parquet(tmp_path / "tz.parquet")
    line = _error_line(_invoke("score", d / "model", tmp_path / "tz.parquet", "--out", tmp_path / "tz.csv"))
    assert "column 'time' held times with no time zone in training but holds times with a time zone (Europe/Paris)" in line
    _score(d, d / "train.csv", tmp_path / "a.csv")
    _score(d, tmp_path / "t.parquet", tmp_path / "b.csv", "--chunk-rows", "64")
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-6, atol=1e-6)
    assert (a["is_anomaly"] == b["is_anomaly"]).mean() > 0.99
    # explain treats the timestamp as one column, with a typical value
    out = _invoke("explain", d / "model", d / "train.csv", "--top", "3", "--features", "4", "--format", "csv")
    assert out.exit_code == 0, out.output
    expl = pd.read_csv(pd.io.common.StringIO(out.stdout))
    assert set(expl["column"]) <= {"amount", "velocity", "time", "merchant"}
    if (expl["column"] == "time").any():
        assert expl.loc[expl["column"] == "time", "typical"].iloc[0].startswith("2024-03-")


def test_onnx_export_of_a_model_with_timestamps_says_to_use_features_only(fitted, tmp_path):
    d, _ = fitted
    line = _error_line(_invoke("export-onnx", d / "model", tmp_path / "m.onnx"))
    assert "timestamp columns ['time']" in line and "--features-only" in line
    assert not (tmp_path / "m.onnx").exists()


def test_saved_preprocessing_with_timestamps_scores_like_the_model_in_memory(tmp_path):
    """Python API -> save -> `swifthydra score`: the same scores as before saving."""
    df = _transactions(n=200, seed=3).drop(columns=["label"])
    pre = TablePreprocessor(exclude=["tx_id"]).fit(df)
    X = pre.transform(df.drop(columns=["tx_id"]))
    est = SwiftHydra(**MICRO, random_state=0).fit(X)
    state = {"format": 1, "preprocessor": pre.to_dict(), "feature_names": pre.feature_names_,
             "label_column": None, "id_column": "tx_id", "training": {}}
    est.save(tmp_path / "model", extra_files={PREPROCESSING_FILE: state})
    df.to_csv(tmp_path / "d.csv", index=False)
    _, _, back = load_table_model(tmp_path / "model")
    np.testing.assert_array_equal(back["preprocessor"].transform(df.drop(columns=["tx_id"])), X)
    # one chunk: the very same computation; chunks of 70 rows: float32 batches may differ in the last bit
    for chunk_rows, tol in (("1000", 0.0), ("70", 1e-6)):
        assert _invoke("score", tmp_path / "model", tmp_path / "d.csv", "--out", tmp_path / "s.parquet",
                       "--chunk-rows", chunk_rows, "--force").exit_code == 0
        got = pd.read_parquet(tmp_path / "s.parquet")
        assert got["tx_id"].tolist() == df["tx_id"].tolist()
        np.testing.assert_allclose(got["score"].to_numpy(), est.decision_function(X), rtol=tol, atol=tol)


# ---------------------------------------------------------------------------- column kinds
def test_a_column_of_another_kind_at_scoring_is_an_error_naming_it(fitted, tmp_path):
    d, df = fitted
    cases = [
        # before: a datetime64 column in place of a numeric one scored silently, 100 % flagged
        ("amount", pd.date_range("2024-01-01", periods=len(df), freq="h"),
         "column 'amount' held numbers in training but holds dates/times (datetime64) now"),
        ("amount", pd.date_range("2024-01-01", periods=len(df), freq="h").astype(str),
         "column 'amount' held numbers in training but holds dates/times now"),
        ("time", np.arange(len(df), dtype=float), "column 'time' held dates/times in training but holds numbers now"),
        ("merchant", np.arange(len(df)), "column 'merchant' held text categories in training but holds numbers now"),
        ("merchant", df["time"], "column 'merchant' held text categories in training but holds dates/times now"),
    ]
    for i, (column, values, message) in enumerate(cases):
        path = tmp_path / f"bad{i}.parquet"
        df.assign(**{column: values}).to_parquet(path)
        line = _error_line(_invoke("score", d / "model", path, "--out", tmp_path / f"o{i}.csv"))
        assert message in line and f"data row 1 {ROW1}" in line, line
        assert not (tmp_path / f"o{i}.csv").exists()
    # the same through a CSV file, whose columns arrive as text
    df.assign(time=np.arange(len(df))).to_csv(tmp_path / "bad.csv", index=False)
    line = _error_line(_invoke("score", d / "model", tmp_path / "bad.csv", "--out", tmp_path / "o.csv"))
    assert "column 'time' held dates/times in training but holds numbers now" in line


# ------------------------------------------------------------------------ drift and ranges
def test_drift_warning_and_values_outside_the_training_range(fitted, tmp_path):
    d, df = fitted
    same = _score(d, d / "train.csv", tmp_path / "same.csv")
    assert "no value outside the training range" in same.stdout and "warning" not in same.stderr
    shifted = df.copy()
    shifted["amount"] = shifted["amount"] * 40
    shifted.loc[::3, "velocity"] += 8
    shifted.to_csv(tmp_path / "shifted.csv", index=False)
    result = _score(d, tmp_path / "shifted.csv", tmp_path / "s.csv", "--chunk-rows", "64")
    expected = {c: int(((shifted[c] < df[c].min()) | (shifted[c] > df[c].max())).sum()) for c in ("amount", "velocity")}
    assert expected["amount"] > 50 and expected["velocity"] > 50
    assert f"values outside the training range: amount {expected['amount']}, velocity {expected['velocity']}" in result.stdout
    flagged = pd.read_csv(tmp_path / "s.csv")["is_anomaly"].mean()
    assert flagged > 0.3
    assert "warning: " in result.stderr and "far from the 10.0% the model flags on its training data" in result.stderr
    js = _invoke("score", d / "model", tmp_path / "shifted.csv", "--out", tmp_path / "s.json.csv", "--json")
    assert js.exit_code == 0, js.output
    summary = json.loads(js.stdout)
    assert summary["outside_training_range"] == expected
    assert summary["rows"] == summary["scored"] == len(df)
    assert summary["flagged_share"] == pytest.approx(flagged) and summary["contamination"] == 0.1
    assert len(summary["warnings"]) == 1 and "far from the 10.0%" in summary["warnings"][0]
    assert summary["bad_rows"] == {"policy": "fail", "count": 0, "first": None}
    # the other way: the 200 least anomalous training rows, none above the threshold (expected: 20)
    scores = pd.read_csv(tmp_path / "same.csv")
    calm = df[df["tx_id"].isin(scores.nsmallest(200, "score")["tx_id"])]
    calm.to_csv(tmp_path / "calm.csv", index=False)
    result = _score(d, tmp_path / "calm.csv", tmp_path / "c.csv")
    assert "0 above the threshold (0.00%)" in result.stdout
    assert "warning: 0.0% of the rows scored are above the threshold, far from the 10.0%" in result.stderr
    result = _score(d, tmp_path / "calm.csv", tmp_path / "c.csv", "--force", "--chunk-rows", "50")
    assert result.stderr.count("warning: ") == 1  # once for the file, not per chunk
    # too few rows to tell (fewer than 10 expected above the threshold): no warning
    calm.iloc[:90].to_csv(tmp_path / "few.csv", index=False)
    assert "warning" not in _score(d, tmp_path / "few.csv", tmp_path / "f.csv").stderr


# --------------------------------------------------------------------------------- bad rows
def test_bad_rows_fail_skip_or_nan(fitted, tmp_path):
    d, df = fitted
    new = df.drop(columns=["label"]).astype({"amount": object, "velocity": object})
    new.loc[6, "amount"] = "oops"  # data row 7
    new.loc[149, "velocity"] = "inf"  # data row 150
    new.loc[199, "time"] = "2024-13-45 10:00:00"  # data row 200: not a date
    new.to_csv(tmp_path / "new.csv", index=False)
    bad_ids = df["tx_id"].iloc[[6, 149, 199]].tolist()
    line = _error_line(_invoke("score", d / "model", tmp_path / "new.csv", "--out", tmp_path / "f.csv",
                               "--chunk-rows", "64"))
    assert f"column 'amount' holds non-numeric values but was numeric in training: 'oops' in data row 7 {ROW1}" in line
    assert "--on-bad-rows skip|nan" in line and not (tmp_path / "f.csv").exists()
    new.iloc[100:].to_csv(tmp_path / "later.csv", index=False)  # the first bad value is further down
    line = _error_line(_invoke("score", d / "model", tmp_path / "later.csv", "--out", tmp_path / "f.csv"))
    assert f"column 'velocity' holds a non-finite value: inf in data row 50 {ROW1}, and 1 more row" in line

    _score(d, d / "train.csv", tmp_path / "clean.csv")
    clean = pd.read_csv(tmp_path / "clean.csv")
    good = ~clean["tx_id"].isin(bad_ids)

    skip = _score(d, tmp_path / "new.csv", tmp_path / "skip.csv", "--on-bad-rows", "skip", "--chunk-rows", "64")
    assert "warning: 3 rows with a bad value were left out of the output; the first: column 'amount'" in skip.stderr
    assert "3 rows with bad values left out" in skip.stdout
    out = pd.read_csv(tmp_path / "skip.csv")
    assert out["tx_id"].tolist() == clean.loc[good, "tx_id"].tolist()  # order kept, bad rows gone
    np.testing.assert_allclose(out["score"], clean.loc[good, "score"], rtol=1e-6, atol=1e-6)

    for suffix in ("csv", "parquet"):
        res = _score(d, tmp_path / "new.csv", tmp_path / f"nan.{suffix}", "--on-bad-rows", "nan", "--chunk-rows", "64")
        assert "3 rows with a bad value have an empty score, is_anomaly and probability" in res.stderr
        out = pd.read_csv(tmp_path / "nan.csv") if suffix == "csv" else pd.read_parquet(tmp_path / "nan.parquet")
        assert out["tx_id"].tolist() == clean["tx_id"].tolist()
        assert out.loc[~good, ["score", "is_anomaly", "probability"]].isna().all().all()
        assert out.loc[good, ["score", "is_anomaly", "probability"]].notna().all().all()
        np.testing.assert_allclose(out.loc[good, "score"], clean.loc[good, "score"], rtol=1e-6, atol=1e-6)
    assert "--on-bad-rows must be one of fail, skip, nan" in _error_line(
        _invoke("score", d / "model", tmp_path / "new.csv", "--out", tmp_path / "x.csv", "--on-bad-rows", "drop"))


# ------------------------------------------------------------------------------ Python API
def test_dataframe_feature_names_are_recorded_saved_and_checked(tmp_path):
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(120, 3)), columns=["a", "b", "c"])
    X.iloc[:8] += 4
    est = SwiftHydra(**MICRO, random_state=0).fit(X)
    assert est.feature_names_in_.tolist() == ["a", "b", "c"] and est.feature_names_in_.dtype == object
    scores = est.decision_function(X)
    np.testing.assert_array_equal(est.decision_function(X.to_numpy()), scores)  # arrays: by position
    with pytest.raises(InvalidInputError, match=r"feature names should match.*another order"):
        est.decision_function(X[["c", "b", "a"]])
    with pytest.raises(InvalidInputError, match=r"not seen in fit \['z'\].*now missing \['c'\]"):
        est.predict(X.rename(columns={"c": "z"}))
    est.save(tmp_path / "m")
    back = SwiftHydra.load(tmp_path / "m")
    assert back.feature_names_in_.tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(back.decision_function(X), scores)
    with pytest.raises(InvalidInputError, match="another order"):
        back.predict_proba(X[["b", "a", "c"]])
    # numeric column names are not feature names (scikit-learn's rule); a refit forgets the old ones
    assert not hasattr(SwiftHydra(**MICRO).fit(X.set_axis([0, 1, 2], axis=1)), "feature_names_in_")
    assert not hasattr(est.fit(X.to_numpy()), "feature_names_in_")


def test_unknown_keys_of_sub_model_parameters_are_named_at_fit():
    X = np.random.default_rng(0).normal(size=(40, 3))
    with pytest.raises(InvalidInputError, match=r"detector_params has unknown keys \['d_modle'\]: MambaDetector takes .*d_model"):
        SwiftHydra(**{**MICRO, "detector_params": {"d_modle": 4}}).fit(X)
    with pytest.raises(InvalidInputError, match=r"mome_params has unknown keys \['experts'\]: MoME takes .*n_experts"):
        SwiftHydra(**{**MICRO, "mome_params": {"experts": 2}}).fit(X)
