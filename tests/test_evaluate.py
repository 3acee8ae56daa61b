"""`swifthydra evaluate`: through the real command line (in process), the metrics equal
scikit-learn's on the same scores, the plots are real PNG images, and the errors are one line."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_score,
    recall_score,
    roc_auc_score,
)

import swifthydra.presets
from _cli import error_line as _error_line
from _cli import invoke as _invoke
from _presets import MICRO
from swifthydra.cli._table import load_table_model


def _table(n=240, seed=0):
    """Transactions with a numeric and two categorical columns; ``fraud`` marks real anomalies."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "amount": rng.lognormal(3.0, 0.7, n).round(2),
        "merchant": rng.choice(["fuel", "grocery", "online"], n),
        "velocity": rng.normal(size=n).round(4),
        "country": rng.choice(["FR", "DE", "ES"], n),
    })
    fraud = np.zeros(n, dtype=bool)
    fraud[rng.choice(n, 18, replace=False)] = True
    df.loc[fraud, "amount"] *= 15
    df.loc[fraud, "velocity"] += 4
    return df, fraud


def _fit(data, out, *extra):
    with pytest.MonkeyPatch.context() as mp:  # the --quick preset shrunk to the MICRO network
        mp.setitem(swifthydra.presets.QUICK_PARAMS, "swifthydra", MICRO)
        result = _invoke("fit", data, "--out", out, "--quick", "--episodes", "0", "--seed", "0", *extra)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A model fitted on a table without the truth column, and a labelled table to judge it on."""
    d = tmp_path_factory.mktemp("evaluate")
    train, _ = _table(seed=0)
    train.to_csv(d / "train.csv", index=False)
    labelled, fraud = _table(seed=1)
    labelled["truth"] = np.where(fraud, "1", "0")
    labelled.loc[np.flatnonzero(~fraud)[[3, 50, 77]], "truth"] = ""  # unknown: left out of the metrics
    labelled.to_csv(d / "labelled.csv", index=False)
    return _fit(d / "train.csv", d / "model"), d / "labelled.csv", labelled


def _reference_scores(model_dir, frame):
    est, _, state = load_table_model(model_dir)
    pre = state["preprocessor"]
    return est.decision_function(pre.transform(frame[pre.input_columns_])), est.threshold_


def _is_drawn_png(path) -> bool:
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pixels = matplotlib.image.imread(path)[..., :3].reshape(-1, 3)
    colours = np.unique((pixels * 255).round().astype(np.uint8), axis=0)
    return pixels.std() > 0.05 and len(colours) > 20  # curves, text and axes, not a blank canvas


def test_evaluate_reports_what_sklearn_computes_on_the_same_scores(model, tmp_path):
    pytest.importorskip("matplotlib")
    model_dir, data, labelled = model
    result = _invoke("evaluate", model_dir, data, "--truth-column", "truth", "--out-dir", tmp_path / "eval", "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)

    scores, threshold = _reference_scores(model_dir, labelled)
    known = labelled["truth"].fillna("").astype(str).str.strip() != ""
    y = (labelled.loc[known, "truth"].astype(str) == "1").to_numpy(dtype=int)
    s = scores[known.to_numpy()]
    assert got["rows"] == len(y) == len(labelled) - 3 and got["rows_without_truth"] == 3
    assert got["anomalies"] == got["k"] == y.sum() == 18
    assert got["auc_roc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert got["auc_pr"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    top_k = np.zeros(len(s), dtype=int)
    top_k[np.argsort(-s, kind="stable")[: y.sum()]] = 1
    assert got["precision_at_k"] == pytest.approx(precision_score(y, top_k), abs=1e-12)
    flagged = (s > threshold).astype(int)
    assert got["threshold"] == threshold
    assert got["precision"] == pytest.approx(precision_score(y, flagged, zero_division=0), abs=1e-12)
    assert got["recall"] == pytest.approx(recall_score(y, flagged), abs=1e-12)
    tn, fp, fn, tp = confusion_matrix(y, flagged, labels=[0, 1]).ravel()
    assert got["confusion_matrix"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    assert got["flagged"] == flagged.sum()

    plots = [tmp_path / "eval" / "roc_curve.png", tmp_path / "eval" / "pr_curve.png"]
    assert got["plots"] == [str(p) for p in plots]
    assert all(_is_drawn_png(p) for p in plots)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert {k: saved[k] for k in got} == got


def test_evaluate_with_the_training_label_column_and_a_positive_label(model, tmp_path):
    _, data, labelled = model
    train, fraud = _table(seed=0)
    train["status"] = np.where(fraud, "1", "0")  # weak labels at training ...
    train.to_csv(tmp_path / "train.csv", index=False)
    model_dir = _fit(tmp_path / "train.csv", tmp_path / "m", "--label-column", "status")
    judged = labelled.drop(columns=["truth"]).assign(status=np.where(labelled["truth"] == "1", "fraud", "legit"))
    judged.to_csv(tmp_path / "judged.csv", index=False)  # ... the same column holds the truth

    result = _invoke("evaluate", model_dir, tmp_path / "judged.csv", "--truth-column", "status",
                     "--positive-label", "fraud")
    assert result.exit_code == 0, result.output
    scores, threshold = _reference_scores(model_dir, judged)
    y = (judged["status"] == "fraud").to_numpy(dtype=int)
    tp, fp = int(((scores > threshold) & (y == 1)).sum()), int(((scores > threshold) & (y == 0)).sum())
    assert re.search(rf"^  anomaly +{tp} +{y.sum() - tp}$", result.output, re.M), result.output
    assert re.search(rf"^  normal +{fp} +{len(y) - y.sum() - fp}$", result.output, re.M), result.output
    assert f"AUC-ROC          {roc_auc_score(y, scores):.4f}" in result.output
    assert f"AUC-PR           {average_precision_score(y, scores):.4f}" in result.output
    assert f"{len(judged)} rows with a truth value, {y.sum()} anomalies" in result.output
    assert "confusion matrix" in result.output and "(pass --out-dir DIR for ROC and PR plots)" in result.output

    error = _error_line(_invoke("evaluate", model_dir, tmp_path / "judged.csv", "--truth-column", "status"))
    assert "not all read as anomaly" in error and "--positive-label" in error and "'legit'" in error
    error = _error_line(_invoke("evaluate", model_dir, tmp_path / "judged.csv", "--truth-column", "status",
                                "--positive-label", "stolen"))
    assert "no value of truth column 'status' is 'stolen'" in error


def test_evaluate_errors_name_the_problem(model, tmp_path):
    model_dir, data, labelled = model
    error = _error_line(_invoke("evaluate", model_dir, data, "--truth-column", "is_fraud"))
    assert error.startswith("error: truth column 'is_fraud' is not in") and "'truth'" in error

    labelled.assign(truth="0").to_csv(tmp_path / "normal.csv", index=False)
    error = _error_line(_invoke("evaluate", model_dir, tmp_path / "normal.csv", "--truth-column", "truth"))
    assert "holds only normal rows" in error and "both classes" in error

    error = _error_line(_invoke("evaluate", model_dir, data, "--truth-column", "merchant"))
    assert "'merchant' is a feature of the model" in error

    labelled.assign(extra=1).to_csv(tmp_path / "extra.csv", index=False)
    error = _error_line(_invoke("evaluate", model_dir, tmp_path / "extra.csv", "--truth-column", "truth"))
    assert "unexpected columns ['extra']" in error


def test_evaluate_without_matplotlib_says_so_and_writes_the_metrics(model, tmp_path, monkeypatch):
    model_dir, data, _ = model
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    result = _invoke("evaluate", model_dir, data, "--truth-column", "truth", "--out-dir", tmp_path / "e")
    assert result.exit_code == 0, result.output
    assert "note: matplotlib is not installed: no ROC/PR plots written (pip install 'swifthydra[bench]')" in result.output
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["metrics.json"]
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["plots"] == []
