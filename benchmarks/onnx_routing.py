"""onnxruntime throughput of the exported MoME: routed graph (each row runs only its top-k experts)
against the dense graph (every expert on every row), for K = 4 and K = 16 experts.

    .venv/bin/python benchmarks/onnx_routing.py [--rows 200000] [--features 32] [--top-k 1] [--threads 0]

Fits a small SwiftHydra per K on synthetic rows (the experts keep their default size), exports both
graphs with ``export_onnx(routed=True/False)`` (features input), checks that both equal PyTorch's
scores (max abs difference printed) and times ``InferenceSession.run`` on ``--rows`` rows (best of
``--repeat``). Prints one line per graph and K, and the K=16 / K=4 ratio of rows/s per graph.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _fit(n_experts: int, top_k: int, n_features: int, seed: int = 0):
    from swifthydra import SwiftHydra

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2000, n_features))
    X[:, : n_features // 2] += rng.integers(0, 4, size=(2000, 1)) * 3.0  # a few clusters for the gate
    y = np.zeros(2000, dtype=np.int64)
    y[:20] = 1
    X[:20] += 6.0
    params = dict(
        episodes=1,
        generation_params={"ppo_iterations": 2, "num_envs": 16, "horizon": 3, "latent_dim": 4, "cvae_epochs": 5,
                           "finetune_epochs": 1},
        detector_params={"max_epochs": 5, "d_model": 8, "n_layers": 1, "tokenizer": "row", "batch_size": 256},
        mome_params={"max_epochs": 5, "top_k": top_k, "n_experts": n_experts},
    )
    return SwiftHydra(random_state=seed, **params).fit(X, y)


def main() -> None:
    import onnxruntime as ort

    from swifthydra.onnx_export import export_onnx

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--top-k", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--experts", default="4,16")
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    results: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for K in (int(k) for k in args.experts.split(",")):
            est = _fit(K, args.top_k, args.features)
            X = est.center_ + est.scale_ * rng.normal(size=(args.rows, args.features))
            ref = est.decision_function(X[:20000])
            for graph in ("dense", "routed"):
                path = export_onnx(est, Path(tmp) / f"{graph}{K}.onnx", routed=graph == "routed")
                so = ort.SessionOptions()
                if args.threads:
                    so.intra_op_num_threads = args.threads
                sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
                diff = float(np.max(np.abs(sess.run(["score"], {"features": X[:20000]})[0] - ref)))
                best = np.inf
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    sess.run(["score"], {"features": X})
                    best = min(best, time.perf_counter() - t0)
                results[(graph, K)] = args.rows / best
                print(f"{graph:6s} K={K:2d} top_k={args.top_k}: {args.rows / best:12,.0f} rows/s "
                      f"(max |onnx - torch| = {diff:.1e}, {path.stat().st_size / 1e6:.2f} MB)", flush=True)
    ks = sorted({k for _, k in results})
    if len(ks) >= 2:
        for graph in ("dense", "routed"):
            print(f"{graph}: rows/s K={ks[-1]} / K={ks[0]} = {results[(graph, ks[-1])] / results[(graph, ks[0])]:.2f}")


if __name__ == "__main__":
    main()
