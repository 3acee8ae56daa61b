"""Fit time and peak memory of a default SwiftHydra fit against the number of rows (a script).

Each size runs in a fresh process, so its peak resident memory (``ru_maxrss``) is its own. Rows: a
synthetic table of ``--cols`` Gaussian columns (seed 0) in which 1 % of the rows are anomalies
(shifted by 3 standard deviations in a quarter of the columns); ``--known`` of them (default 300)
are labelled, the rest are unlabeled, as a user with a few hundred confirmed cases would have.

    python benchmarks/fit_curve.py --rows 1000 10000 100000 1000000 [--n-jobs 2] [--plot curve.png]

Prints a Markdown table (rows, seconds, peak RSS MiB, episodes run, test AUC-ROC on 20,000 fresh
rows from the same distribution) for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def _one(rows: int, cols: int, known: int, n_jobs: int, params: str) -> dict:
    """Fit in this process and return the measurements (run by the parent in a child process)."""
    import resource
    import time

    import numpy as np
    from sklearn.metrics import roc_auc_score

    from swifthydra import SwiftHydra

    def table(n: int, seed: int, shifted=None):
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(n, cols)).astype(np.float32)
        y = np.zeros(n, dtype=np.int64)
        anomalies = rng.choice(n, max(1, n // 100), replace=False)
        y[anomalies] = 1
        if shifted is None:
            shifted = rng.choice(cols, max(1, cols // 4), replace=False)
        X[np.ix_(anomalies, shifted)] += 3.0 * rng.choice([-1.0, 1.0], size=(len(anomalies), len(shifted)))
        return X, y, shifted

    X, y, shifted = table(rows, 0)
    weak = np.zeros_like(y)
    pos = np.flatnonzero(y)
    weak[np.random.default_rng(1).choice(pos, min(known, len(pos)), replace=False)] = 1
    t0 = time.perf_counter()
    model = SwiftHydra(random_state=0, n_jobs=n_jobs, **json.loads(params)).fit(X, weak)
    seconds = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    X_test, y_test, _ = table(20_000, 2, shifted)  # the same kind of anomaly as in training
    return {
        "rows": rows,
        "seconds": seconds,
        "peak_rss_mib": peak_mib,
        "episodes": len(model.history_) - 1,
        "known": int(weak.sum()),
        "auc_roc": float(roc_auc_score(y_test, model.decision_function(X_test))),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    p.add_argument("--cols", type=int, default=32)
    p.add_argument("--known", type=int, default=300)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--params", default="{}", help="JSON of SwiftHydra parameters (default: the defaults)")
    p.add_argument("--plot", default=None, help="write the curve to this PNG")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(_one(args.child, args.cols, args.known, args.n_jobs, args.params)))
        return
    results = []
    print(f"SwiftHydra({args.params}), n_jobs={args.n_jobs}, {args.cols} columns, {args.known} known anomalies\n")
    print("| rows | fit seconds | peak RSS MiB | episodes | known | test AUC-ROC |")
    print("|--:|--:|--:|--:|--:|--:|")
    for rows in args.rows:
        cmd = [sys.executable, __file__, "--child", str(rows), "--cols", str(args.cols), "--known", str(args.known),
               "--n-jobs", str(args.n_jobs), "--params", args.params]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"| {rows:,} | failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode} |")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"| {rows:,} | {r['seconds']:.1f} | {r['peak_rss_mib']:.0f} | {r['episodes']} | {r['known']} "
              f"| {r['auc_roc']:.3f} |", flush=True)
    if args.plot and results:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        rows = [r["rows"] for r in results]
        ax.loglog(rows, [r["seconds"] for r in results], "o-", label="fit seconds")
        ax.set_xlabel("training rows")
        ax.set_ylabel("seconds")
        ax2 = ax.twinx()
        ax2.semilogx(rows, [r["peak_rss_mib"] for r in results], "s--", color="tab:orange", label="peak RSS MiB")
        ax2.set_ylabel("peak RSS MiB")
        fig.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    main()
