"""Round trips of a user's table: what is saved and loaded again scores exactly as before.

The property tests draw tables with any number and order of numeric and categorical columns
(missing values, ints, bools, numbers stored as text, unicode categories, timestamps, CSV or
Parquet), fit them with the real ``swifthydra fit`` (in-process, the network shrunk to ``MICRO``)
and check
that every way back to a score gives the scores the model had in memory at the end of ``fit``
(``decision_scores_``, saved as a tensor): ``swifthydra score``, ``load_table_model`` with the
saved preprocessing, ``SwiftHydra.save``/``load`` and the ONNX export run with onnxruntime.

The self-check at the end of ``swifthydra fit`` is tested by injecting a fault into the reloaded
preprocessing: the command refuses, the new model is absent and an old one is kept.
"""

from __future__ import annotations

import importlib.util
import string

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import swifthydra.presets
from _presets import MICRO
from swifthydra import SwiftHydra
from swifthydra.cli import app
from swifthydra.cli._table import PREPROCESSING_FILE, load_table_model
from swifthydra.io import read_model_json, save_model_dir
from swifthydra.tabular.table import TablePreprocessor, read_frame

runner = CliRunner()
LABEL = "label"
SCORE_TOL = dict(rtol=1e-6, atol=1e-6)  # "identical": float noise only; a shifted feature moves scores by ~0.1
ONNX_TOL = 1e-5


# ------------------------------------------------------------------------- the regression tests
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


# ------------------------------------------------------------------------------ drawn tables
KINDS = ("float", "int", "bool", "numtext", "cat", "unicode", "mixedtext", "timestamp")
NAMES = ("x", "zone", "app", "größe", "日付", "amount ($)", "Ωmega", "b", "count", "city")
UNICODE = ["café", "naïve", "日本", "Ωmega", "😀", "a,b", 'q"uote', "ß"]


@st.composite
def tables(draw):
    """``(columns, seed, n_rows, file format, labelled)``; ``columns`` is ``[(name, kind, missing)]``
    in file order."""
    k = draw(st.integers(1, 6))
    names = draw(st.permutations(NAMES))[:k]
    columns = [(name, draw(st.sampled_from(KINDS)), draw(st.booleans())) for name in names]
    return (columns, draw(st.integers(0, 2**16)), draw(st.integers(40, 90)),
            draw(st.sampled_from(["csv", "parquet"])), draw(st.booleans()))


def _frame(columns, seed, n, labelled) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {}
    for name, kind, missing in columns:
        holes = rng.random(n) < 0.12 if missing else np.zeros(n, dtype=bool)
        if kind == "float":
            col = pd.Series(rng.normal(3.0, 2.0, n))
            col[holes] = np.nan
        elif kind == "int":
            col = pd.Series(pd.array(rng.integers(-5, 60, n), dtype="Int64"))
            col[holes] = pd.NA
        elif kind == "bool":
            col = pd.Series(pd.array(rng.random(n) < 0.3, dtype="boolean"))
            col[holes] = pd.NA
        elif kind == "timestamp":  # datetime64 in Parquet, ISO text in CSV
            col = pd.Series(pd.Timestamp("2024-03-01") + pd.to_timedelta(rng.integers(0, 90 * 86400, n), unit="s"))
            col[holes] = pd.NaT
        elif kind == "numtext":  # numbers stored as text (a Parquet string column; plain numbers in CSV)
            col = pd.Series(pd.array([f"{v:.3g}" for v in rng.normal(0, 50, n)], dtype="string"))
            col[holes] = pd.NA
        else:
            pool = {"cat": list(string.ascii_uppercase[:5]), "unicode": UNICODE,
                    "mixedtext": ["1", "two", "3.5", "x", "007"]}[kind]
            col = pd.Series(pd.array(rng.choice(pool, n), dtype="string"))
            col[holes] = pd.NA
        data[name] = col
    df = pd.DataFrame(data)
    if labelled:
        label = np.zeros(n, dtype=np.int64)
        label[rng.choice(n, 3, replace=False)] = 1
        df[LABEL] = label
    return df


