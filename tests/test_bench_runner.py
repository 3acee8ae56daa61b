"""The benchmark runner: cells, identical splits, skipped/failed cells, resume, worker pool."""

from __future__ import annotations

import importlib
import json
import sqlite3
import textwrap

import numpy as np
import pytest

from swifthydra.bench import ResultStore, plan_cells, run_benchmark
from swifthydra.bench.runner import parse_params, resolve_datasets
from swifthydra.exceptions import InvalidInputError, SwiftHydraError

PLUGIN = "swifthydra_bench_testplugin"
PLUGIN_SOURCE = textwrap.dedent('''
    """Test models for the benchmark (loaded through $SWIFTHYDRA_BENCH_PLUGINS)."""
    import os
    import signal
    import time

    import numpy as np

    from swifthydra.bench import register_model


    class Mean:
        def __init__(self, mode="ok", sleep=0.0, pidfile=None):
            self.mode, self.sleep, self.pidfile = mode, sleep, pidfile

        def fit(self, X, y=None):
            if self.pidfile:
                with open(self.pidfile, "a") as f:
                    f.write(f"{os.getpid()}\\n")
            if self.mode == "crash":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.mode == "fail":
                raise RuntimeError("boom on purpose")
            if self.mode == "hang":
                time.sleep(120)
            if self.mode == "nan":
                self.mu_ = np.full(X.shape[1], np.nan)
                return self
            time.sleep(self.sleep)
            self.mu_ = np.asarray(X).mean(axis=0)
            return self

        def decision_function(self, X):
            return ((np.asarray(X) - self.mu_) ** 2).sum(axis=1)


    class WithHistory(Mean):
        def fit(self, X, y=None):
            super().fit(X, y)
            self.history_ = [{"episode": e, "reward": 1.0 / (e + 1), "auc": 0.5 + 0.1 * e}
                             for e in range(4)]
            self.generated_ = np.asarray(X)[:30] + 0.05
            return self


    @register_model("t-mean", libraries=("numpy",), peer=False, warmup=False)
    def _mean(seed, n_jobs, **params):
        return Mean(**params)


    @register_model("t-history", supervision="semi-supervised", min_labeled=0, peer=False,
                    warmup=False)
    def _history(seed, n_jobs, **params):
        return WithHistory(**params)


    @register_model("t-labels", supervision="supervised", libraries=(), peer=False,
                    warmup=False)
    def _labels(seed, n_jobs, **params):
        return Mean(**params)
''')


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("plugin")
    (d / f"{PLUGIN}.py").write_text(PLUGIN_SOURCE)
    return d


@pytest.fixture
def plugin(plugin_dir, monkeypatch):
    """Test models, visible here and in spawned worker processes."""
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.setenv("SWIFTHYDRA_BENCH_PLUGINS", PLUGIN)
    importlib.import_module(PLUGIN)
    return PLUGIN


@pytest.fixture
def tiny_npz(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 4))
    y = np.zeros(300, int)
    y[:30] = 1
    X[:30] += 3
    path = tmp_path / "tiny.npz"
    np.savez(path, X=X, y=y)
    return path


def _rows(path):
    with ResultStore(path, readonly=True) as store:
        return store.to_frame()


def test_plan_cells_grid_and_order():
    cells = plan_cells(["a", "b"], labeled_ratios=[0, 0.05], seeds=[1, 2], models=["m1", "m2"],
                       params={"m1": {"k": 1}})
    assert len(cells) == 16
    assert cells[0].model == "m1" and cells[1].model == "m2"
    assert cells[0].split_key == cells[1].split_key
    assert cells[0].config == '{"k":1}' and cells[1].config == "{}"
    unseen = plan_cells(["a"], labeled_ratios=[0.1], seeds=[1], models=["m"],
                        scenario="unseen-type", anomaly_types=["local", "global"])
    assert [c.scenario for c in unseen] == ["unseen-type:local", "unseen-type:global"]
    with pytest.raises(InvalidInputError):
        plan_cells(["a"], labeled_ratios=[0], seeds=[1], models=["m"], scenario="nope")


def test_parse_params():
    assert parse_params(["iforest.n_estimators=10", "iforest.max_samples=0.5",
                         "ecod.tag=abc"]) == {"iforest": {"n_estimators": 10, "max_samples": 0.5},
                                              "ecod": {"tag": "abc"}}
    with pytest.raises(InvalidInputError, match="MODEL.KEY=VALUE"):
        parse_params(["iforest=3"])
    with pytest.raises(InvalidInputError, match="unknown model"):
        parse_params(["nope.k=1"])


