"""ADBench benchmark of swifthydra against its peers: runner, results store, report.

Heavy libraries (PyOD, CatBoost, XGBoost, matplotlib, Ray) are imported only when a model runs or
a report is drawn, so importing this package is cheap.

Main entry points
-----------------
* :func:`run_benchmark`: run or resume a grid of cells into an SQLite results file;
* :func:`register_model`: add a model to the registry (one decorated factory function);
* :func:`make_report`: Markdown + HTML report with tables and plots;
* :func:`export_results`: CSV, Markdown or Parquet export of a results file;
* :func:`realistic_synthetic`, :func:`synthetic_pool`: ADBench's realistic synthetic anomalies;
* ``--generators`` (:mod:`swifthydra.bench.augment`): detector x generator cells on identical
  splits; the report then shows each generator's gain over ``none`` per detector
  (:mod:`swifthydra.bench.gains`).

Command line (``swifthydra.bench.cli.register`` adds these to the ``swifthydra`` app;
``python -m swifthydra.bench`` runs them stand-alone)::

    swifthydra bench --datasets cardio,thyroid|all-local|all --labeled-ratio 0 0.01 0.05 0.1 \
        --seeds 1 2 3 --models swifthydra,peers --protocol adbench --data-dir DIR \
        --out RESULTS.sqlite [--jobs N] [--timeout S] [--backend ray --address ADDR] \
        [--scenario unseen-type] [--param MODEL.KEY=VALUE] [--retry-errors] [--dry-run] \
        [--generators none,mixup,nngmix,cvae,rl] [--param gen.NAME.KEY=VALUE]
    swifthydra bench export RESULTS.sqlite --format csv|markdown|parquet [--out FILE]
    swifthydra bench models
    swifthydra report RESULTS.sqlite --out report/
"""

from swifthydra.bench.models import (
    MissingDependencyError,
    ModelSpec,
    get_model,
    list_models,
    register_model,
    resolve_models,
    unregister_model,
)
from swifthydra.bench.runner import BenchSummary, Cell, plan_cells, run_benchmark
from swifthydra.bench.store import ResultStore
from swifthydra.bench.synthetic import (
    ANOMALY_TYPES,
    realistic_synthetic,
    synthetic_pool,
    unseen_type_dataset,
)


def make_report(*args, **kwargs):
    """Write the benchmark report; see :func:`swifthydra.bench.report.make_report`."""
    from swifthydra.bench.report import make_report as _make_report

    return _make_report(*args, **kwargs)


def export_results(*args, **kwargs):
    """Export a results file; see :func:`swifthydra.bench.report.export_results`."""
    from swifthydra.bench.report import export_results as _export

    return _export(*args, **kwargs)


__all__ = [
    "ANOMALY_TYPES",
    "BenchSummary",
    "Cell",
    "MissingDependencyError",
    "ModelSpec",
    "ResultStore",
    "export_results",
    "get_model",
    "list_models",
    "make_report",
    "plan_cells",
    "realistic_synthetic",
    "register_model",
    "resolve_models",
    "run_benchmark",
    "synthetic_pool",
    "unregister_model",
    "unseen_type_dataset",
]
