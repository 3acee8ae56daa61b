"""The density prior on a panel of ADBench datasets (a script, not a test; docs/benchmarks.md §11).

For every dataset, seed and setting it fits each SwiftHydra variant once and scores the test rows
three ways from that one fit: the full score (network + density prior), the network alone (what
``prior_weight=0`` gives: the prior is fitted after the networks and changes nothing they learn)
and the prior alone. CatBoost and IForest (``swifthydra bench``'s registered peers) are fitted on
the same split. Settings: ``standard`` (ADBench split at ``--labeled-ratio``) or ``unseen-type``
(ADBench's synthetic anomalies, labels of one type, AUC on the other three types: the same split
as ``swifthydra bench --scenario unseen-type``).

Writes one JSON line per fit to ``--out`` (appending; cells already there are skipped) and prints
mean AUC-ROC / AUC-PR per model with Wilcoxon p-values of the full score against the others.

    python benchmarks/prior_panel.py --datasets Pima,glass --seeds 1 --labeled-ratio 0.01 --out p.jsonl
    python benchmarks/prior_panel.py --datasets Pima --scenario unseen-type --out u.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path


def _cells(args):
    from swifthydra.bench.synthetic import ANOMALY_TYPES, synthetic_pool, unseen_type_dataset
    from swifthydra.datasets import adbench_split, load_adbench

    for ds in args.datasets.split(","):
        X, y = load_adbench(ds, data_dir=args.data_dir)
        for seed in [int(s) for s in args.seeds.split(",")]:
            if args.scenario == "standard":
                s = adbench_split(X, y, labeled_ratio=args.labeled_ratio, seed=seed)
                yield ds, seed, "standard", s.X_train, s.y_train, s.X_test, s.y_test, None
            else:
                pool = synthetic_pool(X, y, seed)
                for t in ANOMALY_TYPES:
                    s = unseen_type_dataset(pool, t, seed, args.labeled_ratio)
                    unseen = s.test_types != t  # the normal rows and the three other types
                    yield ds, seed, f"unseen-type:{t}", s.X_train, s.y_train, s.X_test, s.y_test, unseen


def _metrics(y, s, mask):
    from sklearn.metrics import average_precision_score, roc_auc_score

    if mask is not None:
        y, s = y[mask], s[mask]
    return round(float(roc_auc_score(y, s)), 5), round(float(average_precision_score(y, s)), 5)


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", required=True, help="comma-separated ADBench names")
    p.add_argument("--seeds", default="1")
    p.add_argument("--labeled-ratio", type=float, default=0.05)
    p.add_argument("--scenario", choices=["standard", "unseen-type"], default="standard")
    p.add_argument("--variant", action="append", default=None, help="JSON of SwiftHydra parameters (repeatable)")
    p.add_argument("--data-dir", default=str(repo.parent / "shared" / "adbench"))
    p.add_argument("--out", required=True, help="JSON-lines file (appended)")
    p.add_argument("--summary-only", action="store_true", help="print the summary of --out and exit")
    p.add_argument("--no-peers", action="store_true", help="fit SwiftHydra only (no CatBoost, no IForest)")
    p.add_argument("--save-scores", default=None,
                   help="folder: per fit, an .npz of the test rows' labels, the network's score, the prior's "
                        "term and the fusion's weight and scale (other fusions can be judged from it, no refit)")
    args = p.parse_args()
    out = Path(args.out)
    if not args.summary_only:
        run(args, out)
    summarise(out)


def run(args, out: Path) -> None:
    import numpy as np
    import torch

    from swifthydra import SwiftHydra
    from swifthydra.bench.models import get_model

    torch.set_num_threads(1)
    done = set()
    if out.exists():
        done = {(r["dataset"], r["seed"], r["setting"], r["ratio"], r["model"])
                for r in map(json.loads, out.read_text().splitlines())}
    variants = [json.loads(v) for v in (args.variant or ["{}"])]
    with out.open("a") as fh:
        def emit(row):
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(row, flush=True)

        for ds, seed, setting, Xtr, ytr, Xte, yte, mask in _cells(args):
            base = {"dataset": ds, "seed": seed, "setting": setting, "ratio": args.labeled_ratio}
            for name in () if args.no_peers else ("catboost", "iforest"):
                if (ds, seed, setting, args.labeled_ratio, name) in done:
                    continue
                spec = get_model(name)
                m = spec.factory(seed, 1, **dict(spec.defaults))
                t = time.perf_counter()
                m.fit(Xtr) if spec.supervision == "unsupervised" else m.fit(Xtr, ytr)
                roc, pr = _metrics(yte, np.asarray(m.decision_function(Xte), float), mask)
                emit({**base, "model": name, "roc": roc, "pr": pr, "fit_s": round(time.perf_counter() - t, 2)})
            for v in variants:
                tag = "swifthydra" + (json.dumps(v, sort_keys=True) if v else "")
                if (ds, seed, setting, args.labeled_ratio, tag) in done:
                    continue
                t = time.perf_counter()
                m = SwiftHydra(random_state=seed, **v).fit(Xtr, ytr)
                fit_s = round(time.perf_counter() - t, 2)
                Xte = np.asarray(Xte, dtype=np.float64)
                full = m.decision_function(Xte)
                net = m._score_scaled(m._scale(Xte))
                if args.save_scores and m.prior_ is not None:
                    folder = Path(args.save_scores)
                    folder.mkdir(parents=True, exist_ok=True)
                    np.savez_compressed(
                        folder / f"{ds}_{seed}_{setting.replace(':', '-')}_{args.labeled_ratio}_{hashlib.sha1(tag.encode()).hexdigest()[:8]}.npz",
                        y=np.asarray(yte), mask=np.ones(len(yte), bool) if mask is None else np.asarray(mask),
                        net=net, term=m.prior_.term(m.scaler_.standardise(Xte)), full=full,
                        weight=m.prior_weight_, scale=m.prior_scale_, prior_auc=m.prior_auc_,
                        y_train=np.asarray(ytr), term_train=(term_train := m.prior_.term(m.scaler_.standardise(Xtr))),
                        net_train=m.decision_scores_ - m._prior_part(term_train),
                    )
                emit({**base, "model": tag, "fit_s": fit_s, "prior_auc": m.prior_auc_, "prior_weight": m.prior_weight_,
                      **dict(zip(("roc", "pr"), _metrics(yte, full, mask), strict=True)),
                      **dict(zip(("net_roc", "net_pr"), _metrics(yte, net, mask), strict=True)),
                      **({} if m.prior_ is None else
                         dict(zip(("prior_roc", "prior_pr"), _metrics(yte, m.prior_.term(m.scaler_.standardise(Xte)), mask), strict=True)))})


def summarise(out: Path) -> None:
    import pandas as pd
    from scipy.stats import wilcoxon

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    if not rows:
        return
    long = []
    for r in rows:
        key = {k: r[k] for k in ("dataset", "seed", "setting", "ratio")}
        long.append({**key, "model": r["model"], "roc": r["roc"], "pr": r["pr"]})
        if "net_roc" in r:
            long.append({**key, "model": r["model"] + " network alone", "roc": r["net_roc"], "pr": r["net_pr"]})
        if "prior_roc" in r:
            long.append({**key, "model": r["model"] + " prior alone", "roc": r["prior_roc"], "pr": r["prior_pr"]})
    df = pd.DataFrame(long)
    df["scenario"] = df["setting"].str.split(":").str[0]
    for (scenario, ratio), part in df.groupby(["scenario", "ratio"]):
        # per dataset: mean over seeds (and training types)
        per = part.groupby(["dataset", "model"])[["roc", "pr"]].mean().unstack("model")
        per = per.dropna(axis=0)
        print(f"\n{scenario}, labelled ratio {ratio}: {len(per)} datasets")
        print("| model | mean AUC-ROC | mean AUC-PR | AUC-ROC W/T/L and p vs `swifthydra` |")
        print("|---|--:|--:|:-:|")
        ref = per["roc"]["swifthydra"] if "swifthydra" in per["roc"] else None
        for model in per["roc"].mean().sort_values(ascending=False).index:
            roc, pr = per["roc"][model], per["pr"][model]
            cmp = ""
            if ref is not None and model != "swifthydra":
                d = (ref - roc).round(4)
                wins, ties, losses = int((d > 0).sum()), int((d == 0).sum()), int((d < 0).sum())
                pval = wilcoxon(ref, roc).pvalue if (d != 0).any() else 1.0
                cmp = f"{wins}/{ties}/{losses}, p = {pval:.3f}"
            print(f"| {model} | {roc.mean():.4f} | {pr.mean():.4f} | {cmp} |")


if __name__ == "__main__":
    main()
