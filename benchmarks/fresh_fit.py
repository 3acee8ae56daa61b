"""A default fit as the command line runs it: in a fresh process, import included (a script, not a test).

Each run starts a new Python process that imports swifthydra and fits ``SwiftHydra()`` on a
synthetic table (``--rows`` x 32 Gaussian columns, 1 % shifted anomalies, 3 of them labelled),
so one-off costs of a process (imports, first calls) count as a user of ``swifthydra fit`` pays
them. ``--src`` compares source trees (e.g. a ``git worktree`` of an older commit against this
one), runs interleaved so a busy machine slows each alike; the scores' checksum shows whether
the trees fit the same model.

    python benchmarks/fresh_fit.py --rows 1000 --repeat 3 [--src /tmp/old/src src] [--n-jobs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from swifthydra import SwiftHydra
t1 = time.perf_counter()
rows, n_jobs = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
X = rng.normal(size=(rows, 32)).astype(np.float32)
y = np.zeros(rows, dtype=np.int64)
a = rng.choice(rows, max(3, rows // 100), replace=False)
y[a] = 1
X[a, :8] += 3.0
weak = np.zeros_like(y)
weak[a[:3]] = 1
model = SwiftHydra(random_state=0, n_jobs=n_jobs).fit(X, weak)
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "fit": t2 - t1, "dynamo": "torch._dynamo" in sys.modules,
                  "checksum": float(np.asarray(model.decision_scores_, dtype=np.float64).sum())}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--src", nargs="+", default=[str(Path(__file__).resolve().parents[1] / "src")],
                   help="source trees (PYTHONPATH) to compare, run interleaved")
    args = p.parse_args()
    runs: dict[str, list[dict]] = {src: [] for src in args.src}
    for _ in range(args.repeat):
        for src in args.src:
            env = {**os.environ, "PYTHONPATH": src}
            out = subprocess.run([sys.executable, "-c", CHILD, str(args.rows), str(args.n_jobs)], env=env,
                                 capture_output=True, text=True, check=True)
            runs[src].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"SwiftHydra() on {args.rows:,} x 32 rows, n_jobs={args.n_jobs}, fresh process each, {args.repeat} runs\n")
    print("| source | import s (mean) | fit s (mean) | fit s (runs) | torch._dynamo imported | scores checksum |")
    print("|---|--:|--:|---|---|--:|")
    for src, rs in runs.items():
        fits = [r["fit"] for r in rs]
        print(f"| {src} | {statistics.mean(r['import'] for r in rs):.2f} | {statistics.mean(fits):.2f} | "
              f"{', '.join(f'{f:.2f}' for f in fits)} | {rs[0]['dynamo']} | {rs[0]['checksum']:.10g} |")


if __name__ == "__main__":
    main()
