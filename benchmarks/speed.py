"""Scoring speed, training time and scoring memory of the neural detectors (a script, not a test).

For each feature count ``d`` the script fits every detector on 10,000 random rows (one epoch is
enough: speed does not depend on the weights) and times ``decision_function`` on ``--rows`` rows
(default 200,000), best of ``--repeat`` runs after a warm-up. Detectors: ``MambaDetector``
(default size), ``MoME`` with K = 4 and K = 16 experts, and PyOD's ``IForest`` and ``ECOD`` for
reference. It also times one training epoch on 10,000 rows (d = 32) and measures the peak
resident memory of a fresh process that scores 1,000,000 rows (d = 32).

Targets: MoME scores >= 3x the rows/s of MambaDetector; K = 16 within 20% of K = 4;
>= 1,000,000 rows/s at d = 32; peak memory while scoring 1M rows < 1 GiB.

Example::

    python benchmarks/speed.py             # full run (several minutes on 2 cores)
    python benchmarks/speed.py --quick     # 20k rows, d = 32 only, 100k rows for memory
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

N_TRAIN = 10_000


def make_data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (rng.rand(n) < 0.02).astype(np.int64)
    X[y == 1] += 2.0
    return X, y


def build(name: str, threads: int):
    from swifthydra.detectors import MambaDetector, MoME

    common = dict(max_epochs=1, validation_fraction=0.0, random_state=0, device="cpu")
    if name == "MambaDetector":
        return MambaDetector(**common)
    if name == "MoME K=4":
        return MoME(n_experts=4, **common)
    if name == "MoME K=16":
        return MoME(n_experts=16, **common)
    if name == "IForest":
        from pyod.models.iforest import IForest

        return IForest(n_estimators=100, n_jobs=threads, random_state=0)
    if name == "ECOD":
        from pyod.models.ecod import ECOD

        return ECOD(n_jobs=threads)
    raise ValueError(name)


def fit(est, X, y):
    if hasattr(est, "partial_fit"):  # ours: weak labels
        return est.fit(X, y)
    return est.fit(X)


def time_scoring(est, X: np.ndarray, repeat: int) -> float:
    est.decision_function(X[:2000])  # warm-up
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        est.decision_function(X)
        best = min(best, time.perf_counter() - t0)
    return X.shape[0] / best


def time_epoch(name: str, threads: int, d: int) -> float:
    X, y = make_data(N_TRAIN, d, seed=1)
    est = fit(build(name, threads), X, y)
    t0 = time.perf_counter()
    est.partial_fit(X, y, epochs=1)
    return time.perf_counter() - t0


def peak_rss_mib() -> float:
    """Peak resident memory of this process: VmHWM on Linux (``ru_maxrss`` survives exec, so a
    child started from a large parent would report the parent's peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(name: str, d: int, rows: int, threads: int) -> None:
    """Runs in a fresh process: fit on 10k rows, score ``rows`` rows, report peak RSS."""
    import torch

    torch.set_num_threads(threads)
    X, y = make_data(N_TRAIN, d, seed=1)
    est = fit(build(name, threads), X, y)
    X_big = np.random.default_rng(2).standard_normal((rows, d), dtype=np.float32)
    before = peak_rss_mib()
    t0 = time.perf_counter()
    scores = est.decision_function(X_big)
    elapsed = time.perf_counter() - t0
    peak = peak_rss_mib()
    print(
        json.dumps(
            {
                "peak_mib": peak,
                "peak_before_mib": before,
                "data_mib": X_big.nbytes / 2**20,
                "seconds": elapsed,
                "n": int(scores.shape[0]),
            }
        )
    )


def measure_memory(name: str, d: int, rows: int, threads: int) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--memory-child",
            name,
            str(d),
            str(rows),
            "--threads",
            str(threads),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=200_000, help="rows scored per timing")
    p.add_argument("--dims", type=int, nargs="+", default=[8, 32, 128])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (best kept)")
    p.add_argument("--memory-rows", type=int, default=1_000_000)
    p.add_argument(
        "--models", nargs="+", default=["MambaDetector", "MoME K=4", "MoME K=16", "IForest", "ECOD"]
    )
    p.add_argument("--quick", action="store_true", help="20k rows, d=32, 100k rows for memory")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument(
        "--memory-child", nargs=3, metavar=("MODEL", "D", "ROWS"), help=argparse.SUPPRESS
    )
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.memory_child:
        name, d, rows = args.memory_child
        memory_child(name, int(d), int(rows), args.threads)
        return
    if args.quick:
        args.rows, args.dims, args.memory_rows, args.repeat = 20_000, [32], 100_000, 2

    load_start = os.getloadavg()
    ours = [m for m in args.models if m.startswith(("Mamba", "MoME"))]
    speed: dict[tuple[str, int], float] = {}
    for d in args.dims:
        X_train, y_train = make_data(N_TRAIN, d, seed=1)
        X, _ = make_data(args.rows, d, seed=2)
        for name in args.models:
            est = fit(build(name, args.threads), X_train, y_train)
            speed[name, d] = time_scoring(est, X, args.repeat)
            print(f"# d={d} {name}: {speed[name, d]:,.0f} rows/s", file=sys.stderr, flush=True)
    epoch = {name: time_epoch(name, args.threads, 32) for name in ours}
    memory = {}
    if not args.no_memory:
        for name in ours:
            memory[name] = measure_memory(name, 32, args.memory_rows, args.threads)
            print(f"# memory {name}: {memory[name]}", file=sys.stderr, flush=True)
    load_end = os.getloadavg()

    print(
        f"\n{args.threads} torch threads, {args.rows:,} rows scored per timing (best of {args.repeat}), "
        f"models fitted on {N_TRAIN:,} rows; load average {load_start[0]:.1f} at start, "
        f"{load_end[0]:.1f} at end, {os.cpu_count()} CPUs\n"
    )
    head = "| model | " + " | ".join(f"rows/s d={d}" for d in args.dims)
    head += f" | epoch on {N_TRAIN // 1000}k rows, d=32 (s) | peak RSS scoring {args.memory_rows:,} rows (MiB) |"
    print(head)
    print("|---|" + "--:|" * (len(args.dims) + 2))
    for name in args.models:
        cells = [f"{speed[name, d]:,.0f}" for d in args.dims]
        cells.append(f"{epoch[name]:.2f}" if name in epoch else "–")
        cells.append(f"{memory[name]['peak_mib']:.0f}" if name in memory else "–")
        print(f"| {name} | " + " | ".join(cells) + " |")

    if {"MambaDetector", "MoME K=4", "MoME K=16"} <= set(args.models):
        print()
        for d in args.dims:
            ratio = speed["MoME K=4", d] / speed["MambaDetector", d]
            k_ratio = speed["MoME K=16", d] / speed["MoME K=4", d]
            print(
                f"- d={d}: MoME K=4 / MambaDetector = {ratio:.1f}x (target >= 3x); "
                f"K=16 / K=4 = {k_ratio:.2f} (target >= 0.80); "
                f"MoME K=4 {speed['MoME K=4', d]:,.0f} rows/s, K=16 {speed['MoME K=16', d]:,.0f} rows/s"
                + (" (target >= 1,000,000 at d=32)" if d == 32 else "")
            )
        for name, m in memory.items():
            print(
                f"- {name}: peak RSS {m['peak_mib']:.0f} MiB scoring {args.memory_rows:,} rows "
                f"(data {m['data_mib']:.0f} MiB, peak RSS before scoring {m['peak_before_mib']:.0f} MiB; target < 1024 MiB)"
            )


if __name__ == "__main__":
    main()
