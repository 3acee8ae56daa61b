"""Time one default SwiftHydra fit on 10,000 rows (a script, not a test).

Rows: 10,000 drawn at random (seed 0) from ADBench's shuttle; 5% of its anomalies labelled.
Target (issue 5): under 60 s on 2 CPU threads.

    python benchmarks/fit_time.py [--n-jobs 2] [--data-dir ../shared/adbench] [--dataset shuttle]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(repo.parent / "shared" / "adbench"))
    p.add_argument("--dataset", default="shuttle")
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--n-jobs", type=int, default=2)
    args = p.parse_args()

    from swifthydra import SwiftHydra
    from swifthydra.datasets import load_adbench

    X, y = load_adbench(args.dataset, args.data_dir)
    rng = np.random.RandomState(0)
    idx = rng.choice(len(y), min(args.rows, len(y)), replace=False)
    X, y = X[idx], y[idx]
    weak = np.zeros_like(y)
    pos = np.flatnonzero(y)
    weak[rng.choice(pos, int(np.ceil(0.05 * len(pos))), replace=False)] = 1
    t0 = time.perf_counter()
    model = SwiftHydra(random_state=0, n_jobs=args.n_jobs).fit(X, weak)
    seconds = time.perf_counter() - t0
    print(
        f"{args.dataset}: fit on {X.shape[0]:,} rows x {X.shape[1]} features, {int(weak.sum())} labelled, "
        f"n_jobs={args.n_jobs}: {seconds:.1f} s ({len(model.history_) - 1} episodes after episode 0)"
    )


if __name__ == "__main__":
    main()
