"""`swifthydra fit / score / explain / info / export-onnx`: end to end through the real command
line, chunked scoring equal to whole-table scoring, column matching, atomic outputs, one-line errors."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from swifthydra.cli import app
from swifthydra.cli._table import PREPROCESSING_FILE, load_table_model
from swifthydra.tabular.table import iter_table, table_columns

runner = CliRunner()
FAST = ["--quick", "--generator", "rl", "--episodes", "1", "--seed", "0"]


def _transactions(n=300, seed=0):
    """A table like a user's: id, numbers with missing values, a category, a few known frauds."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "tx_id": [f"tx{i:05d}" for i in range(n)],
        "amount": rng.lognormal(3.0, 0.8, n).round(2),
        "hour": rng.integers(0, 24, n),
        "velocity": rng.normal(size=n).round(4),
        "merchant": rng.choice(["fuel", "grocery", "online", "travel"], n),
        "is_fraud": "",
    })
    fraud = np.zeros(n, dtype=bool)
    fraud[rng.choice(n, 24, replace=False)] = True
    df.loc[fraud, "amount"] *= 25
    df.loc[fraud, "velocity"] += 5
    df.loc[np.flatnonzero(fraud)[:8], "is_fraud"] = "1"  # a third of the frauds are known
    df.loc[rng.choice(n, 15, replace=False), "amount"] = np.nan
    df.loc[rng.choice(n, 10, replace=False), "merchant"] = None
    return df, fraud