def test_resolve_datasets(tiny_npz):
    names = [s.name for s in resolve_datasets(["builtin:wine", str(tiny_npz)])]
    assert names == ["builtin:wine", "tiny"]
    with pytest.raises(SwiftHydraError, match="unknown dataset"):
        resolve_datasets("no_such_dataset")


def test_run_in_process_records_every_cell(tmp_path, tiny_npz, plugin):
    out = tmp_path / "r.sqlite"
    seen = []
    summary = run_benchmark([str(tiny_npz)], out=out, labeled_ratios=[0, 0.1], seeds=[1, 2],
                            models="t-mean,t-labels,t-history,ecod", jobs=0,
                            params=["t-history.sleep=0"],
                            progress=lambda row, i, n: seen.append((i, n)))
    assert summary.total == 16 and summary.ran == 16 and summary.already_done == 0
    assert seen[-1] == (16, 16)
    df = _rows(out)
    assert len(df) == 16
    # labelled model skipped (not dropped) at ratio 0
    skipped = df[df.status == "skipped"]
    assert set(skipped.model) == {"t-labels"} and set(skipped.labeled_ratio) == {0.0}
    assert skipped.error.str.contains("needs at least 1 labelled").all()
    ok = df[df.status == "ok"]
    assert ok.auc_roc.between(0.9, 1.0).all()
    for col in ("auc_pr", "fit_seconds", "score_seconds", "rows_per_second", "peak_memory_mb"):
        assert ok[col].notna().all(), col
    # every model of a split saw the same data
    assert (df.groupby(["labeled_ratio", "seed"]).split_hash.nunique() == 1).all()
    assert df.groupby("seed").split_hash.nunique().max() >= 1
    versions = json.loads(ok.versions.iloc[0])
    assert {"python", "swifthydra", "numpy", "scikit-learn"} <= set(versions)
    assert "pyod" in json.loads(ok[ok.model == "ecod"].versions.iloc[0])
    hist = ok[ok.model == "t-history"].history.iloc[0]
    payload = json.loads(hist)
    assert payload["history"][0]["episode"] == 0
    assert len(payload["view"]["generated"]) == 30 and len(payload["view"]["normal"][0]) == 2
    assert ok[ok.model == "t-history"].config.iloc[0] == '{"sleep":0}'


def test_failing_cell_is_recorded_and_run_goes_on(tmp_path, tiny_npz, plugin):
    out = tmp_path / "r.sqlite"
    summary = run_benchmark([str(tiny_npz)], out=out, labeled_ratios=[0.1], seeds=[1, 2],
                            models="t-mean,ecod", params=["t-mean.mode=fail"], jobs=0)
    assert summary.statuses == {"error": 2, "ok": 2}
    df = _rows(out)
    err = df[df.status == "error"]
    assert err.error.str.startswith("RuntimeError: boom on purpose").all()
    assert err.traceback.str.contains("boom on purpose").all()


def test_non_finite_scores_are_an_error(tmp_path, tiny_npz, plugin):
    out = tmp_path / "r.sqlite"
    run_benchmark([str(tiny_npz)], out=out, seeds=[1], models="t-mean",
                  params=["t-mean.mode=nan"], jobs=0)
    assert "non-finite" in _rows(out).error.iloc[0]


def test_resume_skips_finished_cells_and_retry_errors(tmp_path, tiny_npz, plugin):
    out = tmp_path / "r.sqlite"
    kw = dict(out=out, labeled_ratios=[0.1], seeds=[1, 2], jobs=0)
    run_benchmark([str(tiny_npz)], models="ecod", **kw)
    first = _rows(out)
    again = run_benchmark([str(tiny_npz)], models="ecod,t-mean", **kw)
    assert again.already_done == 2 and again.ran == 2
    df = _rows(out)
    assert len(df) == 4
    keep = df[df.model == "ecod"].sort_values("seed")
    assert list(keep.finished_at) == list(first.sort_values("seed").finished_at)
    # a failed cell is kept on resume, re-run with retry_errors
    run_benchmark([str(tiny_npz)], models="t-labels", params=["t-labels.mode=fail"], **kw)
    assert run_benchmark([str(tiny_npz)], models="t-labels", params=["t-labels.mode=fail"],
                         **kw).ran == 0
    rerun = run_benchmark([str(tiny_npz)], models="t-labels", params=["t-labels.mode=fail"],
                          retry_errors=True, **kw)
    assert rerun.ran == 2
    df = _rows(out)
    assert len(df) == 6 and not df.duplicated(["model", "config", "seed"]).any()
    with sqlite3.connect(out) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 4


