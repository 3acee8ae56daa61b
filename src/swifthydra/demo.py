"""The main job on built-in data: ADBench split, then detectors side by side on the same split."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from swifthydra.exceptions import SwiftHydraError


def _iforest(seed: int):
    from pyod.models.iforest import IForest

    return IForest(n_estimators=100, random_state=seed)


def _ecod(seed: int):
    from pyod.models.ecod import ECOD

    return ECOD()


def _catboost(seed: int):
    from catboost import CatBoostClassifier

    return CatBoostClassifier(
        random_seed=seed, verbose=False, thread_count=2, auto_class_weights="Balanced", allow_writing_files=False
    )


# name -> (factory, uses labels)
DEMO_MODELS: dict[str, tuple[Callable[[int], object], bool]] = {
    "IForest (PyOD)": (_iforest, False),
    "ECOD (PyOD)": (_ecod, False),
    "CatBoost": (_catboost, True),
}


def _scores(model, X: np.ndarray) -> np.ndarray:
    if hasattr(model, "decision_scores_"):  # a PyOD detector: higher = more anomalous
        return np.asarray(model.decision_function(X), dtype=float)
    return np.asarray(model.predict_proba(X)[:, 1], dtype=float)


def run_demo(dataset: str = "wdbc", labeled_ratio: float = 0.05, seed: int = 1, protocol: str = "adbench") -> list[dict]:
    """Split a built-in dataset the ADBench way and print each detector's AUC-ROC, AUC-PR and timings."""
    from rich.console import Console
    from rich.table import Table
    from sklearn.metrics import average_precision_score, roc_auc_score

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
    for name, (factory, supervised) in DEMO_MODELS.items():
        row = {"model": name}
        if supervised and split.n_labeled == 0:
            row["note"] = "skipped: needs labelled anomalies"
            results.append(row)
            continue
        try:
            model = factory(seed)
        except ImportError as exc:
            row["note"] = f"skipped: {exc.name} not installed (pip install 'swifthydra[bench]')"
            results.append(row)
            continue
        t0 = time.perf_counter()
        if supervised:
            model.fit(split.X_train, split.y_train)
        else:
            model.fit(split.X_train)
        t1 = time.perf_counter()
        s = _scores(model, split.X_test)
        t2 = time.perf_counter()
        if not np.isfinite(s).all():
            raise SwiftHydraError(f"{name} produced non-finite scores")
        row.update(
            auc_roc=roc_auc_score(split.y_test, s),
            auc_pr=average_precision_score(split.y_test, s),
            fit_s=t1 - t0,
            score_s=t2 - t1,
        )
        results.append(row)
    table = Table(title=f"{dataset}, labelled ratio {labeled_ratio}, seed {seed}")
    for col in ("model", "AUC-ROC", "AUC-PR", "fit s", "score s", "note"):
        table.add_column(col, justify="left" if col in ("model", "note") else "right")
    for r in results:
        if "auc_roc" in r:
            table.add_row(r["model"], f"{r['auc_roc']:.4f}", f"{r['auc_pr']:.4f}", f"{r['fit_s']:.3f}", f"{r['score_s']:.4f}", "")
        else:
            table.add_row(r["model"], "", "", "", "", r.get("note", ""))
    console.print(table)
    return results