def _run(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "swifthydra.cli", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _error_line(result) -> str:
    """The one error line a failing command ends with (CliRunner mixes stdout and stderr)."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line]
    assert lines[-1].startswith("error: "), result.output
    assert sum(line.startswith("error: ") for line in lines) == 1 and "Traceback" not in result.output
    return lines[-1]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A model fitted through the command line (in process), with its training table."""
    d = tmp_path_factory.mktemp("cli_model")
    df, fraud = _transactions()
    df.to_csv(d / "train.csv", index=False)
    result = _invoke("fit", d / "train.csv", "--label-column", "is_fraud", "--id-column", "tx_id",
                     "--out", d / "model", "--contamination", "0.08", *FAST)
    assert result.exit_code == 0, result.output
    return d, df, fraud


def test_end_to_end_through_the_command_line(tmp_path):
    """fit -> info -> score -> explain -> export-onnx on a CSV with a categorical column, missing
    values and an id column, each a real `swifthydra` process."""
    df, fraud = _transactions(seed=1)
    df.to_csv(tmp_path / "train.csv", index=False)
    new, new_fraud = _transactions(n=200, seed=2)
    new = new.drop(columns=["is_fraud"]).sample(frac=1.0, random_state=0)  # other order of rows
    new = new[["merchant", "velocity", "tx_id", "hour", "amount"]]  # and of columns
    new.to_csv(tmp_path / "new.csv", index=False)
    model = tmp_path / "model"

    fit = _run("fit", tmp_path / "train.csv", "--label-column", "is_fraud", "--id-column", "tx_id",
               "--out", model, "--contamination", "0.1", *FAST)
    assert "8 known anomalies" in fit.stderr and "episode 1/1 done" in fit.stderr
    assert f"saved {model}" in fit.stdout
    assert (model / PREPROCESSING_FILE).is_file()

    info = _run("info", model).stdout
    for text in ("swifthydra.SwiftHydra", "MoME", "train.csv: 300 rows", "is_fraud", "tx_id",
                 "numeric        3: amount, hour, velocity", "merchant (5 categories + __other__)",
                 "threshold", "checksums      ok", "history"):
        assert text in info, (text, info)

    out = tmp_path / "scores.parquet"
    score = _run("score", model, tmp_path / "new.csv", "--out", out, "--chunk-rows", "64")
    assert "scored 200 rows" in score.stdout
    scores = pd.read_parquet(out)
    assert list(scores.columns) == ["tx_id", "score", "is_anomaly", "probability"]
    assert scores["tx_id"].tolist() == new["tx_id"].tolist()  # row order kept
    truth = new_fraud[new["tx_id"].str[2:].astype(int).to_numpy()]
    assert roc_auc_score(truth, scores["score"]) > 0.9  # the planted frauds score high
    assert scores["is_anomaly"].dtype == bool and scores["probability"].between(0, 1).all()

    explain = _run("explain", model, tmp_path / "new.csv", "--top", "3", "--features", "2", "--format", "csv")
    table = pd.read_csv(pd.io.common.StringIO(explain.stdout))
    assert len(table) == 6 and table["rank"].tolist() == [1, 1, 2, 2, 3, 3]
    top3 = scores.nlargest(3, "score")
    assert table.drop_duplicates("rank")["tx_id"].tolist() == top3["tx_id"].tolist()
    assert set(table["column"]) <= {"amount", "hour", "velocity", "merchant"}
    assert set(table["column"]) & {"amount", "velocity"}  # what was planted shows up

    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnxscript"):
        onnx_path = tmp_path / "model.onnx"
        export = _run("export-onnx", model, onnx_path)
        assert "onnxruntime agrees with PyTorch" in export.stdout
        import onnxruntime as ort

        from swifthydra.onnx_export import OUTPUTS, onnx_inputs

        _, _, state = load_table_model(model)
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        feed = onnx_inputs(state["preprocessor"], pd.read_csv(tmp_path / "new.csv").drop(columns=["tx_id"]))
        onnx_score = session.run(list(OUTPUTS), feed)[0]
        np.testing.assert_allclose(onnx_score, scores["score"], rtol=0, atol=1e-5)


def test_chunked_scoring_equals_whole_table_scoring(fitted, tmp_path):
    d, df, _ = fitted
    est, _, state = load_table_model(d / "model")
    pre = state["preprocessor"]
    new = df.drop(columns=["is_fraud"])
    new.to_csv(tmp_path / "new.csv", index=False)
    X = pre.transform(new.drop(columns=["tx_id"]))
    ref = est.decision_function(X)
    outputs = {}
    for chunk, name in ((7, "a.parquet"), (1000, "b.parquet"), (50, "c.csv")):
        result = _invoke("score", d / "model", tmp_path / "new.csv", "--out", tmp_path / name,
                         "--chunk-rows", chunk, "--threads", 1)
        assert result.exit_code == 0, result.output
        out = pd.read_parquet(tmp_path / name) if name.endswith("parquet") else pd.read_csv(tmp_path / name)
        outputs[name] = out
        assert out["tx_id"].tolist() == new["tx_id"].tolist()
        np.testing.assert_allclose(out["score"], ref, rtol=1e-6, atol=1e-6)
        # probability is predict_proba's positive column; is_anomaly is score > threshold_
        np.testing.assert_allclose(out["probability"], est.predict_proba(X)[:, 1], rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(out["is_anomaly"].astype(bool), out["score"] > est.threshold_)
    # float32 kernels round differently for different batch shapes: equal to ~1e-7 relative
    np.testing.assert_allclose(outputs["a.parquet"]["score"], outputs["b.parquet"]["score"], rtol=1e-6, atol=1e-6)


def test_score_matches_columns_by_name_and_lists_mismatches(fitted, tmp_path):
    d, df, _ = fitted
    # label and id columns may stay; columns in any order
    df[list(reversed(df.columns))].to_parquet(tmp_path / "same.parquet")
    assert _invoke("score", d / "model", tmp_path / "same.parquet", "--out", tmp_path / "o.parquet").exit_code == 0
    bad = df.drop(columns=["hour", "velocity"]).assign(extra=1, notes="x")
    bad.to_csv(tmp_path / "bad.csv", index=False)
    line = _error_line(_invoke("score", d / "model", tmp_path / "bad.csv", "--out", tmp_path / "o2.parquet"))
    assert "missing columns ['hour', 'velocity']" in line and "unexpected columns ['extra', 'notes']" in line
    assert not (tmp_path / "o2.parquet").exists()
    # an explicit id column is allowed as an extra and copied through
    df.assign(ref=np.arange(len(df))).to_csv(tmp_path / "ref.csv", index=False)
    result = _invoke("score", d / "model", tmp_path / "ref.csv", "--out", tmp_path / "r.csv", "--id-column", "ref")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "r.csv")["ref"].tolist() == list(range(len(df)))


def test_a_bad_chunk_leaves_no_output(fitted, tmp_path):
    d, df, _ = fitted
    text = df.drop(columns=["is_fraud"]).to_csv(index=False).splitlines()
    text[250] = text[250].replace(text[250].split(",")[2], "not-a-number", 1)  # the hour column
    (tmp_path / "new.csv").write_text("\n".join(text) + "\n")
    line = _error_line(_invoke("score", d / "model", tmp_path / "new.csv", "--out", tmp_path / "o.parquet",
                               "--chunk-rows", "100"))
    assert "data rows 201-300" in line and "'hour' holds non-numeric values" in line
    assert list(tmp_path.iterdir()) == [tmp_path / "new.csv"]  # no output, no temporary file
    # an existing output is kept until --force
    (tmp_path / "o.parquet").write_text("old")
    good = tmp_path / "good.csv"
    df.to_csv(good, index=False)
    assert "already exists" in _error_line(_invoke("score", d / "model", good, "--out", tmp_path / "o.parquet"))
    assert _invoke("score", d / "model", good, "--out", tmp_path / "o.parquet", "--force").exit_code == 0
    assert len(pd.read_parquet(tmp_path / "o.parquet")) == len(df)
    # a file with a header and no rows gives an output with the columns and no rows
    df.iloc[:0].to_csv(tmp_path / "empty.csv", index=False)
    for name in ("e.parquet", "e.csv"):
        assert _invoke("score", d / "model", tmp_path / "empty.csv", "--out", tmp_path / name).exit_code == 0
        out = pd.read_parquet(tmp_path / name) if name.endswith("parquet") else pd.read_csv(tmp_path / name)
        assert list(out.columns) == ["tx_id", "score", "is_anomaly", "probability"] and len(out) == 0


def test_one_line_errors(fitted, tmp_path):
    d, df, _ = fitted
    (tmp_path / "text.parquet").write_text("a,b\n1,2\n")
    (tmp_path / "notamodel").mkdir()
    df.to_csv(tmp_path / "t.csv", index=False)
    cases = [
        (("fit", tmp_path / "nope.csv", "--out", tmp_path / "m"), "does not exist"),
        (("fit", tmp_path / "text.parquet", "--out", tmp_path / "m"), "cannot read"),
        (("fit", tmp_path / "t.csv", "--label-column", "fraud", "--out", tmp_path / "m"), "label column 'fraud' is not in"),
        (("fit", tmp_path / "t.csv", "--out", d / "model"), "already exists"),
        (("fit", tmp_path / "t.csv", "--out", tmp_path / "notamodel", "--force"), "not a swifthydra model directory"),
        (("fit", tmp_path / "t.csv", "--episodes", "2", "--out", tmp_path / "m"), "add --generator rl"),
        (("fit", tmp_path / "t.csv", "--generator", "gan", "--out", tmp_path / "m"), "--generator must be one of"),
        (("fit", tmp_path / "t.csv", "--label-column", "is_fraud", "--reject-missing", "--out", tmp_path / "m"),
         "missing values in columns ['amount', 'merchant']"),
        (("score", tmp_path / "notamodel", tmp_path / "t.csv", "--out", tmp_path / "o.parquet"), "not a swifthydra model directory"),
        (("score", d / "model", tmp_path / "text.parquet", "--out", tmp_path / "o.parquet"), "cannot read"),
        (("score", d / "model", tmp_path / "t.csv", "--out", tmp_path / "o.json"), "unsupported output type"),
        (("score", d / "model", tmp_path / "t.csv", "--out", tmp_path / "o.csv", "--id-column", "nope"), "id column 'nope' is not in"),
        (("explain", d / "model", tmp_path / "t.csv", "--method", "shap"), "--method must be one of"),
        (("info", tmp_path / "notamodel"), "not a swifthydra model directory"),
        (("export-onnx", tmp_path / "notamodel", tmp_path / "m.onnx"), "not a swifthydra model directory"),
    ]
    for args, message in cases:
        line = _error_line(_invoke(*args))
        assert message in line, (args, line)
    assert not (tmp_path / "m").exists()


def test_force_replaces_a_model_only_once_the_new_one_is_complete(fitted, tmp_path):
    d, df, _ = fitted
    target = tmp_path / "model"
    df.to_csv(tmp_path / "t.csv", index=False)
    shutil.copytree(d / "model", target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    # every row a known anomaly: the fit fails, the old model stays as it was
    df.assign(is_fraud=1).to_csv(tmp_path / "all.csv", index=False)
    line = _error_line(_invoke("fit", tmp_path / "all.csv", "--label-column", "is_fraud", "--out", target, "--force", *FAST))
    assert "300 of 300 rows of label column 'is_fraud' are known anomalies: more than half" in line
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.csv", "model", "t.csv"]  # no temporary left
    # a damaged preprocessing file is caught by its checksum
    (target / PREPROCESSING_FILE).write_text((target / PREPROCESSING_FILE).read_text().replace("amount", "amount2"))
    assert "does not match the checksum" in _error_line(_invoke("info", target))


def test_drop_non_numeric_and_info_json(tmp_path):
    df, _ = _transactions(n=120, seed=4)
    df.drop(columns=["tx_id"]).to_parquet(tmp_path / "t.parquet", index=False)
    result = _invoke("fit", tmp_path / "t.parquet", "--label-column", "is_fraud", "--drop-non-numeric",
                     "--out", tmp_path / "m", "--max-rows", "100", *FAST)
    assert result.exit_code == 0, result.output
    info = json.loads(_invoke("info", tmp_path / "m", "--json").output)
    assert info["table"]["dropped_columns"] == ["merchant"] and info["n_features"] == 3
    assert info["table"]["training"]["rows"] == 120 and info["table"]["training"]["rows_used"] == 100
    assert info["table"]["training"]["known_anomalies"] == 8  # every labelled row is kept
    assert info["power_transformed_features"] == ["amount"]  # frauds x25: a long right tail
    assert "Yeo-Johnson on 1: amount" in _invoke("info", tmp_path / "m").output
    # the dropped column may be there or not when scoring
    df.drop(columns=["merchant", "is_fraud", "tx_id"]).to_csv(tmp_path / "n.csv", index=False)
    assert _invoke("score", tmp_path / "m", tmp_path / "n.csv", "--out", tmp_path / "s.csv").exit_code == 0
    assert _invoke("score", tmp_path / "m", tmp_path / "t.parquet", "--out", tmp_path / "s2.csv").exit_code == 0


def test_explain_table_names_the_planted_columns(fitted):
    d, df, fraud = fitted
    result = _invoke("explain", d / "model", d / "train.csv", "--top", "4", "--features", "2")
    assert result.exit_code == 0, result.output
    assert "contribution" in result.output and "velocity" in result.output
    csv = _invoke("explain", d / "model", d / "train.csv", "--top", "5", "--features", "1", "--format", "csv",
                  "--chunk-rows", "37")
    table = pd.read_csv(pd.io.common.StringIO(csv.output))
    assert fraud[table["row"]].all()  # the top rows are the planted frauds
    assert set(table["column"]) <= {"amount", "velocity"}  # explained by what was planted
    assert (table["contribution"] > 0).all()


def test_streaming_reader_yields_bounded_chunks(tmp_path):
    df = pd.DataFrame({"a": np.arange(1000.0), "c": ["x", "1"] * 500})
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "one_group.parquet", row_group_size=1000)
    df.set_index("a", drop=False).to_parquet(tmp_path / "indexed.parquet")  # pandas index column
    df.to_csv(tmp_path / "d.csv", index=False)
    assert table_columns(tmp_path / "indexed.parquet") == ["a", "c"]
    for name in ("one_group.parquet", "d.csv"):
        chunks = list(iter_table(tmp_path / name, ["a", "c"], chunk_rows=128, string_columns=["c"]))
        assert [len(c) for c in chunks] == [128] * 7 + [104]
        assert pd.concat(chunks)["a"].tolist() == list(range(1000))
        assert all(c["c"].map(type).eq(str).all() for c in chunks)  # "1" stays text in every chunk


def test_a_model_saved_from_python(fitted, tmp_path):
    d, df, _ = fitted
    est, _, _ = load_table_model(d / "model")
    est.save(tmp_path / "py_model")  # no table preprocessing
    assert "saved from Python" in _invoke("info", tmp_path / "py_model").output
    df.to_csv(tmp_path / "t.csv", index=False)
    line = _error_line(_invoke("score", tmp_path / "py_model", tmp_path / "t.csv", "--out", tmp_path / "o.csv"))
    assert "saved without table preprocessing" in line
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnxscript"):
        result = _invoke("export-onnx", tmp_path / "py_model", tmp_path / "m.onnx")
        assert result.exit_code == 0, result.output
        assert "inputs 'features'" in result.output and "onnxruntime agrees with PyTorch" in result.output


def test_the_model_kind_named_without_torch_is_swifthydras():
    from swifthydra.cli._table import _MODEL_KIND
    from swifthydra.hydra import MODEL_KIND

    assert _MODEL_KIND == MODEL_KIND


def test_the_deprecated_module_paths_still_re_export_the_helpers():
    """swifthydra.cli_model and swifthydra.cli_evaluate are shims over the swifthydra.cli package."""
    import swifthydra.cli_evaluate
    import swifthydra.cli_model
    from swifthydra.cli import _table, evaluate

    assert swifthydra.cli_model.load_table_model is _table.load_table_model
    assert swifthydra.cli_model.PREPROCESSING_FILE == PREPROCESSING_FILE == "preprocessing.json"
    assert swifthydra.cli_evaluate.evaluate is evaluate.evaluate


def test_start_up_imports_only_what_a_command_needs(fitted, tmp_path):
    """`import swifthydra`, the CLI and --help import neither scikit-learn nor torch; loading a
    model (what `score` does) does not import torch._dynamo through the detectors (the shapes
    are checked by arithmetic, no optimiser is made)."""
    d, _, _ = fitted
    code = (
        "import sys, gc\n"
        "import swifthydra, swifthydra.cli\n"
        "from swifthydra import InvalidInputError\n"
        "assert not {'sklearn', 'torch', 'pandas'} & set(sys.modules), sorted(m for m in ('sklearn', 'torch', 'pandas') if m in sys.modules)\n"
        "from swifthydra.exceptions import NotFittedError\n"
        "import sklearn.exceptions\n"
        "assert issubclass(NotFittedError, sklearn.exceptions.NotFittedError) and swifthydra.NotFittedError is NotFittedError\n"
        "from swifthydra.detectors import MambaDetector, MoME\n"
        "from swifthydra.io import load_model_dir\n"
        f"meta, tensors = load_model_dir({str(d / 'model')!r})\n"
        "cfg = meta['config']\n"
        "part = lambda p: {k[len(p) + 1:]: v for k, v in tensors.items() if k.startswith(p + '.')}\n"
        "MambaDetector.from_config(cfg['detector'], part('detector'))\n"
        "mome = MoME.from_config(cfg['mome'], part('mome'))\n"
        "assert 'torch._dynamo' not in sys.modules\n"
        "assert mome.optimizer_ is None\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    help_ = subprocess.run([sys.executable, "-X", "importtime", "-m", "swifthydra.cli", "--help"],
                           capture_output=True, text=True, timeout=300)
    assert help_.returncode == 0
    imported = {line.split("|")[-1].strip() for line in help_.stderr.splitlines() if line.startswith("import time:")}
    assert not {"sklearn", "torch"} & imported


def test_score_leaves_the_garbage_collector_as_it_found_it(fitted, tmp_path):
    import gc

    d, df, _ = fitted
    df.drop(columns=["is_fraud"]).to_csv(tmp_path / "new.csv", index=False)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    for args in (["score", d / "model", tmp_path / "new.csv", "--out", tmp_path / "s.csv"],
                 ["score", d / "nomodel", tmp_path / "new.csv", "--out", tmp_path / "t.csv"],
                 ["explain", d / "model", tmp_path / "new.csv", "--top", "2"]):
        _invoke(*args)
        assert gc.isenabled() and gc.get_freeze_count() == 0


def test_fit_with_no_episode_saves_a_model_that_scores(tmp_path):
    """`--episodes 0` (episode 0 only) used to save the model and then die on `best_episode_`."""
    df, _ = _transactions()
    data = tmp_path / "t.csv"
    df.to_csv(data, index=False)
    result = _invoke("fit", data, "--out", tmp_path / "m", "--label-column", "is_fraud", "--id-column", "tx_id",
                     "--quick", "--generator", "rl", "--episodes", "0")
    assert result.exit_code == 0, result.output
    assert "best 0" in result.output
    scored = _invoke("score", tmp_path / "m", data, "--out", tmp_path / "s.csv")
    assert scored.exit_code == 0, scored.output
