"""The main job on built-in data: an ADBench split, then Swift Hydra and peers on the same split."""

from __future__ import annotations

import time

import numpy as np

from swifthydra.exceptions import SwiftHydraError
from swifthydra.presets import QUICK_PARAMS  # noqa: F401  (re-exported: the demo's --quick settings)

#: Models of the demo, by benchmark-registry name, with a label for the table.
DEMO_MODELS = {"swifthydra": "SwiftHydra", "iforest": "IForest (PyOD)", "catboost": "CatBoost"}



def run_demo(
    dataset: str = "wdbc",
    labeled_ratio: float = 0.05,
    seed: int = 1,
    protocol: str = "adbench",
    models: dict[str, str] | None = None,
    params: dict[str, dict] | None = None,
) -> list[dict]:
    """Split a built-in dataset the ADBench way; print each model's AUC-ROC, AUC-PR and timings.

    The models come from the benchmark registry (:mod:`swifthydra.bench.models`), so the demo
    runs them exactly as ``swifthydra bench`` does. ``params`` overrides a model's settings by
    registry name (e.g. :data:`QUICK_PARAMS`). A model whose optional library is missing is shown
    as skipped.
    """
    from rich.console import Console
    from rich.table import Table
    from sklearn.metrics import average_precision_score, roc_auc_score

    from swifthydra.bench.models import MissingDependencyError, get_model
    from swifthydra.datasets import adbench_split, load_builtin

    console = Console()
    X, y = load_builtin(dataset)
    split = adbench_split(X, y, seed=seed, labeled_ratio=labeled_ratio, protocol=protocol)
    console.print(
        f"[bold]{dataset}[/bold]: {X.shape[0]} rows x {X.shape[1]} features, {int(y.sum())} anomalies; "
        f"{protocol} split seed {seed}: train {len(split.y_train)} rows ({split.n_labeled} labelled "
        f"anomalies), test {len(split.y_test)} rows ({int(split.y_test.sum())} anomalies)"
    )
    results = []
    for name, label in (models or DEMO_MODELS).items():
        spec = get_model(name)
        row: dict = {"model": label}
        results.append(row)
        if split.n_labeled < spec.min_labeled:
            row["note"] = f"skipped: needs {spec.min_labeled} labelled anomalies"
            continue
        try:
            model = spec.factory(seed, 1, **{**spec.defaults, **(params or {}).get(name, {})})
        except (MissingDependencyError, ImportError) as exc:
            row["note"] = f"skipped: {exc}"
            continue
        with console.status(f"fitting {label} ..."):
            t0 = time.perf_counter()
            if spec.supervision == "unsupervised":
                model.fit(split.X_train)
            else:
                model.fit(split.X_train, split.y_train)
            t1 = time.perf_counter()
            scores = np.asarray(model.decision_function(split.X_test), dtype=float)
            t2 = time.perf_counter()
        if not np.isfinite(scores).all():
            raise SwiftHydraError(f"{label} produced non-finite scores")
        row.update(
            auc_roc=roc_auc_score(split.y_test, scores),
            auc_pr=average_precision_score(split.y_test, scores),
            fit_s=t1 - t0,
            score_s=t2 - t1,
        )
    table = Table(title=f"{dataset}, labelled ratio {labeled_ratio}, seed {seed}, test part")
    for col in ("model", "AUC-ROC", "AUC-PR", "fit s", "score s", "note"):
        table.add_column(col, justify="left" if col in ("model", "note") else "right")
    for r in results:
        if "auc_roc" in r:
            table.add_row(r["model"], f"{r['auc_roc']:.4f}", f"{r['auc_pr']:.4f}", f"{r['fit_s']:.2f}", f"{r['score_s']:.4f}", "")
        else:
            table.add_row(r["model"], "", "", "", "", r.get("note", ""))
    console.print(table)
    return results
