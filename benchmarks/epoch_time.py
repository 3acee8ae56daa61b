"""Micro timings behind claims in docs/benchmarks.md (a script, not a test).

1. One training epoch of the default ``MambaDetector`` on 8,000 random rows x 9 features
   (batch 256, 2 threads), with the short-sequence convolution as shifted sums (the default) and
   with PyTorch's ``Conv1d`` (``_SHIFTED_CONV_MAX_LENGTH = 0``): best of ``--repeat`` epochs.
2. ``PowerGate.transform`` (Yeo-Johnson of skewed columns) on 100,000 rows x 32 columns that are
   all heavily skewed: best of ``--repeat`` calls after a warm-up.
3. The default detector's network (``MambaScorer``: 16 features as 8 patch tokens, 2
   bidirectional layers, inner width 64, state 4), one thread: milliseconds per training step
   (batch 256, forward, backward, AdamW) and per scoring batch (2,048 rows, no gradient): the best
   over ``--repeat`` interleaved rounds of the median of ``--steps`` after a warm-up, for the
   default scans, for both scans in their former ``(b, l, d_in, n)`` layout (kept below, so the
   comparison can be re-run), and for the sequential oracle alone.

4. (``--sizes``) the same training step for the network sizes compared in docs/benchmarks.md §10.8:
   two layers (``MambaDetector``'s default), one layer (SwiftHydra's), 4 tokens, state size 2, and
   one layer with state size 2 or inner width halved; interleaved rounds, best median.

5. (``--mome``) one training step of the default MoME's network (9 features, 4, 8 or 16 experts,
   256 rows, one thread, AdamW): the experts' weights stacked and run as one batched computation
   (the default), stacked but run one expert after another, and the layout before the stacking
   (one module per expert, a Python loop; kept below, so the comparison can be re-run).

6. (``--shards``) whether a second thread can speed up one training step of SwiftHydra's large
   detector (the network of ``MambaDetector(n_layers=1)``, 10 or 32 features, dropout 0.1) by data
   parallelism: the step's rows cut in two halves, each half's network body run forward and
   backward on its own thread (its own autograd graph, cut at the pooled features), the dropout,
   head and loss on the calling thread, the halves' gradients summed in a fixed order (so the
   result would not depend on the thread count). Ms per step (forward and backward, no optimiser),
   one thread for the whole rows, the halves one after the other, and the halves on two threads;
   133 rows is a default step after ``merge_repeats`` (128 unlabeled rows and a few known
   anomalies), 266 the same step without it.

    python benchmarks/epoch_time.py [--repeat 3] [--steps 40] [--only-scan] [--sizes] [--mome] [--shards]
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


def _former_scans() -> dict:
    """The recurrent and sequential scans as they were before the ``(b, l, n, d_in)`` layout: the
    state axis innermost, contractions over it as batched matrix products."""
    import torch

    class Recurrent(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u, delta, A, B, C, D):
            a = torch.exp(delta.unsqueeze(-1) * A)
            H = (delta * u).unsqueeze(-1) * B.unsqueeze(2)
            for t in range(1, u.shape[1]):
                H[:, t].addcmul_(a[:, t], H[:, t - 1])
            y = torch.matmul(H, C.unsqueeze(-1)).squeeze(-1) + u * D
            ctx.save_for_backward(u, delta, A, B, C, D, a, H)
            return y

        @staticmethod
        def backward(ctx, dy):
            u, delta, A, B, C, D, a, H = ctx.saved_tensors
            G = dy.unsqueeze(-1) * C.unsqueeze(2)
            for t in range(u.shape[1] - 2, -1, -1):
                G[:, t].addcmul_(a[:, t + 1], G[:, t + 1])
            dC = torch.matmul(dy.unsqueeze(-2), H).squeeze(-2)
            dlog_a = G[:, 1:] * H[:, :-1] * a[:, 1:]
            GB = torch.matmul(G, B.unsqueeze(-1)).squeeze(-1)
            ddelta = GB * u
            ddelta[:, 1:] += torch.einsum("bldn,dn->bld", dlog_a, A)
            dA = torch.einsum("bldn,bld->dn", dlog_a, delta[:, 1:])
            dB = torch.matmul((delta * u).unsqueeze(-2), G).squeeze(-2)
            return GB * delta + dy * D, ddelta, dA, dB, dC, (dy * u).sum((0, 1))

    def sequential(u, delta, A, B, C, D):
        h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])  # (b, d_in, n)
        ys = []
        for t in range(u.shape[1]):
            dt = delta[:, t].unsqueeze(-1)
            h = torch.exp(dt * A) * h + dt * B[:, t].unsqueeze(1) * u[:, t].unsqueeze(-1)
            ys.append(torch.bmm(h, C[:, t].unsqueeze(-1)).squeeze(-1))
        return torch.stack(ys, 1) + u * D

    return {"recurrent": Recurrent.apply, "sequential": sequential}


def _train_step_ms(net, x, y, steps: int, **adamw) -> float:
    """Median ms of ``steps`` AdamW training steps of ``net`` on ``(x, y)``, after 5 warm-up steps."""
    import statistics

    import torch

    opt = torch.optim.AdamW(net.parameters(), 1e-3, **adamw)
    times = []
    for _ in range(steps + 5):
        t = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(net(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times[5:])


def scan_step_ms(steps: int, rounds: int) -> list[tuple[str, float, float]]:
    """(mode, ms per training step, ms per 2,048-row scoring batch) of the default network."""
    import statistics

    import torch

    from swifthydra.nn import mamba
    from swifthydra.nn.mamba import MambaConfig, MambaScorer

    torch.set_num_threads(1)
    cfg = dict(d_model=32, n_layers=2, d_state=4, expand=2, bidirectional=True)
    x, y = torch.randn(256, 16), (torch.rand(256) < 0.5).float()
    x_score = torch.randn(2048, 16)
    saved = dict(mamba._SCANS)
    configs = [("auto (recurrent to train, sequential to score)", "auto", {}),
               ("auto, both scans in their former (b, l, d_in, n) layout", "auto", _former_scans()),
               ("sequential (the oracle) for both", "sequential", {})]
    best = {label: [float("inf"), float("inf")] for label, _, _ in configs}
    for _ in range(rounds):  # configurations interleaved, so drifts of a shared machine hit all alike
        for label, mode, scans in configs:
            mamba._SCANS.update(scans)
            try:
                torch.manual_seed(0)
                net = MambaScorer(16, "patch", MambaConfig(**cfg, scan_mode=mode), tokenizer_kwargs={"max_tokens": 8})
                train_ms = _train_step_ms(net, x, y, steps)
                score = []
                with torch.no_grad():
                    for _ in range(steps // 4 + 2):
                        t = time.perf_counter()
                        net(x_score)
                        score.append(time.perf_counter() - t)
            finally:
                mamba._SCANS.update(saved)
            best[label][0] = min(best[label][0], train_ms)
            best[label][1] = min(best[label][1], 1000 * statistics.median(score[2:]))
    rows = [(label, *best[label]) for label, _, _ in configs]
    return rows


SIZES = {  # label: (MambaConfig changes, tokens)
    "two layers (MambaDetector's default)": ({}, 8),
    "one layer (SwiftHydra's default)": ({"n_layers": 1}, 8),
    "two layers, 4 tokens": ({}, 4),
    "two layers, state size 2": ({"d_state": 2}, 8),
    "one layer, state size 2": ({"n_layers": 1, "d_state": 2}, 8),
    "one layer, inner width halved (expand 1)": ({"n_layers": 1, "expand": 1}, 8),
}


def size_step_ms(steps: int, rounds: int) -> list[tuple[str, float]]:
    """(size, ms per training step of 256 rows, one thread) for each entry of :data:`SIZES`."""

    import torch

    from swifthydra.nn.mamba import MambaConfig, MambaScorer

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    x, y = torch.randn(256, 16), (torch.rand(256) < 0.5).float()
    best = dict.fromkeys(SIZES, float("inf"))
    for _ in range(rounds):
        for label, (changes, tokens) in SIZES.items():
            torch.manual_seed(0)
            cfg = MambaConfig(**{"d_model": 32, "n_layers": 2, "d_state": 4, "expand": 2, "bidirectional": True,
                                 **changes})
            net = MambaScorer(16, "patch", cfg, tokenizer_kwargs={"max_tokens": tokens})
            best[label] = min(best[label], _train_step_ms(net, x, y, steps, foreach=True))
    return list(best.items())


def _former_mome(net):
    """The MoME's network as it was before its experts' weights were stacked: one module per
    expert and a Python loop over the experts that have rows (same values as ``net``)."""
    import torch
    from torch import nn

    class Former(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scaler, self.gate, self.top_k, self.n_experts = net.scaler, net.gate, net.top_k, net.n_experts
            self.experts = nn.ModuleList(list(net.experts))

        def forward(self, x):
            x = self.scaler(x)
            probs, index = type(net).route(self, x, sample=self.training)
            chosen = probs.gather(1, index)
            weights = (chosen / chosen.sum(-1, keepdim=True).detach()).reshape(-1)
            flat = index.reshape(-1)
            order = torch.sort(flat).indices
            rows_of = order // self.top_k if self.top_k > 1 else order
            out, start = x.new_zeros(x.shape[0]), 0
            for e, count in enumerate(torch.bincount(flat, minlength=self.n_experts).tolist()):
                if count:
                    slot, rows = order[start:start + count], rows_of[start:start + count]
                    start += count
                    out = out.index_add(0, rows, weights.index_select(0, slot) * self.experts[e](x.index_select(0, rows)))
            return out

    return Former()


def mome_step_ms(steps: int, rounds: int) -> list[tuple[int, str, float]]:
    """(experts, layout, ms per training step of 256 rows, one thread) of the default MoME's net."""
    import torch

    from swifthydra.detectors import MoME

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    x, y = torch.randn(256, 9), (torch.rand(256) < 0.5).float()
    layouts = ("stacked, one batched computation (the default)", "stacked, one expert after another",
               "one module per expert (before the stacking)")
    best = {(k, label): float("inf") for k in (4, 8, 16) for label in layouts}
    for _ in range(rounds):
        for k in (4, 8, 16):
            for label in layouts:
                torch.manual_seed(0)
                mome = MoME(n_experts=k)
                mome.n_experts_ = k
                net = mome._build_net(9, None, 0).train()
                if label == layouts[1]:
                    net._batched_training = False
                elif label == layouts[2]:
                    net = _former_mome(net).train()
                best[k, label] = min(best[k, label], _train_step_ms(net, x, y, steps, foreach=True))
    return [(k, label, ms) for (k, label), ms in best.items()]


