"""The benchmark's command-line commands, registered on a Typer app."""

from __future__ import annotations

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from swifthydra.bench import ResultStore
from swifthydra.bench.cli import expand_multi_value_args, register


@pytest.fixture
def app():
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.command("version")
    def _version():  # a second command, so that `bench` is a subcommand as in the real CLI
        typer.echo("0")

    register(app)
    return app


@pytest.fixture
def tiny(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 4))
    y = np.zeros(300, int)
    y[:30] = 1
    X[:30] += 3
    np.savez(tmp_path / "tiny.npz", X=X, y=y)
    return tmp_path / "tiny.npz"


def test_expand_multi_value_args():
    assert expand_multi_value_args(["--seeds", "1", "2", "--out", "x", "-l", "0", "0.05"]) == [
        "--seeds", "1", "--seeds", "2", "--out", "x", "-l", "0", "-l", "0.05"]
    assert expand_multi_value_args(["--seeds=1", "2", "--dry-run"]) == [
        "--seeds", "1", "--seeds", "2", "--dry-run"]
    assert expand_multi_value_args(["--models", "a,b", "--jobs", "0"]) == [
        "--models", "a,b", "--jobs", "0"]


def test_bench_run_resume_export_report(app, tiny, tmp_path):
    runner = CliRunner()
    out = tmp_path / "r.sqlite"
    args = ["bench", "--datasets", str(tiny), "builtin:wine", "--labeled-ratio", "0", "0.05",
            "--seeds", "1", "2", "--models", "iforest,ecod,xgboost", "--param",
            "iforest.n_estimators=10", "--param", "xgboost.n_estimators=5", "--jobs", "0",
            "--out", str(out), "--quiet"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "24 cells: 0 already in" in res.output and "4 skipped" in res.output
    with ResultStore(out, readonly=True) as store:
        df = store.to_frame()
    assert len(df) == 24
    assert set(df[df.model == "iforest"].config) == {'{"n_estimators":10}'}

    res = runner.invoke(app, args[:-1])  # not quiet: one line per cell (none to run here)
    assert res.exit_code == 0 and "24 already in" in res.output

    res = runner.invoke(app, ["bench", "--datasets", str(tiny), "--seeds", "1", "2", "3",
                              "--models", "ecod", "--out", str(out), "--dry-run"])
    assert res.exit_code == 0 and "3 cells, 2 already in" in res.output  # seeds 1, 2 done

    res = runner.invoke(app, ["bench", "export", str(out), "--format", "markdown"])
    assert res.exit_code == 0 and res.output.startswith("| dataset |")
    res = runner.invoke(app, ["bench", "export", str(out), "--format", "parquet", "--out",
                              str(tmp_path / "r.parquet")])
    assert res.exit_code == 0 and (tmp_path / "r.parquet").stat().st_size > 0
    res = runner.invoke(app, ["bench", "export", str(out)])
    assert res.exit_code == 0 and res.output.count("\n") == 25

    res = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "rep" / "report.md").is_file()
    assert (tmp_path / "rep" / "report.html").is_file()
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "labelled ratio 0.05" in md and "labelled ratio 0 " not in md.replace("0.05", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "--datasets", "wine", "--models", "nope"], "unknown model 'nope': choose from"),
        (["bench", "--datasets", "no_such_set"], "unknown dataset 'no_such_set'"),
        (["bench", "--datasets", "wine", "--labeled-ratio", "1.5"], "labelled ratio must be in"),
        (["bench", "--datasets", "wine", "--protocol", "x"], "unknown protocol 'x'"),
        (["bench", "--datasets", "wine", "--scenario", "x", "--models", "ecod"],
         "unknown scenario"),
        (["bench", "--datasets", "wine", "--param", "ecod"], "MODEL.KEY=VALUE"),
        (["bench", "export", "missing.sqlite"], "does not exist"),
        (["bench", "export", "{db}", "--format", "xlsx"], "unknown format"),
        (["report", "missing.sqlite"], "does not exist"),
    ],
)
def test_errors_are_one_line(app, tmp_path, args, message):
    db = tmp_path / "db.sqlite"
    ResultStore(db).close()
    args = [a.replace("{db}", str(db)) for a in args]
    if args[0] == "bench" and args[1] != "export":
        args += ["--out", str(tmp_path / "x.sqlite"), "--dry-run"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    lines = [x for x in res.output.splitlines() if x.startswith("error:")]
    assert len(lines) == 1


def test_bench_without_datasets_shows_help(app):
    res = CliRunner().invoke(app, ["bench"])
    assert res.exit_code == 2 and "--datasets" in res.output


def test_models_listing(app):
    res = CliRunner().invoke(app, ["bench", "models"])
    assert res.exit_code == 0
    for name in ("iforest", "ecod", "cblof", "xgbod", "devnet", "catboost", "xgboost",
                 "swifthydra"):
        assert name in res.output
