"""The checks that need a GPU, as one prepared script (a script, not a test; issue 24 item 6).

Run on a machine with CUDA, from the repository root, with the package importable
(``PYTHONPATH=src`` or an install)::

    python benchmarks/gpu_check.py [--json out.json] [--rows 1000 10000]

1. **The scan on the GPU against the CPU oracle.** ``selective_scan`` on CUDA tensors in every
   mode that runs there (``parallel``, ``auto``, and ``cuda`` when ``mamba_ssm`` is installed), in
   float64, against ``mode="sequential"`` on the CPU: outputs and the gradients of all six inputs
   must agree within 1e-5 (relative to each tensor's largest magnitude); float32 on the GPU is
   reported beside it.
2. **Training on the GPU.** One default ``SwiftHydra`` fit per size on synthetic data (32 Gaussian
   columns, 1 % anomalies shifted in 8 columns, 5 % of them labelled, seed 0) with
   ``device="cuda"`` and with ``device="cpu"`` (one thread) on the same data: fit seconds and
   test AUC-ROC on a held-out set, and the largest difference between the GPU model's scores
   computed on the GPU and after moving it to the CPU (``save``/``load`` with ``device="cpu"``).
3. The scan's time per training step (forward and backward, 256 rows, 8 tokens, width 64,
   state 4) on the GPU in each mode.

The test files whose tests run on CUDA when it is available (test_cvae, test_rl, test_reward,
test_detector, test_mamba, test_prior) are run with pytest by the caller beside this script.
Prints one JSON object (also written to ``--json``); exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _scan_inputs(torch, b, length, d_in, n, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype=dtype, device=device)

    u = r(b, length, d_in)
    delta = torch.nn.functional.softplus(r(b, length, d_in)) * 0.5
    A = -torch.exp(r(d_in, n, scale=0.5))
    B, C = r(b, length, n), r(b, length, n)
    D = r(d_in)
    return [t.requires_grad_(True) for t in (u, delta, A, B, C, D)]


def check_scan(torch, selective_scan, modes):
    shape = (16, 9, 24, 4)  # an odd length: the doubling scan's ragged last step
    ref_in = _scan_inputs(torch, *shape, torch.float64, "cpu")
    y_ref = selective_scan(*ref_in, mode="sequential")
    w = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref_grads = torch.autograd.grad((y_ref * w).sum(), ref_in)
    out = {}
    for mode in modes:
        for dtype in (torch.float64, torch.float32):
            inp = _scan_inputs(torch, *shape, dtype, "cuda")
            try:
                y = selective_scan(*inp, mode=mode)
                grads = torch.autograd.grad((y * w.to(y)).sum(), inp)
            except Exception as exc:  # a mode that does not take this dtype (the fused kernel: float32)
                out[f"{mode}/{str(dtype).split('.')[-1]}"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
                continue

            def rel(a, b):
                return float((a.detach().double().cpu() - b.detach()).abs().max() / max(b.abs().max().item(), 1e-12))

            errs = {"y": rel(y, y_ref)}
            errs.update({f"d{name}": rel(g, r) for name, g, r in zip("u delta A B C D".split(), grads, ref_grads, strict=True)})
            tol = 1e-5 if dtype == torch.float64 else 1e-3
            out[f"{mode}/{str(dtype).split('.')[-1]}"] = {"max_rel_error": max(errs.values()), "per_tensor": errs,
                                                          "tolerance": tol, "ok": max(errs.values()) <= tol}
    return out


def time_scan(torch, selective_scan, modes, steps=50):
    out = {}
    for mode in modes:
        inp = _scan_inputs(torch, 256, 8, 64, 4, torch.float32, "cuda")
        try:
            for _ in range(5):
                y = selective_scan(*inp, mode=mode)
                torch.autograd.grad(y.sum(), inp)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):
                y = selective_scan(*inp, mode=mode)
                torch.autograd.grad(y.sum(), inp)
            torch.cuda.synchronize()
            out[mode] = round((time.perf_counter() - t0) / steps * 1000, 3)
        except Exception as exc:
            out[mode] = f"{type(exc).__name__}: {exc}"[:200]
    return out


def _synthetic(rows, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(rows, 32))
    truth = np.zeros(rows, dtype=np.int64)
    anomalies = rng.choice(rows, max(4, rows // 100), replace=False)
    truth[anomalies] = 1
    X[np.ix_(anomalies, np.arange(8))] += 3.0
    weak = np.zeros(rows, dtype=np.int64)
    weak[rng.choice(anomalies, max(1, len(anomalies) // 20), replace=False)] = 1
    return X, weak, truth


def fit_panel(torch, sizes):
    from sklearn.metrics import roc_auc_score

    from swifthydra import SwiftHydra

    out = []
    for rows in sizes:
        X, weak, _ = _synthetic(rows)
        X_test, _, truth = _synthetic(max(2000, rows // 5), seed=1)
        row = {"rows": rows}
        for device in ("cuda", "cpu"):
            t0 = time.perf_counter()
            try:
                model = SwiftHydra(random_state=0, device=device, n_jobs=1).fit(X, weak)
            except Exception:  # reported, and the check fails
                import traceback

                row[f"{device}_error"] = traceback.format_exc()[-1500:]
                print(row[f"{device}_error"], file=sys.stderr, flush=True)
                continue
            row[f"{device}_fit_s"] = round(time.perf_counter() - t0, 2)
            scores = model.decision_function(X_test)
            row[f"{device}_test_auc"] = round(float(roc_auc_score(truth, scores)), 4)
            if device == "cuda":
                with tempfile.TemporaryDirectory() as tmp:
                    model.save(Path(tmp) / "m")
                    on_cpu = SwiftHydra.load(Path(tmp) / "m", device="cpu")
                    row["cuda_vs_cpu_loaded_max_abs_diff"] = float(np.abs(on_cpu.decision_function(X_test) - scores).max())
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None)
    p.add_argument("--rows", type=int, nargs="+", default=[1000, 10000])
    args = p.parse_args()

    import torch

    from swifthydra.nn import mamba
    from swifthydra.nn.mamba import selective_scan

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check", file=sys.stderr)
        return 1
    modes = ["parallel", "auto"] + (["cuda"] if mamba._cuda_selective_scan_fn() is not None else [])
    report = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "mamba_ssm": mamba._cuda_selective_scan_fn() is not None,
        "scan_vs_cpu_oracle": check_scan(torch, selective_scan, modes),
        "scan_ms_per_step": time_scan(torch, selective_scan, modes),
    }
    print(json.dumps(report, indent=1), flush=True)
    report["fits"] = fit_panel(torch, args.rows)
    ok = all(v.get("ok", True) for k, v in report["scan_vs_cpu_oracle"].items() if k.endswith("float64"))
    ok = ok and not any(k.endswith("_error") for row in report["fits"] for k in row)
    report["ok"] = ok
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
