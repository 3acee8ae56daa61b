"""Where a default SwiftHydra fit spends its time, stage by stage (a script, not a test).

Each stage is a method or function of the library wrapped with a wall-clock timer; time is
*exclusive* (a stage nested in another, e.g. reward terms computed inside the PPO agent's
environment steps, is counted in its own row and not in its parent's), so the rows add up to the
timed total and the rest is "other" (data checks, the power transform, splits, Python glue).

Rows: drawn at random (seed 0) from an ADBench dataset (default ``cover``: 286,048 rows x 10
features, 0.96 % anomalies) for each size, or a synthetic table (``--dataset synthetic``: 32
Gaussian columns, 1 % shifted anomalies); 5 % of the anomalies labelled (at least one).

    python benchmarks/fit_profile.py --rows 1000 10000 100000 [--n-jobs 2] [--markdown]

Peak memory is the process's maximum resident set size (``ru_maxrss``) after each fit, so read
it as "at most" for the later sizes of one run; run one size per process for exact peaks.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

# (row label, module, attribute path): the stages of a fit, as the code names them
STAGES = [
    ("pseudo-labels (IForest+ECOD, no labels only)", "swifthydra.pseudo", "pseudo_labels"),
    ("detector: training epochs", "swifthydra.detectors.mamba", "MambaDetector.fit"),
    ("detector: fine-tuning", "swifthydra.detectors.mamba", "MambaDetector.partial_fit"),
    ("detector: scoring (reward W, validation)", "swifthydra.detectors.base", "NeuralDetector.decision_function"),
    ("C-VAE: training epochs", "swifthydra.generative.cvae", "CVAE.fit"),
    ("C-VAE: fine-tuning", "swifthydra.generative.cvae", "CVAE.partial_fit"),
    ("PPO: agent updates", "swifthydra.rl.ppo", "train_agent"),
    ("PPO: environment steps (decode)", "swifthydra.rl.env", "LatentEnv.step"),
    ("reward: terms (k-NN entropy, guard)", "swifthydra.rl.reward", "HydraReward.terms"),
    ("reward: update (k-NN structures)", "swifthydra.rl.reward", "HydraReward.update"),
    ("selection (select_top)", "swifthydra.rl.reward", "select_top"),
    ("MoME: expert-count search (Gaussian mixtures)", "swifthydra.detectors.mome", "choose_num_experts"),
    ("MoME: distillation epochs", "swifthydra.detectors.mome", "MoME.fit"),
    ("density prior: fit (reference rows, calibration)", "swifthydra.detectors.prior", "DensityPrior.fit_unlabeled"),
    ("density prior: k-NN term", "swifthydra.detectors.prior", "DensityPrior.term"),
    ("scoring the training rows", "swifthydra.hydra", "SwiftHydra._score_scaled"),
]


class Profiler:
    """Exclusive wall-clock time per wrapped stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[float]] = []  # per active call: [start, time spent in children]

    def wrap(self, label: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            frame = [time.perf_counter(), 0.0]
            self._stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                self._stack.pop()
                total = time.perf_counter() - frame[0]
                self.seconds[label] += total - frame[1]
                self.calls[label] += 1
                if self._stack:
                    self._stack[-1][1] += total

        return timed

    def install(self) -> list:
        undo = []
        for label, module_name, path in STAGES:
            owner = importlib.import_module(module_name)
            *parents, name = path.split(".")
            for part in parents:
                owner = getattr(owner, part)
            original = owner.__dict__[name] if name in getattr(owner, "__dict__", {}) else getattr(owner, name)
            if isinstance(original, classmethod):
                setattr(owner, name, classmethod(self.wrap(label, original.__func__)))
            else:
                setattr(owner, name, self.wrap(label, original))
            undo.append((owner, name, original))
            # functions re-exported by a package (``from swifthydra.rl import train_agent``)
            if not parents:
                package = sys.modules.get(module_name.rsplit(".", 1)[0])
                if package is not None and getattr(package, name, None) is original:
                    setattr(package, name, owner.__dict__[name])
                    undo.append((package, name, original))
        return undo


def _data(dataset: str, rows: int, data_dir: str, seed: int = 0):
    rng = np.random.RandomState(seed)
    if dataset == "synthetic":
        X = rng.normal(size=(rows, 32)).astype(np.float64)
        y = np.zeros(rows, dtype=np.int64)
        anomalies = rng.choice(rows, max(2, rows // 100), replace=False)
        y[anomalies] = 1
        X[anomalies] += rng.normal(3.0, 1.0, size=(len(anomalies), 32))
    else:
        from swifthydra.datasets import load_adbench

        X, y = load_adbench(dataset, data_dir)
        if rows < len(y):
            idx = rng.choice(len(y), rows, replace=False)
            X, y = X[idx], y[idx]
    weak = np.zeros_like(y)
    pos = np.flatnonzero(y)
    weak[rng.choice(pos, max(1, int(np.ceil(0.05 * len(pos)))), replace=False)] = 1
    return X, weak


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[1_000, 10_000])
    p.add_argument("--dataset", default="cover", help="ADBench name, or 'synthetic'")
    p.add_argument("--data-dir", default=str(repo.parent / "shared" / "adbench"))
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--params", default="{}", help="JSON of SwiftHydra parameters (default: the defaults)")
    args = p.parse_args()

    import json

    from swifthydra import SwiftHydra

    columns = {}
    totals = {}
    for rows in args.rows:
        X, weak = _data(args.dataset, rows, args.data_dir)
        prof = Profiler()
        undo = prof.install()
        try:
            t0 = time.perf_counter()
            model = SwiftHydra(random_state=0, n_jobs=args.n_jobs, **json.loads(args.params)).fit(X, weak)
            total = time.perf_counter() - t0
        finally:
            for owner, name, original in reversed(undo):
                setattr(owner, name, original)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        label = f"{X.shape[0]:,} x {X.shape[1]}"
        col = dict(prof.seconds)
        col["other"] = total - sum(col.values())
        columns[label] = col
        totals[label] = (total, peak_mb, len(model.history_) - 1, int(weak.sum()))

    labels = [s[0] for s in STAGES] + ["other"]
    print(f"dataset {args.dataset}, n_jobs={args.n_jobs}, params {args.params}; seconds (share of the fit)\n")
    print("| stage | " + " | ".join(columns) + " |")
    print("|---|" + "--:|" * len(columns))
    for stage in labels:
        cells = []
        for label, col in columns.items():
            s = col.get(stage, 0.0)
            cells.append(f"{s:.2f} ({100 * s / totals[label][0]:.0f} %)" if s >= 0.005 else "-")
        if any(c != "-" for c in cells):
            print(f"| {stage} | " + " | ".join(cells) + " |")
    print("| **total** | " + " | ".join(f"**{t[0]:.1f}**" for t in totals.values()) + " |")
    print("| episodes after episode 0 | " + " | ".join(str(t[2]) for t in totals.values()) + " |")
    print("| labelled anomalies | " + " | ".join(str(t[3]) for t in totals.values()) + " |")
    print("| peak RSS MB (max so far) | " + " | ".join(f"{t[1]:.0f}" for t in totals.values()) + " |")


if __name__ == "__main__":
    main()
