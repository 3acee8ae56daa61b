"""The main job on built-in data: an ADBench split, then Swift Hydra and peers on the same split."""

from __future__ import annotations

import time

import numpy as np

from swifthydra.exceptions import SwiftHydraError
from swifthydra.presets import QUICK_PARAMS  # noqa: F401  (re-exported: the demo's --quick settings)

#: Split seeds of the demo: three splits show the spread one split hides.
DEMO_SEEDS = (1, 2, 3)

#: Models of the demo, by benchmark-registry name, with a label for the table.
DEMO_MODELS = {"swifthydra": "SwiftHydra", "iforest": "IForest", "catboost": "CatBoost"}



def run_demo(
    dataset: str = "wdbc",
    labeled_ratio: float = 0.05,
    seeds: int | tuple[int, ...] | list[int] = DEMO_SEEDS,
    protocol: str = "adbench",
    models: dict[str, str] | None = None,
    params: dict[str, dict] | None = None,
) -> list[dict]:
    """Split a built-in dataset the ADBench way, once per seed; print each model's AUC-ROC and
    AUC-PR (mean and spread over the seeds, and each seed's AUC-ROC) and mean fit time.

    One split stands for nothing: with 5 % of WDBC's anomalies labelled a split holds one known
    anomaly, and which one moves every model by several points; three seeds show the spread. The
    models come from the benchmark registry (:mod:`swifthydra.bench.models`), so the demo runs
    them exactly as ``swifthydra bench`` does. ``params`` overrides a model's settings by registry
    name (e.g. :data:`QUICK_PARAMS`). A model whose optional library is missing is shown as
    skipped. Returns one dict per model: ``model``, per-seed ``auc_roc``/``auc_pr``/``fit_s``/
    ``score_s`` lists, or ``note`` when skipped.
    """
    from rich.console import Console
    from rich.table import Table
    from sklearn.metrics import average_precision_score, roc_auc_score

    from swifthydra.bench.models import MissingDependencyError, get_model
    from swifthydra.datasets import adbench_split, load_builtin

    seeds = [int(seeds)] if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    if not seeds:
        raise SwiftHydraError("the demo needs at least one seed.")
    console = Console()
    X, y = load_builtin(dataset)
    splits = [adbench_split(X, y, seed=s, labeled_ratio=labeled_ratio, protocol=protocol) for s in seeds]
    console.print(
        f"[bold]{dataset}[/bold]: {X.shape[0]} rows x {X.shape[1]} features, {int(y.sum())} anomalies; "
        f"{protocol} splits, seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}: train "
        f"{len(splits[0].y_train)} rows ({', '.join(str(sp.n_labeled) for sp in splits)} labelled anomalies), "
        f"test {len(splits[0].y_test)} rows ({int(splits[0].y_test.sum())} anomalies)"
    )
    results = []
    for name, label in (models or DEMO_MODELS).items():
        spec = get_model(name)
        row: dict = {"model": label, "auc_roc": [], "auc_pr": [], "fit_s": [], "score_s": []}
        results.append(row)
        for seed, split in zip(seeds, splits, strict=True):
            if split.n_labeled < spec.min_labeled:
                row["note"] = f"skipped: needs {spec.min_labeled} labelled anomalies"
                break
            try:
                model = spec.factory(seed, 1, **{**spec.defaults, **(params or {}).get(name, {})})
            except (MissingDependencyError, ImportError) as exc:
                row["note"] = f"skipped: {exc}"
                break
            with console.status(f"fitting {label} (seed {seed}) ..."):
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
            row["auc_roc"].append(float(roc_auc_score(split.y_test, scores)))
            row["auc_pr"].append(float(average_precision_score(split.y_test, scores)))
            row["fit_s"].append(t1 - t0)
            row["score_s"].append(t2 - t1)
    what = f"mean ± std over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f"seed {seeds[0]}"
    notes = any("note" in r for r in results)
    table = Table(title=f"{dataset}, labelled ratio {labeled_ratio}, test part, {what}")
    columns = ["model", "AUC-ROC", "AUC-PR", "AUC-ROC per seed", "fit s"] + (["note"] if notes else [])
    for col in columns:
        table.add_column(col, justify="left" if col in ("model", "note", "AUC-ROC per seed") else "right",
                         no_wrap=col != "note")

    def spread(values: list[float]) -> str:
        return f"{np.mean(values):.3f}" + (f" ± {np.std(values):.3f}" if len(values) > 1 else "")

    for r in results:
        if "note" in r:
            table.add_row(r["model"], "", "", "", "", r["note"])
        else:
            table.add_row(r["model"], spread(r["auc_roc"]), spread(r["auc_pr"]),
                          " ".join(f"{v:.3f}" for v in r["auc_roc"]), f"{np.mean(r['fit_s']):.1f}",
                          *([""] if notes else []))
    console.print(table)
    return results
