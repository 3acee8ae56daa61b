"""Accuracy of MoME against the large MambaDetector on ADBench splits (a script, not a test).

For each dataset and seed, the ADBench protocol split (labelled ratio 0.05 by default) is built
with :func:`swifthydra.datasets.adbench_split`; every model is fitted on the training part only
(weak labels; early stopping uses a split of the training part) and scored on the test part.
Prints a Markdown table of AUC-ROC (mean over seeds) per dataset and model, the mean over
datasets, and the mean fit and scoring times.

Models:

- ``mamba``: :class:`swifthydra.detectors.MambaDetector` with default parameters;
- ``mome``: :class:`swifthydra.detectors.MoME` with default parameters, trained on the real
  training data alone;
- ``mome-distill``: the same MoME also distilled from the ``mamba`` model's training-set logits
  (needs ``mamba`` in ``--models``).

Example::

    python benchmarks/accuracy.py                                   # five datasets, seeds 1-3
    python benchmarks/accuracy.py --datasets thyroid --seeds 1      # quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from swifthydra.datasets import adbench_split, load_adbench
from swifthydra.detectors import MambaDetector, MoME

DEFAULT_DATASETS = ["annthyroid", "Cardiotocography", "pendigits", "satimage-2", "thyroid"]
MODELS = ("mamba", "mome", "mome-distill")


def run_one(
    name: str, X, y, seed: int, labeled_ratio: float, models: list[str], threads: int
) -> list[dict]:
    split = adbench_split(X, y, seed=seed, labeled_ratio=labeled_ratio, protocol="adbench")
    rows = []
    teacher = None
    for model in models:
        torch.set_num_threads(threads)
        if model == "mamba":
            est = MambaDetector(random_state=seed)
            t0 = time.perf_counter()
            est.fit(split.X_train, split.y_train)
        else:
            est = MoME(random_state=seed)
            t0 = time.perf_counter()
            if model == "mome-distill":
                if teacher is None:
                    raise SystemExit("mome-distill needs 'mamba' earlier in --models")
                est.fit(split.X_train, split.y_train, teacher_scores=teacher)
            else:
                est.fit(split.X_train, split.y_train)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = est.decision_function(split.X_test)
        score_s = time.perf_counter() - t0
        if model == "mamba":
            teacher = est.decision_scores_
        rows.append(
            {
                "dataset": name,
                "seed": seed,
                "model": model,
                "auc_roc": float(roc_auc_score(split.y_test, scores)),
                "auc_pr": float(average_precision_score(split.y_test, scores)),
                "fit_s": fit_s,
                "score_s": score_s,
                "epochs": int(est.n_epochs_),
                "n_labeled": split.n_labeled,
                "n_experts": int(getattr(est, "n_experts_", 0)),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict], models: list[str], datasets: list[str]) -> str:
    def mean(key, **match):
        vals = [r[key] for r in rows if all(r[k] == v for k, v in match.items())]
        return float(np.mean(vals)) if vals else float("nan")

    head = "| dataset | " + " | ".join(f"{m} AUC-ROC" for m in models) + " |"
    lines = [head, "|---|" + "--:|" * len(models)]
    for d in datasets:
        lines.append(
            f"| {d} | "
            + " | ".join(f"{mean('auc_roc', dataset=d, model=m):.4f}" for m in models)
            + " |"
        )
    lines.append(
        "| **mean** | " + " | ".join(f"**{mean('auc_roc', model=m):.4f}**" for m in models) + " |"
    )
    lines.append(
        "| mean AUC-PR | " + " | ".join(f"{mean('auc_pr', model=m):.4f}" for m in models) + " |"
    )
    lines.append(
        "| mean fit (s) | " + " | ".join(f"{mean('fit_s', model=m):.1f}" for m in models) + " |"
    )
    lines.append(
        "| mean scoring (s) | "
        + " | ".join(f"{mean('score_s', model=m):.3f}" for m in models)
        + " |"
    )
    lines.append(
        "| mean epochs | " + " | ".join(f"{mean('epochs', model=m):.1f}" for m in models) + " |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    repo = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=str(repo.parent / "shared" / "adbench"))
    p.add_argument("--datasets", nargs="+", default=DEFAULT_DATASETS)
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--labeled-ratio", type=float, default=0.05)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--json", help="also write every per-run row to this JSON file")
    args = p.parse_args(argv)

    rows: list[dict] = []
    for name in args.datasets:
        X, y = load_adbench(name, data_dir=args.data_dir, download=False)
        for seed in args.seeds:
            rows.extend(run_one(name, X, y, seed, args.labeled_ratio, args.models, args.threads))
    print(
        f"\nADBench protocol, labelled ratio {args.labeled_ratio}, seeds {args.seeds}, "
        f"{args.threads} torch threads\n"
    )
    print(table(rows, args.models, args.datasets))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