def _write(df, folder, fmt):
    path = folder / f"table.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return path


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _fit(data, out, labelled, *extra):
    """``swifthydra fit`` in-process with the MICRO network (the --quick preset swapped for it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(swifthydra.presets.QUICK_PARAMS, "swifthydra", MICRO)
        result = _invoke("fit", data, "--out", out, "--quick", "--episodes", "0", "--seed", "0",
                         *(["--label-column", LABEL] if labelled else []), *extra)
    return result


def _fitted(folder, columns, seed, n, fmt, labelled):
    """Fit a drawn table through the CLI: ``(data path, model dir, raw frame as read, scores
    the model had in memory at the end of fit)``."""
    df = _frame(columns, seed, n, labelled)
    data = _write(df, folder, fmt)
    out = folder / "model"
    result = _fit(data, out, labelled)
    assert result.exit_code == 0, result.output
    assert "self-check ok" in result.output
    est, _, state = load_table_model(out)
    raw = read_frame(data)
    return data, out, raw.drop(columns=[LABEL] if labelled else []), est, state


THE_ISSUE = ([("x1", "float", False), ("zone", "cat", False), ("x2", "float", False), ("app", "unicode", False)],
             1, 80, "csv", False)
REVERSED = ([("zone", "cat", True), ("日付", "unicode", True), ("b", "bool", True), ("app", "mixedtext", False),
             ("count", "int", True), ("city", "timestamp", True)], 7, 70, "parquet", True)


@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(tables())
@example(THE_ISSUE)
@example(REVERSED)
def test_any_table_round_trips_through_the_cli_and_the_python_api(tmp_path_factory, table):
    columns, seed, n, fmt, labelled = table
    folder = tmp_path_factory.mktemp("rt")
    data, out, raw, est, state = _fitted(folder, columns, seed, n, fmt, labelled)
    in_memory = est.decision_scores_  # scored in memory at the end of fit, saved as a tensor

    # (a) the command line: score the training file
    result = _invoke("score", out, data, "--out", folder / "scores.parquet")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(pd.read_parquet(folder / "scores.parquet")["score"], in_memory, **SCORE_TOL)

    # (b) the Python API: the table path, with the saved preprocessing ...
    fresh = TablePreprocessor(exclude=[LABEL] if labelled else []).fit(read_frame(data))
    pre = state["preprocessor"]
    assert pre.feature_names_ == fresh.feature_names_ == state["feature_names"]
    X = pre.transform(raw)
    np.testing.assert_array_equal(X, fresh.transform(raw))
    np.testing.assert_allclose(est.decision_function(X), in_memory, **SCORE_TOL)
    # ... and SwiftHydra.save / load of a model fitted in memory on those features
    y = (read_frame(data)[LABEL].to_numpy() == 1).astype(np.int64) if labelled else None
    mem = SwiftHydra(random_state=0, **{**MICRO, "episodes": 0}).fit(X, y)
    mem.save(folder / "api", extra_files={PREPROCESSING_FILE: {"preprocessor": fresh.to_dict()}})
    back = SwiftHydra.load(folder / "api")
    np.testing.assert_allclose(back.decision_function(X), mem.decision_function(X), **SCORE_TOL)
    np.testing.assert_allclose(back.decision_scores_, mem.decision_scores_, rtol=0, atol=0)
    reread = TablePreprocessor.from_dict(read_model_json(folder / "api", PREPROCESSING_FILE)["preprocessor"])
    np.testing.assert_array_equal(reread.transform(raw), X)


needs_onnx = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime", "onnxscript")),
    reason="the onnx extra is not installed (pip install 'swifthydra[onnx]')",
)


@needs_onnx
@settings(max_examples=1, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(tables())
@example(THE_ISSUE)
@example(REVERSED)
def test_any_table_round_trips_through_the_onnx_export(tmp_path_factory, table):
    import onnxruntime as ort

    from swifthydra.onnx_export import OUTPUTS, onnx_inputs

    columns, seed, n, fmt, labelled = table
    folder = tmp_path_factory.mktemp("onnx")
    data, out, raw, est, state = _fitted(folder, columns, seed, n, fmt, labelled)
    fresh = TablePreprocessor(exclude=[LABEL] if labelled else []).fit(read_frame(data))
    timestamps = list(getattr(state["preprocessor"], "datetimes_", None) or [])
    result = _invoke("export-onnx", out, folder / "m.onnx", "--no-check")
    if timestamps:  # the graph does not parse dates: refused by name, the features graph instead
        assert result.exit_code == 2 and f"timestamp columns {timestamps}" in result.output, result.output
        result = _invoke("export-onnx", out, folder / "m.onnx", "--no-check", "--features-only")
        feed = {"features": fresh.transform(raw)}
    else:
        # the feed is built from the raw columns by name, with a preprocessing fitted afresh:
        # the graph alone decides how they become features
        feed = onnx_inputs(fresh, raw)
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(folder / "m.onnx"), providers=["CPUExecutionProvider"])
    score, is_anomaly, _ = session.run(list(OUTPUTS), feed)
    assert np.max(np.abs(score - est.decision_scores_)) <= ONNX_TOL
    near = np.abs(est.decision_scores_ - est.threshold_) < 1e-4
    assert ((is_anomaly == (est.decision_scores_ > est.threshold_)) | near).all()


# ------------------------------------------------------------------------ the fit self-check
def _reordered_from_dict(monkeypatch):
    """A fault: the reloaded preprocessing has its categorical columns in reverse order (what
    the sorted-keys bug did)."""
    original = TablePreprocessor.from_dict.__func__

    def reordered(cls, state):
        pre = original(cls, state)
        pre.categories_ = dict(reversed(list(pre.categories_.items())))
        return pre

    monkeypatch.setattr(TablePreprocessor, "from_dict", classmethod(reordered))


def test_fit_refuses_to_save_a_model_that_scores_differently_once_reloaded(tmp_path, monkeypatch):
    df = _frame(*THE_ISSUE[:1], seed=3, n=120, labelled=False)
    data = _write(df, tmp_path, "csv")
    old = tmp_path / "model"
    first = _fit(data, old, False)
    assert first.exit_code == 0 and "self-check ok" in first.output, first.output
    old_files = {p.name: p.read_bytes() for p in old.iterdir()}

    _reordered_from_dict(monkeypatch)
    replaced = _fit(data, old, False, "--force", "--seed", "1")
    assert replaced.exit_code == 2, replaced.output
    error = replaced.output.strip().splitlines()[-1]
    assert error.startswith("error: self-check failed:") and "is a bug in swifthydra" in error
    assert "'zone=A'" in error and "'app=" in error  # names the features that moved
    assert f"the model already at {old} is kept unchanged" in error
    assert {p.name: p.read_bytes() for p in old.iterdir()} == old_files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "table.csv"]  # no temporary left

    new = tmp_path / "new-model"
    fresh = _fit(data, new, False)
    assert fresh.exit_code == 2 and f"nothing was written to {new}" in fresh.output
    assert not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "table.csv"]


def test_fit_refuses_a_model_that_cannot_read_its_own_training_table(tmp_path, monkeypatch):
    """A reloaded preprocessing that has lost a column: the error is the self-check's, naming
    what `score` would have said, and nothing is saved."""
    data = _write(_frame(*THE_ISSUE[:1], seed=4, n=60, labelled=False), tmp_path, "csv")
    original = TablePreprocessor.from_dict.__func__

    def forgetful(cls, state):
        pre = original(cls, state)
        pre.input_columns_.remove("x2")
        pre.numeric_columns_.remove("x2")
        return pre

    monkeypatch.setattr(TablePreprocessor, "from_dict", classmethod(forgetful))
    result = _fit(data, tmp_path / "model", False)
    assert result.exit_code == 2, result.output
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("error: self-check failed: the saved model cannot score its own training table")
    assert "unexpected columns ['x2']" in error and "is a bug in swifthydra" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_save_with_a_failing_verify_keeps_the_old_model(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    est = SwiftHydra(random_state=0, **{**MICRO, "episodes": 0}).fit(X)
    est.save(tmp_path / "m")
    before = (tmp_path / "m" / "config.json").read_bytes()
    seen = []

    def verify(tmp):
        seen.append(sorted(p.name for p in tmp.iterdir()))
        np.testing.assert_allclose(SwiftHydra.load(tmp).decision_function(X), est.decision_function(X))
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        est.save(tmp_path / "m", overwrite=True, verify=verify)
    assert seen == [["config.json", "model.safetensors"]]  # ran on the complete directory
    assert (tmp_path / "m" / "config.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    est.save(tmp_path / "m", overwrite=True, verify=lambda tmp: seen.append("ok"))
    assert seen[-1] == "ok" and SwiftHydra.load(tmp_path / "m").threshold_ == est.threshold_
