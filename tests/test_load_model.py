"""`swifthydra.load_model`: a model directory of `swifthydra fit`, scored from Python exactly as
`swifthydra score` scores it (same columns, preprocessing, chunks and on_bad_rows), with one
clear error for a directory that is not such a model or a table that does not fit it."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import swifthydra
from swifthydra import InvalidInputError, ModelFileError, load_model
from swifthydra.cli import app

runner = CliRunner()
FIT = ["--quick", "--episodes", "0", "--seed", "0"]


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _table(n, seed):
    """Categorical columns in non-alphabetical order, missing values, an id
    column, a timestamp column and string labels."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "tx_id": [f"t{seed}-{i:04d}" for i in range(n)],
        "zone": rng.choice(["south", "north", "east"], n),
        "amount": rng.lognormal(3.0, 0.7, n).round(2),
        "channel": rng.choice(["web", "app", "pos", "atm"], n),
        "when": pd.Timestamp("2024-03-01") + pd.to_timedelta(rng.integers(0, 30 * 86400, n), unit="s"),
        "brand": rng.choice(["kappa", "alpha", "mu"], n),
        "velocity": rng.normal(size=n).round(4),
        "label": "",
    })
    df["when"] = df["when"].dt.strftime("%Y-%m-%d %H:%M:%S")
    odd = rng.choice(n, n // 12, replace=False)
    df.loc[odd, "amount"] *= 20
    df.loc[odd, "velocity"] += 4
    df.loc[odd[: len(odd) // 2], "label"] = "fraud"
    for col, k in (("amount", 6), ("zone", 5), ("when", 3), ("velocity", 4)):
        df.loc[rng.choice(n, k, replace=False), col] = None
    return df


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A model fitted through the command line, a new table and what `swifthydra score` made of it."""
    d = tmp_path_factory.mktemp("load_model")
    _table(160, 0).to_csv(d / "train.csv", index=False)
    result = _invoke("fit", d / "train.csv", "--label-column", "label", "--positive-label", "fraud",
                     "--id-column", "tx_id", "--out", d / "model", "--contamination", "0.1", *FIT)
    assert result.exit_code == 0, result.output
    new = _table(90, 1).drop(columns=["label"])
    new.loc[3, "zone"] = "west"  # unseen category
    new.to_csv(d / "new.csv", index=False)
    result = _invoke("score", d / "model", d / "new.csv", "--out", d / "scores.csv")
    assert result.exit_code == 0, result.output
    return d, new, pd.read_csv(d / "scores.csv")


def test_scores_equal_the_command_line_row_for_row(fitted):
    d, new, cli = fitted
    model = load_model(d / "model")
    for X in (new, pd.read_csv(d / "new.csv"), str(d / "new.csv"), d / "new.csv"):
        scores = model.decision_function(X)
        np.testing.assert_allclose(scores, cli["score"], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(model.predict(X), cli["is_anomaly"].astype(np.int64))
        np.testing.assert_allclose(model.predict_proba(X)[:, 1], cli["probability"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(model.score_samples(X), -cli["score"], rtol=0, atol=1e-12)
    assert model.predict(new).dtype == np.int64 and cli["is_anomaly"].any()
    # score(): the command's output as a DataFrame, the training id column carried through
    out = model.score(new)
    assert list(out.columns) == ["tx_id", "score", "is_anomaly", "probability"]
    pd.testing.assert_frame_equal(out.reset_index(drop=True), cli, check_exact=False, rtol=0, atol=1e-12)
    assert model.transform(new).shape == (len(new), len(model.feature_names))


def test_columns_in_any_order_with_the_label_and_id_columns(fitted):
    d, new, cli = fitted
    model = load_model(d / "model")
    shuffled = new.assign(label="")[["velocity", "label", "brand", "when", "tx_id", "amount", "channel", "zone"]]
    np.testing.assert_allclose(model.decision_function(shuffled), cli["score"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.decision_function(new.drop(columns=["tx_id"])), cli["score"], rtol=0, atol=1e-12)
    # a DataFrame keeps its index in score()
    rows = new.set_index("tx_id", drop=False).iloc[::-1]
    out = model.score(rows)
    assert out.index.tolist() == rows.index.tolist() == out["tx_id"].tolist()
    # rows in another order: float32 kernels round by position in the batch, equal to ~1e-7
    np.testing.assert_allclose(out["score"], cli["score"][::-1], rtol=1e-6, atol=1e-6)


def test_attributes(fitted):
    d, _, _ = fitted
    model = load_model(str(d / "model"))
    assert isinstance(model, swifthydra.TableModel) and swifthydra.load_model is load_model
    assert model.label_column == "label" and model.id_column == "tx_id"
    assert model.input_columns == ["zone", "amount", "channel", "when", "brand", "velocity"]
    state = json.loads((d / "model" / "preprocessing.json").read_text())
    assert model.feature_names == state["feature_names"] == model.preprocessor.feature_names_
    assert model.feature_names[:2] == ["amount", "velocity"] and "when:hour" in model.feature_names
    # the one-hot blocks follow the training column order, not the alphabet
    blocks = [f.split("=")[0] for f in model.feature_names if "=" in f]
    assert list(dict.fromkeys(blocks)) == ["zone", "channel", "brand"]
    assert model.threshold_ == model.estimator.threshold_ and model.estimator.n_features_in_ == len(model.feature_names)
    assert model.training["rows"] == 160 and model.path == d / "model" and "threshold" in repr(model)


def test_on_bad_rows_as_the_command_line(fitted, tmp_path):
    d, new, _ = fitted
    model = load_model(d / "model")
    bad = new.astype({"amount": object})
    bad.loc[6, "amount"] = "oops"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InvalidInputError, match=r"column 'amount' holds non-numeric values.*'oops' in data row 7"):
        model.decision_function(bad)
    with pytest.raises(InvalidInputError, match=r"bad\.csv, data rows 1-90: column 'amount'"):
        model.decision_function(tmp_path / "bad.csv")
    for policy in ("skip", "nan"):
        result = _invoke("score", d / "model", tmp_path / "bad.csv", "--out", tmp_path / f"{policy}.csv",
                         "--on-bad-rows", policy)
        assert result.exit_code == 0, result.output
        cli = pd.read_csv(tmp_path / f"{policy}.csv")
        scores = model.decision_function(bad, on_bad_rows=policy)
        np.testing.assert_allclose(scores, cli["score"], rtol=0, atol=1e-12)  # NaN where NaN
        out = model.score(bad, on_bad_rows=policy)
        np.testing.assert_allclose(out["score"], cli["score"], rtol=0, atol=1e-12)
        assert out["tx_id"].tolist() == cli["tx_id"].tolist()
        if policy == "skip":
            assert len(scores) == len(bad) - 1 and 6 not in out.index
            assert model.predict(bad, on_bad_rows="skip").tolist() == cli["is_anomaly"].astype(int).tolist()
        else:
            assert np.isnan(scores[6]) and np.isnan(scores).sum() == 1 and out["is_anomaly"].isna()[6]
            flags = model.predict(bad, on_bad_rows="nan")
            assert np.isnan(flags[6]) and np.nansum(flags) == cli["is_anomaly"].sum()
            assert np.isnan(model.predict_proba(bad, on_bad_rows="nan")[6]).all()
    with pytest.raises(InvalidInputError, match=r"on_bad_rows must be one of"):
        model.decision_function(new, on_bad_rows="drop")


def test_a_table_that_does_not_fit_the_model(fitted, tmp_path):
    d, new, _ = fitted
    model = load_model(d / "model")
    wrong = new.drop(columns=["amount", "brand"]).assign(extra=1)
    with pytest.raises(InvalidInputError) as err:
        model.decision_function(wrong)
    message = str(err.value)
    assert "missing columns ['amount', 'brand']" in message and "unexpected columns ['extra']" in message
    wrong.to_csv(tmp_path / "wrong.csv", index=False)
    cli = _invoke("score", d / "model", tmp_path / "wrong.csv", "--out", tmp_path / "o.csv")
    assert cli.exit_code == 2 and message in cli.output  # the command's own message
    with pytest.raises(InvalidInputError, match="pass a pandas DataFrame"):
        model.decision_function(model.transform(new))
    with pytest.raises(InvalidInputError, match="does not exist"):
        model.decision_function(tmp_path / "nope.csv")
    with pytest.raises(InvalidInputError, match="id column 'nope' is not in the DataFrame"):
        model.score(new, id_column="nope")
    assert model.decision_function(new.iloc[:0]).shape == (0,)
    assert list(model.score(new.iloc[:0]).columns) == ["tx_id", "score", "is_anomaly", "probability"]


def test_not_a_model_directory(fitted, tmp_path):
    d, _, _ = fitted
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nope")
    with pytest.raises(ModelFileError, match="not a swifthydra model directory"):
        load_model(tmp_path / "empty")
    with pytest.raises(ModelFileError, match="not a swifthydra model directory"):
        load_model(d / "new.csv")
    # a foreign config.json
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.json").write_text(json.dumps({"kind": "other.Model", "format_version": 1}))
    with pytest.raises(ModelFileError, match="holds a 'other.Model'"):
        load_model(tmp_path / "foreign")
    # a modified preprocessing file: its checksum
    shutil.copytree(d / "model", tmp_path / "damaged")
    pre = tmp_path / "damaged" / "preprocessing.json"
    pre.write_text(pre.read_text().replace("velocity", "speed"))
    with pytest.raises(ModelFileError, match="does not match the checksum"):
        load_model(tmp_path / "damaged")
    # a model saved from Python has no preprocessing: SwiftHydra.load is the way
    model = load_model(d / "model")
    model.estimator.save(tmp_path / "py_model")
    with pytest.raises(ModelFileError, match="saved without table preprocessing"):
        load_model(tmp_path / "py_model")
    with pytest.raises(InvalidInputError, match="path of a model directory"):
        load_model(model)


def test_swifthydra_load_points_at_load_model(fitted):
    d, new, _ = fitted
    with pytest.raises(InvalidInputError, match=r"non-numeric columns .*swifthydra\.load_model\(model_dir\)"):
        swifthydra.SwiftHydra.load(d / "model").decision_function(new.drop(columns=["tx_id"]))


def test_the_library_reads_model_directories_without_the_cli():
    """swifthydra.tabular.model holds the model-directory code; the CLI imports it from there."""
    import swifthydra.tabular.model as lib
    from swifthydra.cli import _table

    assert _table.read_table_state is lib.read_table_state and _table.load_table_model is lib.load_table_model
    assert _table.PREPROCESSING_FILE == lib.PREPROCESSING_FILE
    tree = ast.parse(Path(lib.__file__).read_text(encoding="utf-8"))
    modules = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in modules if m == "swifthydra.cli" or m.startswith("swifthydra.cli.")]


def test_a_model_directory_of_format_1_loads_with_the_same_scores(fitted, tmp_path):
    """Format 1 held each MoME expert's tensors apart (``mome.experts.<e>.<name>``); format 2
    stacks them (``mome.experts.stacked.<name>``). A format-1 directory loads and scores the same."""
    import hashlib

    from safetensors.torch import load_file, save_file

    from swifthydra.io import CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE

    d, new, cli = fitted
    old = tmp_path / "format1"
    shutil.copytree(d / "model", old)
    tensors = load_file(str(old / WEIGHTS_FILE))
    stacked = {k: v for k, v in tensors.items() if k.startswith("mome.experts.stacked.")}
    assert stacked and FORMAT_VERSION >= 2
    for key, value in stacked.items():
        name = key[len("mome.experts.stacked."):]
        del tensors[key]
        tensors.update({f"mome.experts.{e}.{name}": value[e].clone() for e in range(value.shape[0])})
    save_file(tensors, str(old / WEIGHTS_FILE))
    meta = json.loads((old / CONFIG_FILE).read_text())
    meta["format_version"] = 1
    meta["config"]["mome"]["format_version"] = 1
    meta["weights_sha256"] = hashlib.sha256((old / WEIGHTS_FILE).read_bytes()).hexdigest()
    (old / CONFIG_FILE).write_text(json.dumps(meta))
    np.testing.assert_allclose(load_model(old).decision_function(new), cli["score"], rtol=0, atol=1e-12)
    # a format-1 file missing one expert's tensor is named, not half-loaded
    del tensors[next(k for k in tensors if k.startswith("mome.experts.1."))]
    save_file(tensors, str(old / WEIGHTS_FILE))
    meta["weights_sha256"] = hashlib.sha256((old / WEIGHTS_FILE).read_bytes()).hexdigest()
    (old / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="experts"):
        load_model(old)