def test_dry_run_counts(tmp_path, tiny_npz):
    s = run_benchmark([str(tiny_npz), "builtin:wine"], out=tmp_path / "r.sqlite",
                      labeled_ratios=["0", "0.05"], seeds="1,2,3", models="ecod,iforest",
                      dry_run=True)
    assert s.total == 24 and s.ran == 0


def test_bad_arguments_raise_one_line_errors(tmp_path, tiny_npz):
    with pytest.raises(InvalidInputError, match="labelled ratio"):
        run_benchmark([str(tiny_npz)], out=tmp_path / "r.sqlite", labeled_ratios=[2])
    with pytest.raises(InvalidInputError, match="protocol"):
        run_benchmark([str(tiny_npz)], out=tmp_path / "r.sqlite", protocols="nope")
    with pytest.raises(InvalidInputError, match="backend"):
        run_benchmark([str(tiny_npz)], out=tmp_path / "r.sqlite", backend="spark")
    with pytest.raises(InvalidInputError, match="not among the models"):
        run_benchmark([str(tiny_npz)], out=tmp_path / "r.sqlite", models="ecod",
                      params=["iforest.n_estimators=3"])


def test_unloadable_dataset_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIFTHYDRA_DATA", str(tmp_path / "empty"))
    s = run_benchmark(["20_letter"], out=tmp_path / "r.sqlite", seeds=[1], models="ecod",
                      download=False, jobs=0)
    assert s.statuses == {"error": 1}
    assert "cannot load dataset" in _rows(tmp_path / "r.sqlite").error.iloc[0]


def test_process_pool_survives_crash_and_timeout(tmp_path, tiny_npz, plugin):
    out = tmp_path / "r.sqlite"
    s = run_benchmark([str(tiny_npz)], out=out, labeled_ratios=[0.1], seeds=[1],
                      models="t-mean,t-labels,t-history,ecod",
                      params=["t-mean.mode=crash", "t-labels.mode=hang"],
                      jobs=2, timeout=8)
    assert s.ran == 4
    df = _rows(out).set_index("model")
    assert df.loc["t-mean", "status"] == "error"
    assert "worker process died (killed by SIGKILL)" in df.loc["t-mean", "error"]
    assert df.loc["t-labels", "status"] == "timeout"
    assert df.loc["t-history", "status"] == "ok" and df.loc["ecod", "status"] == "ok"
    assert df.loc["ecod", "backend"] == "local"


def test_timeout_counts_from_the_cell_not_the_worker_start(tmp_path, tiny_npz, plugin_dir,
                                                          monkeypatch):
    """A worker slow to start (spawn, imports: a loaded CI machine) does not time its cell out."""
    (plugin_dir / "swifthydra_bench_slowplugin.py").write_text(textwrap.dedent('''
        import time

        import numpy as np

        from swifthydra.bench import register_model

        time.sleep(3.0)  # a slow import, paid once per worker process


        class Fast:
            def fit(self, X, y=None):
                self.mu_ = np.asarray(X).mean(axis=0)
                return self

            def decision_function(self, X):
                return ((np.asarray(X) - self.mu_) ** 2).sum(axis=1)


        @register_model("t-slowimport", peer=False, warmup=False)
        def _fast(seed, n_jobs, **params):
            return Fast()
    '''))
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.setenv("SWIFTHYDRA_BENCH_PLUGINS", "swifthydra_bench_slowplugin")
    importlib.import_module("swifthydra_bench_slowplugin")
    out = tmp_path / "r.sqlite"
    run_benchmark([str(tiny_npz)], out=out, labeled_ratios=[0.1], seeds=[1],
                  models="t-slowimport", jobs=1, timeout=2)
    row = _rows(out).set_index("model").loc["t-slowimport"]
    assert row.status == "ok", row.error


SHARED = __import__("pathlib").Path(__file__).resolve().parents[1].parent / "shared" / "adbench"


@pytest.mark.shared
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/adbench is absent")
def test_shared_datasets_all_local(tmp_path):
    s = run_benchmark("all-local", out=tmp_path / "r.sqlite", data_dir=SHARED, seeds=[1, 2, 3],
                      models="peers", dry_run=True)
    assert s.total == 31 * 3 * 7
    s = run_benchmark(["thyroid"], out=tmp_path / "r.sqlite", data_dir=SHARED, seeds=[1],
                      models="ecod", jobs=0)
    row = _rows(tmp_path / "r.sqlite").iloc[0]
    assert row.status == "ok" and row.dataset == "38_thyroid" and row.n_train == 2640
    assert row.auc_roc > 0.9
