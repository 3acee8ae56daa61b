"""Scoring on Spark (local[2]) and on a real 2-node Ray cluster on 127.0.0.1: the scores equal the
local `swifthydra score` row for row (max abs difference < 1e-5), for a numeric table and a table
with a categorical column; `swifthydra bench --backend ray` runs on the same cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from swifthydra.cli import app

TOL = 1e-5
FAST = ["--quick", "--generator", "rl", "--episodes", "1", "--seed", "0"]
runner = CliRunner()


def _invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def _table(n: int, seed: int, categorical: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "tx_id": [f"tx{seed}-{i:05d}" for i in range(n)],
        "amount": rng.lognormal(3.0, 0.8, n).round(2),
        "hour": rng.integers(0, 24, n),
        "velocity": rng.normal(size=n).round(4),
    })
    if categorical:
        df["merchant"] = rng.choice(["fuel", "grocery", "online", "travel"], n)
        df.loc[rng.choice(n, 5, replace=False), "merchant"] = None
    df.loc[rng.choice(n, 6, replace=False), "amount"] = np.nan
    df.loc[: n // 20, "velocity"] += 6.0
    return df


@pytest.fixture(scope="module", params=["numeric", "categorical"])
def case(request, tmp_path_factory):
    """A model fitted by `swifthydra fit`, three Parquet parts to score and the local scores of each
    (`swifthydra score`, one output file per part)."""
    categorical = request.param == "categorical"
    d = tmp_path_factory.mktemp(request.param)
    _table(300, 0, categorical).to_parquet(d / "train.parquet", index=False)
    _invoke("fit", d / "train.parquet", "--id-column", "tx_id", "--out", d / "model", "--contamination", "0.05",
            *FAST)
    (d / "data").mkdir()
    local = {}
    for i, n in enumerate((120, 97, 61)):
        part = d / "data" / f"part-{i:05d}.parquet"
        df = _table(n, 10 + i, categorical)
        df.to_parquet(part, index=False, row_group_size=40)
        _invoke("score", d / "model", part, "--out", d / "local" / part.name)
        local[part.name] = pq.read_table(d / "local" / part.name).to_pandas()
    return d, local


def _assert_same_scores(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns) == ["tx_id", "score", "is_anomaly", "probability"]
    assert len(got) == len(want)
    np.testing.assert_array_equal(got["tx_id"].to_numpy(), want["tx_id"].to_numpy())
    assert float(np.max(np.abs(got["score"].to_numpy() - want["score"].to_numpy()))) < TOL
    assert float(np.max(np.abs(got["probability"].to_numpy() - want["probability"].to_numpy()))) < TOL
    np.testing.assert_array_equal(got["is_anomaly"].to_numpy(), want["is_anomaly"].to_numpy())


# ------------------------------------------------------------------------------------------ Spark
def _java_or_skip() -> None:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        if os.environ.get("CI"):
            pytest.fail("java is not installed in CI: scripts/test.sh installs default-jre-headless")
        pytest.skip("Spark needs Java: apt-get install default-jre-headless (scripts/test.sh does it as root)")


@pytest.fixture(scope="module")
def spark():
    _java_or_skip()
    if os.environ.get("CI"):
        import pyspark  # noqa: F401  (CI installs the spark extra: a missing one is a failure)
    pyspark_sql = pytest.importorskip("pyspark.sql", reason="pyspark is not installed: pip install 'swifthydra[spark]'")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    session = (
        pyspark_sql.SparkSession.builder.master("local[2]").appName("swifthydra-test")
        .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "50")
        .getOrCreate()
    )
    try:
        yield session
    finally:
        session.stop()


def test_spark_scores_equal_local_scores(case, spark):
    from swifthydra.distributed.spark import score_dataframe

    d, local = case
    # every part as one Spark DataFrame over 2 partitions, batches of 50 rows: scores equal row for row
    frames = [pd.read_parquet(d / "data" / name) for name in sorted(local)]
    whole = pd.concat(frames, ignore_index=True)
    sdf = spark.read.parquet(*[str(d / "data" / name) for name in sorted(local)])
    got = score_dataframe(sdf, d / "model", id_column="tx_id").toPandas()
    want = pd.concat([local[name] for name in sorted(local)], ignore_index=True)
    got = got.set_index("tx_id").loc[whole["tx_id"]].reset_index()  # Spark may read the files in any order
    _assert_same_scores(got, want)
    # from an in-memory pandas frame (order kept), with the function given straight to mapInPandas
    from swifthydra.distributed.spark import output_schema, scoring_function

    sdf = spark.createDataFrame(whole)
    fn = scoring_function(str(d / "model"), id_column="tx_id")
    got = sdf.mapInPandas(fn, output_schema(sdf, "tx_id")).toPandas()
    _assert_same_scores(got, want)


def test_spark_refuses_wrong_columns_on_the_driver(case, spark):
    from swifthydra.distributed.spark import score_dataframe
    from swifthydra.exceptions import InvalidInputError

    d, _ = case
    sdf = spark.createDataFrame(pd.DataFrame({"tx_id": ["a"], "amount": [1.0]}))
    with pytest.raises(InvalidInputError, match="hour"):
        score_dataframe(sdf, d / "model", id_column="tx_id")


# -------------------------------------------------------------------------------------------- Ray
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc) -> None:
    """Stop a `ray start --block` we started: SIGTERM (it stops the processes it started), then
    SIGKILL of its own process group."""
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group we created for it (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A real Ray cluster on 127.0.0.1: a head node and a second node, one CPU each, started with
    `ray start` and stopped at the end (also when a test fails)."""
    if os.environ.get("CI"):
        import ray  # noqa: F401  (CI installs the ray extra: a missing one is a failure)
    ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'swifthydra[ray]'")
    pytest.importorskip("ray.data", reason="ray[data] is not installed: pip install 'swifthydra[ray]'")
    ray_bin = str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--object-store-memory",
              str(150 * 2**20), "--disable-usage-stats"]
    temp = tmp_path_factory.mktemp("ray")
    # a throwaway cluster on the loopback: no auth token (Ray >= 2.5x asks for one by default)
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update({"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"})
    env = dict(os.environ)
    logs = []
    procs = []
    try:
        log = open(temp / "head.log", "w")  # noqa: SIM115
        logs.append(log)
        procs.append(subprocess.Popen(
            [ray_bin, "start", "--head", "--port", str(port), "--include-dashboard", "false",
             "--temp-dir", str(temp), *common],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env))
        _wait_for_nodes(ray_bin, address, 1, procs)
        log = open(temp / "worker.log", "w")  # noqa: SIM115
        logs.append(log)
        procs.append(subprocess.Popen(
            [ray_bin, "start", "--address", address, *common],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env))
        _wait_for_nodes(ray_bin, address, 2, procs)
        # the driver joins on the loopback address too (by default it would take the machine's own)
        ray.init(address=address, log_to_driver=False, configure_logging=False, _node_ip_address="127.0.0.1")
        try:
            yield address
        finally:
            ray.shutdown()
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for log in logs:
            log.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _wait_for_nodes(ray_bin: str, address: str, n: int, procs, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"`ray start` exited with {dead[0].returncode} (see the logs in the tmp folder)")
        out = subprocess.run([ray_bin, "status", "--address", address], capture_output=True, text=True, timeout=60)
        if out.returncode == 0 and out.stdout.count("node_") >= n:
            return
        time.sleep(2)
    raise RuntimeError(f"the Ray cluster at {address} did not reach {n} nodes in {timeout:.0f} s")