def shard_step_ms(steps: int, rounds: int) -> list[tuple[int, int, dict[str, float]]]:
    """(features, rows, {way: best median ms per step}) of item 6."""
    import statistics
    from concurrent.futures import ThreadPoolExecutor

    import torch
    import torch.nn.functional as F

    from swifthydra.detectors import MambaDetector
    from swifthydra.detectors._training import flush_denormals, single_threaded_ops

    ways = ("whole rows, 1 thread", "two halves, 1 thread", "two halves, 2 threads")
    results = []
    with single_threaded_ops(), ThreadPoolExecutor(1) as pool:
        for n_features in (10, 32):
            rng = np.random.RandomState(0)
            X = rng.randn(600, n_features).astype(np.float32)
            y = np.zeros(600, dtype=np.int64)
            y[:5] = 1
            net = MambaDetector(n_layers=1, max_epochs=1, random_state=0).fit(X, y).model_.train()
            head = list(net.head.parameters())
            body = [p for p in net.parameters() if all(p is not q for q in head)]

            def features(x, net=net):
                h = net.backbone(net.tokenizer(net.scaler(x)))
                return h[:, 0] if h.shape[1] == 1 else h.mean(1)

            def body_grad(h, g, body=body):
                with flush_denormals():  # per thread
                    return torch.autograd.grad(h, body, grad_outputs=g, allow_unused=True)

            def pooled(x):
                with flush_denormals():
                    return features(x)

            for rows in (133, 266):
                x, t, w = torch.from_numpy(X[:rows]), torch.from_numpy((y[:rows] == 1).astype(np.float32)), torch.ones(rows)

                def whole(x=x, t=t, w=w, net=net):
                    loss = (w * F.binary_cross_entropy_with_logits(net(x), t, reduction="none")).mean()
                    loss.backward()

                def halves(threads: int, x=x, t=t, w=w, net=net, head=head, body=body) -> None:
                    k = x.shape[0] // 2
                    if threads == 2:
                        later = pool.submit(pooled, x[k:])
                        h0 = features(x[:k])
                        h1 = later.result()
                    else:
                        h0, h1 = features(x[:k]), features(x[k:])
                    cut = [h0.detach().requires_grad_(), h1.detach().requires_grad_()]
                    logits = net.head(net.dropout(torch.cat(cut))).squeeze(-1)
                    loss = (w * F.binary_cross_entropy_with_logits(logits, t, reduction="none")).mean()
                    g0, g1, *_ = torch.autograd.grad(loss, [*cut, *head])
                    if threads == 2:
                        later = pool.submit(body_grad, h1, g1)
                        a, b = body_grad(h0, g0), later.result()
                    else:
                        a, b = body_grad(h0, g0), body_grad(h1, g1)
                    [None if u is None else u + v for u, v in zip(a, b, strict=True)]

                runs = {ways[0]: whole, ways[1]: lambda h=halves: h(1), ways[2]: lambda h=halves: h(2)}
                best = dict.fromkeys(ways, float("inf"))
                for _ in range(rounds):
                    for way, step in runs.items():
                        times = []
                        for _ in range(steps + 5):
                            t0 = time.perf_counter()
                            step()
                            times.append(time.perf_counter() - t0)
                        best[way] = min(best[way], 1000 * statistics.median(times[5:]))
                results.append((n_features, rows, best))
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--only-scan", action="store_true", help="only the per-step timings of item 3")
    p.add_argument("--sizes", action="store_true", help="only the training step of each size of item 4")
    p.add_argument("--mome", action="store_true", help="only the MoME training steps of item 5")
    p.add_argument("--shards", action="store_true", help="only the data-parallel training steps of item 6")
    args = p.parse_args()

    if args.shards:
        for n_features, rows, best in shard_step_ms(args.steps, args.repeat):
            print(f"large detector, {n_features} features, {rows} rows: "
                  + ", ".join(f"{way} {ms:.2f} ms" for way, ms in best.items()))
        return

    if args.mome:
        for k, label, ms in mome_step_ms(args.steps, args.repeat):
            print(f"MoME network, {k} experts, 1 thread, {label}: {ms:.2f} ms per training step (256 rows)")
        return
    if args.sizes:
        for label, ms in size_step_ms(args.steps, args.repeat):
            print(f"MambaScorer, 1 thread, {label}: {ms:.1f} ms per training step (256 rows)")
        return
    for label, train_ms, score_ms in scan_step_ms(args.steps, args.repeat):
        print(f"MambaScorer, 1 thread, scan {label}: {train_ms:.1f} ms per training step (256 rows), "
              f"{score_ms:.1f} ms per scoring batch (2,048 rows)")
    if args.only_scan:
        return

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
