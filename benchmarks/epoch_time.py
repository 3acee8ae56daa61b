"""Two micro timings behind claims in docs/benchmarks.md (a script, not a test).

1. One training epoch of the default ``MambaDetector`` on 8,000 random rows x 9 features
   (batch 256, 2 threads), with the short-sequence convolution as shifted sums (the default) and
   with PyTorch's ``Conv1d`` (``_SHIFTED_CONV_MAX_LENGTH = 0``): best of ``--repeat`` epochs.
2. ``PowerGate.transform`` (Yeo-Johnson of skewed columns) on 100,000 rows x 32 columns that are
   all heavily skewed: best of ``--repeat`` calls after a warm-up.

    python benchmarks/epoch_time.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def epoch_seconds(repeat: int) -> float:
    from swifthydra.detectors import MambaDetector

    rng = np.random.RandomState(0)
    X = rng.randn(8000, 9).astype(np.float32)
    y = (rng.rand(8000) < 0.01).astype(np.int64)
    det = MambaDetector(max_epochs=1, min_epochs=1, validation_fraction=0, random_state=0).fit(X, y)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        det.partial_fit(X, y, epochs=1)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()

    import torch

    from swifthydra._power import PowerGate
    from swifthydra.nn import mamba

    torch.set_num_threads(2)
    shifted = epoch_seconds(args.repeat)
    saved, mamba._SHIFTED_CONV_MAX_LENGTH = mamba._SHIFTED_CONV_MAX_LENGTH, 0
    try:
        conv = epoch_seconds(args.repeat)
    finally:
        mamba._SHIFTED_CONV_MAX_LENGTH = saved
    print(f"MambaDetector epoch, 8,000 x 9, batch 256, 2 threads: shifted sums {shifted:.2f} s, "
          f"Conv1d {conv:.2f} s ({100 * (1 - shifted / conv):.0f}% less)")

    rng = np.random.RandomState(0)
    Z = rng.exponential(size=(100_000, 32)) ** 2
    Z = (Z - Z.mean(0)) / Z.std(0)
    gate = PowerGate.fit(Z[:20_000], "auto")
    gate.transform(Z)  # warm-up: first-touch page faults of the output arrays
    best = float("inf")
    for _ in range(args.repeat):
        t = time.perf_counter()
        gate.transform(Z)
        best = min(best, time.perf_counter() - t)
    print(f"PowerGate.transform, 100,000 x 32 columns ({gate.columns.size} transformed): {best:.3f} s")


if __name__ == "__main__":
    main()
