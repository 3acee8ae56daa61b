"""The Ray backend, on a local Ray instance (skipped when ray is not installed)."""

from __future__ import annotations

import numpy as np
import pytest

from swifthydra.bench import ResultStore, run_benchmark

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             ignore_reinit_error=True)
    yield
    ray.shutdown()


def test_ray_backend_same_results_and_resume(tmp_path, local_ray):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 4))
    y = np.zeros(300, int)
    y[:30] = 1
    X[:30] += 3
    np.savez(tmp_path / "tiny.npz", X=X, y=y)
    # XGBoost only: it imports fast in the Ray workers (PyOD's first import is slow)
    kw = dict(labeled_ratios=[0, 0.1], seeds=[1, 2], models="xgboost",
              params=["xgboost.n_estimators=5"])
    ray_out, local_out = tmp_path / "ray.sqlite", tmp_path / "local.sqlite"
    s = run_benchmark([str(tmp_path / "tiny.npz")], out=ray_out, backend="ray", **kw)
    assert s.ran == 4 and s.statuses == {"ok": 2, "skipped": 2}
    run_benchmark([str(tmp_path / "tiny.npz")], out=local_out, jobs=0, **kw)
    with ResultStore(ray_out, readonly=True) as a, ResultStore(local_out, readonly=True) as b:
        ra = a.to_frame().sort_values(["labeled_ratio", "seed"]).reset_index(drop=True)
        rb = b.to_frame().sort_values(["labeled_ratio", "seed"]).reset_index(drop=True)
    assert (ra.backend == "ray").all()
    assert list(ra.split_hash) == list(rb.split_hash)
    np.testing.assert_allclose(ra.auc_roc.fillna(-1), rb.auc_roc.fillna(-1))
    again = run_benchmark([str(tmp_path / "tiny.npz")], out=ray_out, backend="ray", **kw)
    assert again.already_done == 4 and again.ran == 0
