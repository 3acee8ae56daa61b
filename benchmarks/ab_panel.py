"""A/B of SwiftHydra settings on a panel of ADBench datasets (a script, not a test).

Each variant (a JSON object of ``SwiftHydra`` parameters) is fitted on the ADBench split of each
dataset and seed (labelled ratio 0.05) with ``random_state=seed`` and scored on the test part:
the same numbers as ``swifthydra bench`` gives for those cells. Prints one line per fit (AUC-ROC,
AUC-PR, best episode, validation AUC per episode, fit seconds), then the mean AUC-ROC per dataset
and variant. docs/design.md and docs/benchmarks.md quote these runs for the choices of
``feature_transform`` and ``min_validation_anomalies``; to compare code versions, run it at each
commit.

    python benchmarks/ab_panel.py --datasets annthyroid,glass,letter \\
        --variant '{}' --variant '{"feature_transform": "standard"}'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", required=True, help="comma-separated ADBench names")
    p.add_argument("--variant", action="append", default=None, help="JSON of SwiftHydra parameters (repeatable)")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--labeled-ratio", type=float, default=0.05)
    p.add_argument("--data-dir", default=str(repo.parent / "shared" / "adbench"))
    args = p.parse_args()

    import torch
    from sklearn.metrics import average_precision_score, roc_auc_score

    from swifthydra import SwiftHydra
    from swifthydra.datasets import adbench_split, load_adbench

    torch.set_num_threads(1)
    variants = [json.loads(v) for v in (args.variant or ["{}"])]
    seeds = [int(s) for s in args.seeds.split(",")]
    table: dict[tuple[str, str], list[float]] = {}
    for ds in args.datasets.split(","):
        X, y = load_adbench(ds, data_dir=args.data_dir)
        for seed in seeds:
            split = adbench_split(X, y, labeled_ratio=args.labeled_ratio, seed=seed)
            for variant in variants:
                t = time.perf_counter()
                model = SwiftHydra(random_state=seed, **variant).fit(split.X_train, split.y_train)
                s = model.decision_function(split.X_test)
                auc = roc_auc_score(split.y_test, s)
                val = [round(h["val_auc"], 3) for h in model.history_]
                print(f"{ds} seed {seed} {json.dumps(variant)}: AUC-ROC {auc:.4f} "
                      f"AUC-PR {average_precision_score(split.y_test, s):.4f} best episode "
                      f"{getattr(model, 'best_episode_', None)} val {val} fit {time.perf_counter() - t:.1f} s",
                      flush=True)
                table.setdefault((ds, json.dumps(variant)), []).append(auc)
    names = [json.dumps(v) for v in variants]
    print("\n| dataset | " + " | ".join(f"`{n}`" for n in names) + " |")
    print("|---|" + "--:|" * len(names))
    for ds in args.datasets.split(","):
        print(f"| {ds} | " + " | ".join(f"{np.mean(table[(ds, n)]):.3f}" for n in names) + " |")


if __name__ == "__main__":
    main()
