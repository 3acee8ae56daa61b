"""Rows per second of the density prior's term alone (a script, not a test; docs/benchmarks.md §7.1).

Fits a :class:`~swifthydra.detectors.prior.DensityPrior` on ``--fit-rows`` standard Gaussian rows
(2,048 of them become the reference sample) and times ``DensityPrior.term`` on ``--rows`` fresh
rows, with ``--threads`` PyTorch threads. ``--exact-float64`` times the one-pass float64 distance
computation the prior used before its two-pass form, on the same rows, and prints the largest
difference between the two terms. ``--blocks 4096 512 ...`` times the term with each number of
rows per distance block (``prior._CHUNK``), best of three, and checks that every block size gives
the same values.

    python benchmarks/prior_term.py [--rows 200000] [--cols 32] [--threads 1] [--exact-float64]
    python benchmarks/prior_term.py --blocks 4096 2048 1024 512 256
    python benchmarks/prior_term.py --split      # µs per row of each step, on one block
    python benchmarks/prior_term.py --onnx-blocks 0 512 1024 2048 --threads 2

``--onnx-blocks`` exports the term (``onnx_export._with_prior``, as ``swifthydra export-onnx`` puts
it in the graph) with each number of rows per ``Scan`` block (0: no ``Scan``, the whole run at
once, as before), and times onnxruntime on ``--threads`` intra-op threads over the rows in runs of
100,000 (best of three), checking the values against the PyTorch term.

``--split`` times the three steps of ``log_knn_distance`` on one block of rows as the prior scores
it: the float32 product, the selection of ``k + CANDIDATE_MARGIN`` candidates (``torch.topk`` over
all columns as before, and the grouped search of ``smallest`` now), and the exact float64 pass over
them (gathering the candidates by advanced indexing as before, and by ``index_select`` now; median
of 200 calls each).
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


def _split(prior, X, prior_module) -> None:
    import statistics

    import torch

    n = prior_module._CHUNK
    z = torch.from_numpy(X[:n])
    ref = prior.reference
    r32, norms = prior_module.reference32(ref)
    c = prior.k + prior_module.CANDIDATE_MARGIN
    sq = torch.addmm(norms, z.to(torch.float32), r32.T, alpha=-2.0)
    cand = prior_module.smallest(sq, c)

    def exact(gather):
        diff = z[:, None, :] - gather()
        return torch.topk((diff * diff).sum(2), prior.k, dim=1, largest=False, sorted=False).values

    steps = {"float32 product": lambda: torch.addmm(norms, z.to(torch.float32), r32.T, alpha=-2.0),
             f"top-{c} selection, torch.topk over all columns (before)":
                 lambda: torch.topk(sq, c, dim=1, largest=False, sorted=False),
             f"top-{c} selection, grouped (smallest, now)": lambda: prior_module.smallest(sq, c),
             "exact float64 pass, ref[candidates] (before)": lambda: exact(lambda: ref[cand]),
             "exact float64 pass, index_select (now)":
                 lambda: exact(lambda: ref.index_select(0, cand.reshape(-1)).view(*cand.shape, -1))}
    for label, fn in steps.items():
        times = []
        for _ in range(200):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        print(f"{label}: {1e6 * statistics.median(times) / n:.2f} µs per row ({n} rows per block, "
              f"{len(ref):,} reference rows)")


def _onnx_blocks(prior, X, blocks, threads: int) -> None:
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    from swifthydra.detectors.prior import log_knn_distance
    from swifthydra.onnx_export import _export, _with_prior

    class Term(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("reference", prior.reference)

        def forward(self, z):
            return log_knn_distance(z, self.reference, prior.k)

    cols = X.shape[1]
    term = _export(Term().eval(), (torch.zeros(3, cols, dtype=torch.float64),), ["features"], ["prior"], 18)
    main = helper.make_model(helper.make_graph(  # the term itself as the output
        [helper.make_node("Identity", ["prior"], ["score"])], "term",
        [helper.make_tensor_value_info("features", TensorProto.DOUBLE, ["batch", cols]),
         helper.make_tensor_value_info("prior", TensorProto.DOUBLE, ["batch"])],
        [helper.make_tensor_value_info("score", TensorProto.DOUBLE, ["batch"])]),
        opset_imports=list(term.opset_import), ir_version=term.ir_version)
    with torch.no_grad():
        want = log_knn_distance(torch.from_numpy(X), prior.reference, prior.k).numpy()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for block in blocks:
        model = _with_prior(main, term, cols, blocked=block > 0, block=max(block, 1))
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            got = np.concatenate([session.run(None, {"features": X[a:a + 100_000]})[0]
                                  for a in range(0, len(X), 100_000)])
            times.append(time.perf_counter() - t0)
        label = f"{block:,} rows per Scan block" if block else "no Scan (runs of 100,000 rows)"
        print(f"onnxruntime, {label}: {len(X) / min(times):,.0f} rows/s on {threads} thread(s); "
              f"largest difference from PyTorch's term {np.abs(got - want).max():.1e}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--cols", type=int, default=32)
    p.add_argument("--fit-rows", type=int, default=22_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--exact-float64", action="store_true")
    p.add_argument("--blocks", type=int, nargs="+", default=None, help="rows per distance block to compare")
    p.add_argument("--split", action="store_true", help="microseconds per row of each step, on one block")
    p.add_argument("--onnx-blocks", type=int, nargs="+", default=None,
                   help="rows per Scan block of the exported term to compare (0: no Scan)")
    args = p.parse_args()

    import torch

    from swifthydra.detectors import prior as prior_module

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    prior = prior_module.DensityPrior.fit(rng.normal(size=(args.fit_rows, args.cols)), seed=0)
    X = rng.normal(size=(args.rows, args.cols))
    if args.split:
        _split(prior, X, prior_module)
        return
    if args.onnx_blocks:
        _onnx_blocks(prior, X, args.onnx_blocks, args.threads)
        return
    if args.blocks:
        default, first = prior_module._CHUNK, None
        try:
            for block in args.blocks:
                prior_module._CHUNK = block
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    term = prior.term(X)
                    times.append(time.perf_counter() - t0)
                first = term if first is None else first
                print(f"{block:>6} rows per block: {args.rows / min(times):,.0f} rows/s; "
                      f"same values as {args.blocks[0]}: {np.array_equal(term, first)}")
        finally:
            prior_module._CHUNK = default
        return
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
