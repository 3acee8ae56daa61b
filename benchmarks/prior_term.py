"""Rows per second of the density prior's term alone (a script, not a test; docs/benchmarks.md §7.1).

Fits a :class:`~swifthydra.detectors.prior.DensityPrior` on ``--fit-rows`` standard Gaussian rows
(2,048 of them become the reference sample) and times ``DensityPrior.term`` on ``--rows`` fresh
rows, with ``--threads`` PyTorch threads. ``--exact-float64`` times the one-pass float64 distance
computation the prior used before its two-pass form, on the same rows, and prints the largest
difference between the two terms.

    python benchmarks/prior_term.py [--rows 200000] [--cols 32] [--threads 1] [--exact-float64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _one_pass_float64(z, reference, k):
    import torch

    z = z.to(torch.float64)
    sq = (z * z).sum(1, keepdim=True) - 2.0 * z @ reference.T + (reference * reference).sum(1)[None, :]
    nearest = torch.topk(sq, k, dim=1, largest=False).values
    return torch.log(torch.sqrt(nearest.clamp(min=0.0) + 1e-12).mean(1) + 1e-9)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--cols", type=int, default=32)
    p.add_argument("--fit-rows", type=int, default=22_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--exact-float64", action="store_true")
    args = p.parse_args()

    import torch

    from swifthydra.detectors import prior as prior_module

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    prior = prior_module.DensityPrior.fit(rng.normal(size=(args.fit_rows, args.cols)), seed=0)
    X = rng.normal(size=(args.rows, args.cols))
    t0 = time.perf_counter()
    term = prior.term(X)
    seconds = time.perf_counter() - t0
    print(f"two-pass term: {args.rows:,} x {args.cols}, {len(prior.reference):,} reference rows, "
          f"{args.threads} thread(s): {seconds:.2f} s, {args.rows / seconds:,.0f} rows/s")
    if args.exact_float64:
        original = prior_module.log_knn_distance
        prior_module.log_knn_distance = _one_pass_float64
        try:
            t0 = time.perf_counter()
            old = prior.term(X)
            seconds = time.perf_counter() - t0
        finally:
            prior_module.log_knn_distance = original
        print(f"one-pass float64 term: {seconds:.2f} s, {args.rows / seconds:,.0f} rows/s; "
              f"largest difference {np.abs(term - old).max():.2e}")


if __name__ == "__main__":
    main()
