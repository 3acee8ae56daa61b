"""Training helpers shared by the neural detectors: torch global-state managers (seeded RNG,
flushed denormals, one intra-op thread), the stratified split, class-balanced weights and
mini-batches, and the early-stopping order (docs/design.md §4)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from swifthydra.nn.optim import Adam

MAX_GRAD_NORM = 5.0


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run with torch's global RNG (CPU, and the CUDA device in use) seeded, restoring it after."""
    devices = []
    if device.type == "cuda":
        devices = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def adamw(net: nn.Module, lr: float, weight_decay: float) -> Adam:
    """AdamW, as ``torch.optim.AdamW(foreach=True)`` computes it (one update over all parameter
    tensors instead of a Python loop per tensor) without importing ``torch._dynamo``
    (:mod:`swifthydra.nn.optim`)."""
    return Adam(net.parameters(), lr=float(lr), weight_decay=float(weight_decay), decoupled=True, foreach=True)


def denormals_flushed() -> bool:
    """Whether flush-to-zero is active: a product below float32's normal range comes out 0."""
    tiny = torch.tensor([1e-30], dtype=torch.float32)
    return float(tiny * tiny.new_tensor([1e-10])) == 0.0


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Flush denormal floats to zero on CPU for the duration, then restore the previous mode.

    Decaying SSM states, small gradients and their Adam moments drift into the denormal range,
    where x86 arithmetic is many times slower (the measurement: docs/design.md §4.4).
    """
    previous = denormals_flushed()
    changed = not previous and torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if changed:
            torch.set_flush_denormal(False)


@contextmanager
def single_threaded_ops() -> Iterator[None]:
    """One intra-op thread and flushed denormals for the duration; both restored after.

    These networks run thousands of small ops per batch. With an intra-op pool every op is a
    parallel region that waits for all pool threads, and pool threads do not inherit the calling
    thread's flush-to-zero mode, so one thread is much faster on shared cores (the measurement:
    docs/design.md §4.4). Scoring gets its parallelism from whole batches on separate threads
    instead (see ``_scores``).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with flush_denormals():
            yield
    finally:
        torch.set_num_threads(threads)


def sample_rows(
    y: np.ndarray, n: int, rng: np.random.RandomState, max_known: int | None = None
) -> np.ndarray:
    """Sorted indices of at most ``n`` rows: the known anomalies (``y == 1``; a random
    ``max_known`` of them when there are more) and a random sample of the other rows."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if max_known is not None and len(pos) > max_known:
        pos = rng.choice(pos, max_known, replace=False)
    neg = rng.choice(neg, min(len(neg), n - len(pos)), replace=False)
    return np.sort(np.concatenate([pos, neg]))


def stratified_split(
    y: np.ndarray, fraction: float, rng: np.random.RandomState
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation); each class contributes ``fraction`` of its rows to validation.

    Known anomalies are few, so at least one goes to validation and at least one stays in
    training whenever there are two or more. Returns an empty validation set when the data are
    too small for a meaningful one (fewer than two known anomalies or ten rows).
    """
    n_pos = int(y.sum())
    if fraction <= 0 or n_pos < 2 or y.shape[0] < 10:
        return np.arange(y.shape[0]), np.empty(0, dtype=np.int64)
    train, val = [], []
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        k = int(round(fraction * idx.shape[0]))
        k = min(max(k, 1), idx.shape[0] - 1)
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def class_normalized_weights(y: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray:
    """Row weights with mean 1 within each class (for class-balanced mini-batches)."""
    w = np.ones(y.shape[0]) if sample_weight is None else sample_weight.astype(np.float64).copy()
    for label in (0, 1):
        mask = y == label
        total = w[mask].sum()
        if total > 0:
            w[mask] *= mask.sum() / total
    return w


def balanced_batches(
    y: np.ndarray, batch_size: int, rng: np.random.RandomState
) -> list[np.ndarray]:
    """One epoch of mini-batches, each half known anomalies and half unlabeled rows.

    The larger class is covered once in random order; the smaller one is cycled through
    reshuffled passes to fill its half of every batch. With a handful of labelled anomalies this
    keeps every gradient step balanced, instead of most batches holding none and a few holding
    one with a huge weight.
    """
    half = max(1, batch_size // 2)
    groups = [np.flatnonzero(y == 1), np.flatnonzero(y == 0)]
    n_batches = math.ceil(max(len(g) for g in groups) / half)
    need = n_batches * half
    filled = []
    for g in groups:
        passes = [rng.permutation(g) for _ in range(math.ceil(need / len(g)))]
        filled.append(np.concatenate(passes)[:need])
    return [
        np.concatenate([f[b * half : (b + 1) * half] for f in filled]) for b in range(n_batches)
    ]


def merge_repeats(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The distinct row indices of a mini-batch and each one's loss multiplier, or ``(batch,
    None)`` when no row repeats.

    The multiplier is the row's repeats times ``distinct / len(batch)``, so a mean over the distinct
    rows of the multiplied per-row losses equals the mean over the whole batch: the same loss, and
    without dropout the same gradient, for the network run once per distinct row. The cycled half of
    :func:`balanced_batches` repeats a handful of known anomalies a hundred times.
    """
    rows, repeats = np.unique(batch, return_counts=True)
    if rows.shape[0] == batch.shape[0]:
        return batch, None
    return rows, repeats * (rows.shape[0] / batch.shape[0])


def balanced_weights(y: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray:
    """Per-row loss weights giving each class half the total weight (mean weight 1)."""
    n = y.shape[0]
    w = np.ones(n) if sample_weight is None else sample_weight.astype(np.float64).copy()
    for label in (0, 1):
        mask = y == label
        total = w[mask].sum()
        if total > 0:
            w[mask] *= (n / 2.0) / total
    return w


def better(key: tuple[float, float], best: tuple[float, float] | None, loss_tol: float = 0.0) -> bool:
    """Early-stopping order: higher validation AUC; at an equal AUC, a validation loss more than
    ``loss_tol`` (at least 1e-6) lower.

    The AUC ranks the few held-out known anomalies against the unlabeled rows, which is what the
    detector is for; the balanced loss alone mostly tracks the calibration of those few rows and
    rises long before the ranking stops improving. The loss breaks ties (AUC is often 1.0); with
    ``loss_tol`` a tie broken by a smaller gain than that is no progress, so a detector whose
    validation AUC has reached 1 stops once its loss levels off instead of running every epoch
    for ever smaller gains (docs/benchmarks.md §10.9).
    """
    if best is None:
        return True
    (auc, loss), (best_auc, best_loss) = key, best
    if auc > best_auc + 1e-9:
        return True
    return auc >= best_auc - 1e-9 and loss < best_loss - max(1e-6, float(loss_tol))
