"""The augmentation benchmark: detector x generator cells (``swifthydra bench --generators``) and the
report's gain-over-``none`` section, through the real command line on tiny data."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import typer
from scipy.stats import wilcoxon
from typer.testing import CliRunner

from _presets import MICRO
from swifthydra.bench import ResultStore
from swifthydra.bench.cli import register
from swifthydra.bench.runner import Cell, _cell_params, plan_cells
from swifthydra.bench.store import VALUE_COLUMNS

pytest.importorskip("xgboost")
pytest.importorskip("swifthydra.generators")


def _make_app():
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.command("version")
    def _version():
        typer.echo("0")

    register(app)
    return app


@pytest.fixture
def app():
    return _make_app()


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    """Two small labelled sets (anomalies shifted in a few features)."""
    tmp_path = tmp_path_factory.mktemp("sets")
    paths = []
    for k, (n, d) in enumerate([(400, 5), (360, 4)]):
        rng = np.random.RandomState(k)
        X = rng.normal(size=(n, d))
        y = np.zeros(n, int)
        y[: n // 10] = 1
        X[: n // 10, : 2] += 2.0
        path = tmp_path / f"set{k}.npz"
        np.savez(path, X=X, y=y)
        paths.append(str(path))
    return paths


def _bench_args(datasets, out, generators="none,mixup,nngmix", extra=()):
    args = ["bench", "--datasets", *datasets, "--seeds", "1", "2", "--labeled-ratio", "0.1",
            "--models", "xgboost,devnet-ref,iforest",
            "--param", "xgboost.n_estimators=5", "--param", "devnet-ref.epochs=1",
            "--param", "devnet-ref.nb_batch=2", "--param", "devnet-ref.batch_size=64",
            "--param", "iforest.n_estimators=10",
            "--jobs", "0", "--out", str(out), "--quiet", *extra]
    if generators is not None:
        args += ["--generators", generators]
    return args


def _frame(out):
    with ResultStore(out, readonly=True) as store:
        return store.to_frame(history=False)


@pytest.fixture(scope="module")
def gen_run(two_sets, tmp_path_factory):
    """One run of 3 models x 3 generators (shared by the tests below; they work on copies)."""
    out = tmp_path_factory.mktemp("gen") / "gen.sqlite"
    res = CliRunner().invoke(_make_app(), _bench_args(two_sets, out))
    assert res.exit_code == 0, res.output
    return out, res


@pytest.fixture
def gen_results(gen_run, tmp_path):
    import shutil

    out, res = gen_run
    copy = tmp_path / "gen.sqlite"
    shutil.copy(out, copy)
    return copy, res


def test_cells_per_generator_on_identical_splits(gen_results):
    out, res = gen_results
    # 2 datasets x 2 seeds x 3 models x 3 generators; iforest's 8 augmented cells not applicable
    assert "36 cells: 0 already in" in res.output and "28 ok" in res.output
    assert "8 skipped" in res.output
    df = _frame(out)
    assert len(df) == 36
    assert set(df["generator"]) == {"none", "mixup", "nngmix"}
    for (_, _), g in df.groupby(["dataset", "seed"]):
        assert g["split_hash"].nunique() == 1  # same train/test rows for every generator
        assert g["n_train"].nunique() == 1 and g["n_test"].nunique() == 1
        assert len(g) == 9
    skipped = df[df["status"] == "skipped"]
    assert set(skipped["model"]) == {"iforest"} and set(skipped["generator"]) == {"mixup", "nngmix"}
    assert skipped["error"].str.contains("not applicable").all()

    ok = df[df["status"] == "ok"]
    for rec in ok.itertuples():
        extra = json.loads(rec.extra) if isinstance(rec.extra, str) else {}
        info = extra.get("generator")
        if rec.generator == "none":
            assert info is None  # the split went to the model untouched
            continue
        assert info["name"] == rec.generator and info["applied"] == "sampler"
        assert info["n_real"] == rec.n_train and info["n_generated"] > 0
        # fit time includes generation
        assert rec.fit_seconds >= info["generate_seconds"]
        expected = "passed to fit" if rec.model == "xgboost" else "not used"
        assert info["sample_weight"].startswith(expected)


def test_resume_does_not_rerun_done_cells(app, gen_results, two_sets):
    out, _ = gen_results
    before = _frame(out).set_index(["dataset", "seed", "model", "generator"])
    runner = CliRunner()
    res = runner.invoke(app, _bench_args(two_sets, out))
    assert res.exit_code == 0, res.output
    assert "36 cells: 36 already in" in res.output and "ran 0" in res.output
    # a new generator: only its cells are new (the skipped iforest cells stay skipped)
    res = runner.invoke(app, _bench_args(two_sets, out, generators="none,mixup,nngmix",
                                         extra=("--seeds", "3", "--dry-run")))
    assert res.exit_code == 0 and "54 cells, 36 already in" in res.output, res.output
    res = runner.invoke(app, _bench_args(two_sets, out, generators="none,mixup"))
    assert res.exit_code == 0 and "24 cells: 24 already in" in res.output
    after = _frame(out).set_index(["dataset", "seed", "model", "generator"])
    assert len(after) == 36
    assert (after.loc[before.index, "run_id"] == before["run_id"]).all()
    assert (after.loc[before.index, "finished_at"] == before["finished_at"]).all()


def _gain_table(md: str) -> dict[tuple[str, str], list[str]]:
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| detector | generator |"))
    out = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[(cells[0], cells[1])] = cells
    return out


def _holm(ps: dict[str, float]) -> dict[str, float]:
    order = sorted(ps, key=ps.get)
    out, running = {}, 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * ps[k]))
        out[k] = running
    return out


def test_report_gain_table_matches_stored_rows(app, gen_results, tmp_path):
    out, _ = gen_results
    # drop one mixup cell: its seed must leave the pairing (not bias the dataset's mean)
    with sqlite3.connect(out) as conn:
        conn.execute("DELETE FROM results WHERE model='xgboost' AND generator='mixup' AND seed=2 "
                     "AND dataset='set0'")
    res = CliRunner().invoke(app, ["report", str(out), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Generator gains over `none`" in md
    assert (tmp_path / "rep" / "img" / "gains_standard-adbench-la0.1.png").stat().st_size > 0
    assert "Not run with generators (unsupervised: they never see labels): iforest" in md
    table = _gain_table(md)
    assert {g for _, g in table} == {"mixup", "nngmix"}
    assert {d for d, _ in table} == {"xgboost[n_estimators=5]",
                                     "devnet-ref[batch_size=64,epochs=1,nb_batch=2]"}

    df = _frame(out)
    df = df[df["status"] == "ok"]
    for model in ("xgboost", "devnet-ref"):
        mine = df[df["model"] == model]
        base = mine[mine["generator"] == "none"].set_index(["dataset", "seed"])
        detector = next(d for d, _ in table if d.startswith(model))
        raw_p = {"auc_roc": {}, "auc_pr": {}}
        for gen in ("mixup", "nngmix"):
            other = mine[mine["generator"] == gen].set_index(["dataset", "seed"])
            cells = table[(detector, gen)]
            for metric, col, wtl_col in (("auc_roc", 3, 5), ("auc_pr", 4, 7)):
                deltas = (other[metric] - base.loc[other.index, metric]).groupby("dataset").mean()
                assert len(deltas) == 2 and int(cells[2]) == 2
                assert float(cells[col]) == pytest.approx(deltas.mean(), abs=6e-5)
                w, t, l_ = (int((deltas > 0.005).sum()), int((deltas.abs() <= 0.005).sum()),
                            int((deltas < -0.005).sum()))
                assert cells[wtl_col] == f"{w}/{t}/{l_}"
                d = deltas.to_numpy()
                raw_p[metric][gen] = (1.0 if np.allclose(d, 0)
                                      else wilcoxon(d, zero_method="zsplit").pvalue)
        for metric, col in (("auc_roc", 6), ("auc_pr", 8)):
            for gen, p in _holm(raw_p[metric]).items():
                assert float(table[(detector, gen)][col]) == pytest.approx(p, rel=1e-2)
        weights = "weighted" if model == "xgboost" else "unweighted"
        assert table[(detector, "mixup")][11] == weights
    # the model sections label each detector x generator separately
    assert "xgboost[n_estimators=5]+nngmix" in md and "xgboost[n_estimators=5]+mixup" in md
    # the gains plot's long detector (a label of no model section) has its short name listed;
    # generator labels this short need none
    assert "| devnet-ref #1 | devnet-ref[batch_size=64,epochs=1,nb_batch=2] |" in md
    assert "Generator names in the plots" not in md
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "Generator gains over <code>none</code>" in html


def test_report_without_generators_is_unchanged(app, two_sets, tmp_path):
    out = tmp_path / "plain.sqlite"
    runner = CliRunner()
    res = runner.invoke(app, _bench_args(two_sets, out, generators=None))
    assert res.exit_code == 0, res.output
    assert set(_frame(out)["generator"]) == {"none"}
    res = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Generator gains" not in md and "+none" not in md
    assert "| xgboost[n_estimators=5] |" in md
    # an explicit "--generators none" is the same cells: nothing to run
    res = runner.invoke(app, _bench_args(two_sets, out, generators="none"))
    assert res.exit_code == 0 and "12 cells: 12 already in" in res.output


def test_unseen_type_scenario_with_generators(app, tmp_path):
    out = tmp_path / "unseen.sqlite"
    res = CliRunner().invoke(app, [
        "bench", "--datasets", "builtin:wine", "--scenario", "unseen-type", "--anomaly-types",
        "local", "global", "--seeds", "1", "--labeled-ratio", "0.2", "--models", "xgboost",
        "--param", "xgboost.n_estimators=5", "--generators", "none,nngmix", "--jobs", "0",
        "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    df = _frame(out)
    assert len(df) == 4 and (df["status"] == "ok").all()
    assert df.groupby("scenario")["split_hash"].nunique().eq(1).all()
    res = CliRunner().invoke(app, ["report", str(out), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "### Gains: unseen anomaly types, protocol `adbench`, labelled ratio 0.2" in md
    cells = _gain_table(md)[("xgboost[n_estimators=5]", "nngmix")]
    ok = df.set_index(["scenario", "generator"])
    delta = np.mean([ok.loc[(s, "nngmix"), "auc_roc"] - ok.loc[(s, "none"), "auc_roc"]
                     for s in ("unseen-type:local", "unseen-type:global")])
    assert float(cells[3]) == pytest.approx(delta, abs=6e-5)


def test_generator_params_are_part_of_the_key(app, two_sets, tmp_path):
    out = tmp_path / "p.sqlite"
    args = ["bench", "--datasets", two_sets[0], "--seeds", "1", "--labeled-ratio", "0.1",
            "--models", "xgboost", "--param", "xgboost.n_estimators=5", "--generators",
            "none,mixup", "--param", "gen.mixup.generated_weight=2.0", "--jobs", "0",
            "--out", str(out), "--quiet"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    df = _frame(out).set_index("generator")
    assert set(df.index) == {"none", 'mixup{"generated_weight":2.0}'}
    info = json.loads(df.loc['mixup{"generated_weight":2.0}', "extra"])["generator"]
    assert info["params"] == {"generated_weight": 2.0}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--generators", "none,bogus"], "unknown generator 'bogus': choose from none, mixup"),
        (["--generators", "none", "--param", "gen.nngmix.k=3"],
         "--param given for generator 'nngmix', which is not among the generators"),
        (["--generators", "nngmix", "--param", "gen.nngmix=3"], "gen.GENERATOR.KEY=VALUE"),
        (["--generators", "nngmix", "--param", "gen.nngmix.kk=3"],
         "generator 'nngmix' has no parameter 'kk' (it takes"),
        (["--generators", "mixup", "--param", "gen.mixup.random_state=3"],
         "is the cell's seed"),
        (["--models", "swifthydra", "--generators", "none", "--param",
          "swifthydra.generator=cvae"], "give only --generators"),
    ],
)
def test_generator_errors_are_one_line(app, tmp_path, extra, message):
    args = ["bench", "--datasets", "builtin:wine", "--out", str(tmp_path / "x.sqlite"),
            "--dry-run"]
    if "--models" not in extra:
        args += ["--models", "xgboost"]
    res = CliRunner().invoke(app, args + extra)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert len([x for x in res.output.splitlines() if x.startswith("error:")]) == 1


def test_swifthydra_generator_is_its_own_parameter():
    import inspect

    from swifthydra.hydra import SwiftHydra

    default = inspect.signature(SwiftHydra.__init__).parameters["generator"].default
    cells = plan_cells(["d"], labeled_ratios=[0.05], seeds=[1], models=["swifthydra"])
    assert [c.generator for c in cells] == [default]  # without --generators: its own default
    cells = plan_cells(["d"], labeled_ratios=[0.05], seeds=[1], models=["swifthydra"],
                       params={"swifthydra": {"generator": "cvae", "episodes": 2}})
    assert [(c.generator, c.config) for c in cells] == [("cvae", '{"episodes":2}')]
    params = {"swifthydra": {"episodes": 2}}
    cells = plan_cells(["d"], labeled_ratios=[0.05], seeds=[1], models=["swifthydra"],
                       params=params, generators=["none", "cvae"])
    assert [c.generator for c in cells] == ["none", "cvae"]
    assert _cell_params(cells[1], params) == {"episodes": 2, "generator": "cvae"}


def test_swifthydra_generators_through_the_cli(app, tmp_path):
    out = tmp_path / "sh.sqlite"
    params = []
    for key, value in MICRO.items():
        if key != "generator":  # --generators chooses it here
            params += ["--param", f"swifthydra.{key}={json.dumps(value)}"]
    res = CliRunner().invoke(app, [
        "bench", "--datasets", "builtin:wine", "--seeds", "1", "--labeled-ratio", "0.1",
        "--models", "swifthydra", "--generators", "none,cvae", *params, "--jobs", "0",
        "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    df = _frame(out).set_index("generator")
    assert set(df.index) == {"none", "cvae"} and (df["status"] == "ok").all(), df["error"]
    assert df["split_hash"].nunique() == 1
    for gen in ("none", "cvae"):
        info = json.loads(df.loc[gen, "extra"])["generator"]
        assert info == {"name": gen, "applied": f"model parameter generator={gen!r}"}


def test_schema1_file_loads_and_resumes(app, two_sets, tmp_path):
    """A results file written before the generator column: read, migrated, resumed."""
    out = tmp_path / "old.sqlite"
    runner = CliRunner()
    res = runner.invoke(app, _bench_args(two_sets[:1], out, generators=None))
    assert res.exit_code == 0, res.output
    old_key = "dataset, protocol, scenario, labeled_ratio, seed, model, config"
    value_cols = ", ".join(n for n, _ in VALUE_COLUMNS)
    with sqlite3.connect(out) as conn:  # rebuild as the schema-1 table
        conn.executescript(f"""
            CREATE TABLE old (dataset TEXT NOT NULL, protocol TEXT NOT NULL,
                scenario TEXT NOT NULL, labeled_ratio REAL NOT NULL, seed INTEGER NOT NULL,
                model TEXT NOT NULL, config TEXT NOT NULL,
                {", ".join(f"{n} {t}" for n, t in VALUE_COLUMNS)}, PRIMARY KEY ({old_key}));
            INSERT INTO old SELECT {old_key}, {value_cols} FROM results;
            DROP TABLE results;
            ALTER TABLE old RENAME TO results;
            UPDATE meta SET value='1' WHERE key='schema_version';
            INSERT INTO results (dataset, protocol, scenario, labeled_ratio, seed, model, config,
                                 status)
                VALUES ('x', 'adbench', 'standard', 0.05, 1, 'swifthydra',
                        '{{"episodes":2,"generator":"cvae"}}', 'skipped');
        """)
    with ResultStore(out, readonly=True) as store:  # read-only: read as if migrated
        df = store.to_frame()
        assert set(df["generator"]) == {"none", "cvae"}
        assert df.loc[df["model"] == "swifthydra", "config"].tolist() == ['{"episodes":2}']
        assert len(store.keys()) == 7
    with sqlite3.connect(out) as conn:  # the file itself is untouched by reading
        assert "generator" not in [r[1] for r in conn.execute("PRAGMA table_info(results)")]
    res = runner.invoke(app, _bench_args(two_sets[:1], out, generators="none"))
    assert res.exit_code == 0 and "6 cells: 6 already in" in res.output, res.output
    with sqlite3.connect(out) as conn:
        assert "generator" in [r[1] for r in conn.execute("PRAGMA table_info(results)")]
        version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        assert version == ("2",)
        rows = conn.execute("SELECT model, config, generator FROM results WHERE dataset='x'")
        assert rows.fetchall() == [("swifthydra", '{"episodes":2}', "cvae")]
    res = runner.invoke(app, _bench_args(two_sets[:1], out, generators="none,mixup"))
    assert res.exit_code == 0, res.output
    assert "12 cells: 6 already in" in res.output and "ran 6" in res.output


def test_cell_key_includes_generator():
    a = Cell("d", "adbench", "standard", 0.05, 1, "xgboost", "{}", "none")
    b = Cell("d", "adbench", "standard", 0.05, 1, "xgboost", "{}", "nngmix")
    assert a.key != b.key and a.split_key == b.split_key
    assert a.key == Cell("d", "adbench", "standard", 0.05, 1, "xgboost").key
    assert a.as_dict()["generator"] == "none"


def test_cvae_and_rl_are_rewarded_against_the_detector(app, two_sets, tmp_path):
    out = tmp_path / "latent.sqlite"
    tiny = {"episodes": 1, "cvae_epochs": 2, "num_envs": 4, "horizon": 2, "latent_dim": 2}
    params = []
    for gen in ("cvae", "rl"):
        params += [x for k, v in tiny.items() for x in ("--param", f"gen.{gen}.{k}={v}")]
    params += ["--param", "gen.rl.ppo_iterations=1", "--param", "gen.rl.estimator=default"]
    res = CliRunner().invoke(app, [
        "bench", "--datasets", two_sets[1], "--seeds", "1", "--labeled-ratio", "0.2",
        "--models", "xgboost", "--param", "xgboost.n_estimators=5", "--generators",
        "none,cvae,rl", *params, "--jobs", "0", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    df = _frame(out)
    assert (df["status"] == "ok").all(), df["error"].tolist()
    assert df["split_hash"].nunique() == 1
    info = {g.split("{")[0]: json.loads(e)["generator"] if isinstance(e, str) else None
            for g, e in zip(df["generator"], df["extra"], strict=True)}
    assert info["none"] is None
    assert info["cvae"]["reward_against"] == "the cell's detector, fitted on the real rows"
    assert info["rl"]["reward_against"] == "the generator's default estimator"
    assert info["rl"]["params"]["estimator"] == "default"
    for gen in ("cvae", "rl"):
        assert info[gen]["n_generated"] > 0 and info[gen]["sample_weight"] == "passed to fit"
