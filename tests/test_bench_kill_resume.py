"""Kill the benchmark with SIGKILL mid-run, then resume it: no loss beyond the cell in progress,
no duplicates, no orphaned workers."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

PLUGIN = "swifthydra_bench_killplugin"
SOURCE = textwrap.dedent('''
    import os
    import time

    import numpy as np

    from swifthydra.bench import register_model


    class Slow:
        def __init__(self, sleep=0.1, pidfile=None):
            self.sleep, self.pidfile = sleep, pidfile

        def fit(self, X, y=None):
            if self.pidfile:
                with open(self.pidfile, "a") as f:
                    f.write(f"{os.getpid()}\\n")
            time.sleep(self.sleep)
            self.mu_ = np.asarray(X).mean(axis=0)
            return self

        def decision_function(self, X):
            return ((np.asarray(X) - self.mu_) ** 2).sum(axis=1)


    @register_model("t-slow", peer=False, warmup=False)
    def _slow(seed, n_jobs, **params):
        return Slow(**params)


    @register_model("t-fast", peer=False, warmup=False)
    def _fast(seed, n_jobs, **params):
        return Slow(sleep=0.0)
''')

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _count(db) -> int:
    if not os.path.exists(db):
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def test_sigkill_mid_run_then_resume(tmp_path):
    (tmp_path / f"{PLUGIN}.py").write_text(SOURCE)
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 3))
    y = np.zeros(200, int)
    y[:20] = 1
    X[:20] += 3
    np.savez(tmp_path / "tiny.npz", X=X, y=y)
    db = tmp_path / "res.sqlite"
    pidfile = tmp_path / "pids.txt"
    n_seeds = 12
    cmd = [sys.executable, "-m", "swifthydra.bench", "bench", "--datasets",
           str(tmp_path / "tiny.npz"), "--labeled-ratio", "0.1", "--seeds",
           *map(str, range(1, n_seeds + 1)), "--models", "t-slow,t-fast", "--param",
           "t-slow.sleep=0.15", "--param", f"t-slow.pidfile={pidfile}", "--jobs", "1",
           "--out", str(db), "--quiet"]
    env = dict(os.environ, SWIFTHYDRA_BENCH_PLUGINS=PLUGIN,
               PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    total = 2 * n_seeds

    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while _count(db) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.stdout.read().decode()
    os.kill(proc.pid, signal.SIGKILL)  # the driver only: its workers must notice by themselves
    proc.wait()
    proc.stdout.close()

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        before = dict(conn.execute(
            "SELECT seed || '/' || model, finished_at FROM results").fetchall())
    assert 4 <= len(before) < total
    # worker processes do not outlive the killed driver
    pids = {int(p) for p in pidfile.read_text().split()}
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)

    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{len(before)} already in" in done.stdout
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT seed || '/' || model, finished_at, status FROM results")
        after = {k: (t, s) for k, t, s in rows.fetchall()}
        n = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        n_runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert n == total == len(after)  # complete, no duplicates
    assert all(s == "ok" for _, s in after.values())
    assert all(after[k][0] == t for k, t in before.items())  # finished cells untouched
    assert n_runs == 2

    again = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0 and f"{total} already in" in again.stdout
    assert _count(db) == total
