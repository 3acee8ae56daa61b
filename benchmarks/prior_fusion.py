"""Other ways to add the density prior to the network's score, judged on saved fits (a script).

``prior_panel.py --save-scores DIR`` keeps, per fit, the test rows' network score, the prior's
standardised term ``t`` and the fusion's weight ``w`` and scale (``prior_scale_ = w * s``, ``s``
the spread of the network's training scores). SwiftHydra 0.3 scored ``net + w s t`` (``base`` below). This script
rescores every saved fit with other fusions, no refit, so each comparison is paired on the very
same networks:

* ``tail:TAU:WMAX``: ``net + s (w t + max(0, WMAX - w) relu(t - TAU))``: the weight stays ``w``
  up to ``TAU`` (in interquartile ranges of the log distance above its median on the unlabeled
  rows) and rises to ``WMAX`` beyond, so a row far from every normal row counts as far whatever
  the labelled anomalies were like;
* ``tailq:Q:WMAX``: the same with ``TAU`` the quantile ``Q`` of the unlabeled training rows' terms;
  ``tailq:1.0:2`` (beyond every unlabeled training row, the rule's full weight 2) is SwiftHydra's
  fusion since version 0.4, so on fits saved before it ``base`` is the fusion of version 0.3;
* ``fixed:W``: ``net + W s t`` (one weight for every data set).

Prints, per scenario file pattern and fusion, the mean AUC-ROC / AUC-PR over data sets (cells
averaged per data set first), the change against SwiftHydra's fusion, the data sets better /
worse and the two-sided Wilcoxon p.

    python benchmarks/prior_fusion.py DIR [--fusion tail:2:2 --fusion fixed:1 ...]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np


def fused(d, fusion: str) -> np.ndarray:
    from swifthydra.detectors.prior import prior_part

    net, t, w, scale = d["net"], d["term"], float(d["weight"]), float(d["scale"])
    s = scale / w
    kind, *args = fusion.split(":")
    if kind == "base":
        return net + scale * t
    if kind in ("tail", "tailq"):  # tailq: TAU at quantile Q of the unlabeled training rows' terms
        tau = float(args[0]) if kind == "tail" else float(np.quantile(d["term_train"][d["y_train"] == 0], float(args[0])))
        return net + prior_part(t, scale, max(0.0, float(args[1]) - w) * s, tau)
    if kind == "fixed":
        return net + float(args[0]) * s * t
    raise SystemExit(f"unknown fusion {fusion!r}: base, tail:TAU:WMAX, tailq:Q:WMAX or fixed:W")


def main() -> None:
    from scipy.stats import wilcoxon
    from sklearn.metrics import average_precision_score, roc_auc_score

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--fusion", action="append", default=None)
    args = p.parse_args()
    fusions = ["base", *(args.fusion or ["tailq:1.0:2", "tailq:1.0:8", "tailq:0.99:2", "tail:2:2", "tail:5:4", "fixed:1"])]
    cells: dict[str, dict[str, dict[str, list]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for f in sorted(args.folder.glob("*.npz")):
        dataset, _seed, setting, ratio, _tag = f.stem.split("_")
        scenario = f"{'unseen types' if setting.startswith('unseen') else 'standard'}, ratio {ratio}"
        d = np.load(f)
        y, mask = d["y"][d["mask"]], d["mask"]
        for fusion in fusions:
            score = fused(d, fusion)[mask]
            cells[scenario][fusion][dataset].append((roc_auc_score(y, score), average_precision_score(y, score)))
    for scenario, by_fusion in sorted(cells.items()):
        datasets = sorted(by_fusion["base"])
        base = np.array([np.mean(by_fusion["base"][ds], axis=0) for ds in datasets])
        print(f"\n{scenario}: {len(datasets)} datasets")
        print("| fusion | AUC-ROC | AUC-PR | change (points) | better/worse | Wilcoxon p |")
        print("|---|--:|--:|--:|--:|--:|")
        for fusion in fusions:
            v = np.array([np.mean(by_fusion[fusion][ds], axis=0) for ds in datasets])
            diff = v[:, 0] - base[:, 0]
            p_value = wilcoxon(diff).pvalue if np.any(np.abs(diff) > 1e-12) else 1.0
            print(f"| {fusion} | {v[:, 0].mean():.4f} | {v[:, 1].mean():.4f} | "
                  f"{100 * diff.mean():+.2f} / {100 * (v[:, 1] - base[:, 1]).mean():+.2f} | "
                  f"{int((diff > 1e-4).sum())}/{int((diff < -1e-4).sum())} | {p_value:.3f} |")


if __name__ == "__main__":
    main()