def test_ray_cli_scores_equal_local_scores(case, ray_cluster, tmp_path):
    d, local = case
    result = subprocess.run(
        [sys.executable, "-m", "swifthydra.cli", "score", str(d / "model"), str(d / "data" / "part-*.parquet"),
         "--engine", "ray", "--address", ray_cluster, "--out", str(tmp_path / "scores"), "--chunk-rows", "30"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "scored 278 rows in 3 files on Ray" in result.stdout
    assert sorted(p.name for p in (tmp_path / "scores").iterdir()) == sorted(local)
    for name, want in local.items():
        _assert_same_scores(pq.read_table(tmp_path / "scores" / name).to_pandas(), want)
    # again without --force: refused, files kept
    again = subprocess.run(
        [sys.executable, "-m", "swifthydra.cli", "score", str(d / "model"), str(d / "data"),
         "--engine", "ray", "--address", ray_cluster, "--out", str(tmp_path / "scores")],
        capture_output=True, text=True, timeout=300,
    )
    assert again.returncode == 2 and "already holds" in again.stderr.strip().splitlines()[-1]


def test_ray_actor_scorer_keeps_no_batch(case, tmp_path, monkeypatch):
    """The Ray actors' scorer (called in-process here: no cluster) keeps no reference to a batch it
    scored nor to the frame it returned, so each block goes once scored and written and an actor's
    own memory stays flat over a run (docs/benchmarks.md); its scores are the local command's."""
    import gc
    import tempfile
    import weakref

    from swifthydra.distributed.ray import PATH_COLUMN, _BatchScorer, _pack

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the unpacked model goes there
    d, local = case
    scorer = _BatchScorer(_pack(d / "model"), "tx_id", "fail", 1, (PATH_COLUMN,))
    refs = []
    for name in sorted(local):
        batch = pd.read_parquet(d / "data" / name)
        batch[PATH_COLUMN] = name
        out = scorer(batch)
        assert list(out[PATH_COLUMN].unique()) == [name]
        _assert_same_scores(out.drop(columns=[PATH_COLUMN]), local[name])
        refs += [weakref.ref(batch), weakref.ref(out)]
        del batch, out
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)


def test_ray_workers_share_one_unpacked_model(case, tmp_path, monkeypatch):
    """Every Ray worker unpacks the shipped model into one folder named by its content, reused by
    later workers and runs (one folder per model, not one per worker process left behind), with no
    staging folder left; a folder of that name that is not this user's private one is not used."""
    import stat
    import tempfile

    from swifthydra.distributed import ray as ray_scoring

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(ray_scoring, "_UNPACKED", {})
    d, _ = case
    packed = ray_scoring._pack(d / "model")
    first = ray_scoring._unpack(packed)
    assert sorted(os.listdir(first)) == sorted(os.listdir(d / "model"))
    for _ in range(3):  # new worker processes: nothing cached in memory
        monkeypatch.setattr(ray_scoring, "_UNPACKED", {})
        assert ray_scoring._unpack(packed) == first
    assert os.listdir(tmp_path) == [Path(first).parent.name]
    # The same name, writable by others (or not a folder of this user): never trusted.
    os.chmod(Path(first).parent, 0o777)
    monkeypatch.setattr(ray_scoring, "_UNPACKED", {})
    own = ray_scoring._unpack(packed)
    assert Path(own).parent != Path(first).parent
    assert stat.S_IMODE(os.stat(Path(own).parent).st_mode) == 0o700
    assert sorted(os.listdir(own)) == sorted(os.listdir(d / "model"))


def test_ray_score_dataset_on_the_cluster(case, ray_cluster):
    import ray

    from swifthydra.distributed.ray import score_dataset

    d, local = case
    names = sorted(local)
    whole = pd.concat([pd.read_parquet(d / "data" / n) for n in names], ignore_index=True)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ds = ray.data.from_pandas([whole.iloc[:150], whole.iloc[150:]])
    got = score_dataset(ds, d / "model", id_column="tx_id", batch_size=40, concurrency=2).to_pandas()
    want = pd.concat([local[n] for n in names], ignore_index=True)
    _assert_same_scores(got.reset_index(drop=True), want)
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2


def test_bench_ray_backend_on_the_cluster(ray_cluster, tmp_path):
    """`swifthydra bench --backend ray` on the cluster: the same results as the local backend on
    the same splits, and a second run resumes (nothing re-runs). One cluster serves every Ray test
    of the session: a driver that re-joins another Ray instance in the same process loses its
    objects (OwnerDiedError), so the former in-process `ray.init()` test lives here now."""
    from swifthydra.bench import ResultStore, run_benchmark

    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 4))
    y = np.zeros(300, int)
    y[:30] = 1
    X[:30] += 3
    np.savez(tmp_path / "tiny.npz", X=X, y=y)
    # XGBoost only: it imports fast in the Ray workers (PyOD's first import is slow)
    kw = dict(labeled_ratios=[0, 0.1], seeds=[1, 2], models="xgboost", params=["xgboost.n_estimators=5"])
    ray_out, local_out = tmp_path / "ray.sqlite", tmp_path / "local.sqlite"
    s = run_benchmark([str(tmp_path / "tiny.npz")], out=ray_out, backend="ray", address=ray_cluster, **kw)
    assert s.ran == 4 and s.statuses == {"ok": 2, "skipped": 2}
    run_benchmark([str(tmp_path / "tiny.npz")], out=local_out, jobs=0, **kw)
    with ResultStore(ray_out, readonly=True) as a, ResultStore(local_out, readonly=True) as b:
        ra = a.to_frame().sort_values(["labeled_ratio", "seed"]).reset_index(drop=True)
        rb = b.to_frame().sort_values(["labeled_ratio", "seed"]).reset_index(drop=True)
    assert (ra.backend == "ray").all()
    assert list(ra.split_hash) == list(rb.split_hash)
    np.testing.assert_allclose(ra.auc_roc.fillna(-1), rb.auc_roc.fillna(-1))
    again = run_benchmark([str(tmp_path / "tiny.npz")], out=ray_out, backend="ray", address=ray_cluster, **kw)
    assert again.already_done == 4 and again.ran == 0


def test_engine_errors_are_one_line(tmp_path, monkeypatch):
    """--engine ray without ray installed names the extra; an unknown engine is refused."""
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    for engine, message in (("ray", "pip install 'swifthydra[ray]'"), ("dask", "--engine must be local or ray")):
        result = runner.invoke(app, ["score", str(tmp_path / "model"), str(tmp_path / "part-*.parquet"),
                                     "--engine", engine, "--out", str(tmp_path / "out")])
        assert result.exit_code != 0 and "Traceback" not in result.output
        lines = [line for line in result.output.strip().splitlines() if line]
        assert lines[-1].startswith("error: ") and message in lines[-1], result.output
