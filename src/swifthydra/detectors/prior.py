"""The k-NN density prior added to SwiftHydra's score (docs/design.md §10.1).

A labelled anomaly teaches a supervised network its own kind; an anomaly of a kind nobody labelled
is often only recognisable by where it lies: far from the normal data. :class:`DensityPrior` is
that knowledge in its simplest, most robust form (the k-NN detector of Ramaswamy et al., 2000, one
of the strongest label-free detectors on ADBench): the log of the mean distance from a row to its
``k`` nearest rows of a reference sample of unlabeled training rows, standardised by the median
and interquartile range of the same quantity on the unlabeled training rows themselves. A typical
normal row gets about 0, a row in empty space a large positive value.

Everything is torch (a float32 matrix product picks candidate neighbours, their distances are
then computed exactly in float64; both export to ONNX), so ``decision_function``, the gradient
explanations and the exported graph compute the same number; the exact second pass keeps the
result free of the identity's cancellation even for a row that duplicates a reference row.
"""

from __future__ import annotations

import numpy as np
import torch

from swifthydra.exceptions import InvalidInputError

K = 5  # neighbours (the reward's guard uses the same k, docs/design.md §7.4)
MAX_REFERENCE = 2048  # reference rows: the cost of one score is MAX_REFERENCE x n_features products
MAX_CALIBRATION = 20_000  # rows whose prior sets the median and IQR
# rows per distance block: a 512 x MAX_REFERENCE float32 matrix (4 MiB) stays in cache between the
# product that writes it and the top-k that reads it; blocks of 4,096 rows (32 MiB) scored half as
# fast, the same values (docs/benchmarks.md §7.2)
_CHUNK = 512
CANDIDATE_MARGIN = 8  # float32 candidates beyond k whose distances are recomputed in float64
GROUP = 8  # columns per group of the candidate search (:func:`smallest`)


def log_knn_distance(
    z: torch.Tensor,
    reference: torch.Tensor,
    k: int,
    self_offset: int | None = None,
    float32: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``log(mean distance to the k nearest reference rows)`` per row of ``z`` (float64, (B,)).

    Two passes (docs/design.md §10.1): the squared distances to every reference row in float32
    by the matrix-product identity pick ``k + CANDIDATE_MARGIN`` candidates, then the candidates'
    distances are computed exactly in float64 from the differences and the ``k`` smallest kept.
    The result equals the all-float64 computation unless float32 rounding (about 1e-7 of the
    squared norms) pushes one of the true ``k`` nearest behind ``CANDIDATE_MARGIN`` others; the
    float32 pass is half the memory traffic and a quarter of the time of a float64 one.

    ``self_offset``: row ``i`` of ``z`` is reference row ``self_offset + i`` and not its own
    neighbour. ``float32``: the reference in float32 and its squared norms (:func:`reference32`),
    when the caller scores many blocks against the same reference."""
    z = z.to(torch.float64)
    r32, norms = reference32(reference) if float32 is None else float32
    sq = torch.addmm(norms, z.to(torch.float32), r32.T, alpha=-2.0)  # minus |z|^2
    n_candidates = min(k + CANDIDATE_MARGIN, reference.shape[0])
    if self_offset is not None:
        rows = torch.arange(len(z))
        sq[rows, rows + self_offset] = float("inf")
        n_candidates = min(n_candidates, reference.shape[0] - 1)
    candidates = smallest(sq, n_candidates)  # (B, c)
    near = reference.to(torch.float64).index_select(0, candidates.reshape(-1))  # half the cost of ref[candidates]
    diff = z[:, None, :] - near.view(*candidates.shape, -1)  # (B, c, d), exact
    nearest = torch.topk((diff * diff).sum(2), k, dim=1, largest=False, sorted=False).values
    dist = torch.sqrt(nearest + 1e-12).mean(1)
    return torch.log(dist + 1e-9)


def reference32(reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference rows in float32 and their squared norms (1, m): the float32 pass's operands."""
    r32 = reference.to(torch.float32)
    return r32, (r32 * r32).sum(1)[None, :]


def smallest(values: torch.Tensor, n: int) -> torch.Tensor:
    """Column indices of the ``n`` smallest entries of each row of ``values`` (B, m), in no
    particular order: the same set as ``torch.topk(values, n, largest=False)`` (ties aside).

    A selection over all ``m`` columns costs more than the matrix product that wrote them
    (``torch.topk``, 4.2 µs per row of 2,048; docs/benchmarks.md §10.14). Here the columns are cut
    into ``m / GROUP`` groups (group ``j``: columns ``j``, ``j + m / GROUP``, ...), every group's
    minimum is read in one vectorised pass, the ``n`` groups with the smallest minima are found
    the same way (recursively, while there are many groups), and only their ``n * GROUP`` columns
    are searched. That is exact: an entry among a row's ``n`` smallest whose group were left out
    would have ``n`` entries not above it before it (one in each chosen group, whose minima are not
    above its own group's). On CPU the selections on few columns are numpy's introselect
    (``argpartition``), a fraction of ``torch.topk``'s cost per row at these widths; on a GPU they
    are ``topk``. An exported ONNX graph keeps one ``TopK`` over all columns (on blocks of
    ``onnx_export.PRIOR_BLOCK`` rows): onnxruntime ran the grouped search slower, on whole chunks
    and on blocks alike (docs/benchmarks.md §10.14-§10.15)."""
    m = values.shape[1]
    if torch.onnx.is_in_onnx_export():
        return torch.topk(values, n, dim=1, largest=False, sorted=False).indices
    numpy_ok = values.device.type == "cpu"
    if m < 2 * n * GROUP:  # too few groups to pay for a second selection
        if numpy_ok and n < m:
            return torch.from_numpy(np.argpartition(values.detach().numpy(), n - 1, axis=1)[:, :n])
        return torch.topk(values, n, dim=1, largest=False, sorted=False).indices
    if m % GROUP:
        values = torch.nn.functional.pad(values, (0, GROUP - m % GROUP), value=float("inf"))
    n_groups = values.shape[1] // GROUP
    groups = smallest(values.reshape(-1, GROUP, n_groups).amin(1), n)  # (B, n) of the group minima
    columns = (groups[:, :, None] + torch.arange(GROUP, device=values.device) * n_groups).reshape(-1, n * GROUP)
    return columns.gather(1, smallest(values.gather(1, columns), n))


class DensityPrior:
    """k-NN density term: ``(log mean k-NN distance - center) / scale``.

    Parameters
    ----------
    reference : tensor of shape (m, d)
        The reference rows (float64), in the space the networks see.
    k : int
    center, scale : float
        Median and interquartile range of the log distance on the unlabeled training rows.
    """

    def __init__(self, reference: torch.Tensor, k: int, center: float, scale: float) -> None:
        self.reference = reference.to(torch.float64)
        self.k = int(k)
        self.center = float(center)
        self.scale = float(scale)

    @classmethod
    def fit(cls, Z: np.ndarray, seed: int, k: int = K, max_reference: int = MAX_REFERENCE) -> DensityPrior:
        """Reference sample and calibration from the unlabeled rows ``Z`` (standardised).

        A reference row's own distance is left out of its calibration value (its ``k + 1``
        nearest, the first being itself)."""
        Z = np.asarray(Z, dtype=np.float64)
        if Z.ndim != 2 or len(Z) < k + 2:
            raise InvalidInputError(f"the density prior needs at least {k + 2} unlabeled rows, got {len(Z)}.")
        rng = np.random.RandomState(seed)
        ref_idx = rng.choice(len(Z), min(len(Z), max_reference), replace=False)
        reference = torch.from_numpy(Z[ref_idx])
        in_ref = np.zeros(len(Z), dtype=bool)
        in_ref[ref_idx] = True
        calib = np.flatnonzero(~in_ref)
        own = []
        if len(calib) > MAX_CALIBRATION:
            calib = rng.choice(calib, MAX_CALIBRATION, replace=False)
        if len(calib):
            own.append(_chunked(torch.from_numpy(Z[calib]), reference, k))
        if len(calib) < max_reference:  # few rows outside the reference: its rows, leaving themselves out
            float32 = reference32(reference)
            own.append(torch.cat([log_knn_distance(reference[s:s + _CHUNK], reference, k, self_offset=s,
                                                   float32=float32) for s in range(0, len(reference), _CHUNK)]))
        values = torch.cat(own).numpy()
        med = float(np.median(values))
        scale = spread(values, 1e-9)
        prior = cls(reference, k, float(med), float(scale))
        prior.calibration_ = (values - med) / scale  # the unlabeled rows' own terms (not saved)
        return prior

    @classmethod
    def fit_unlabeled(cls, Z: np.ndarray, y: np.ndarray, seed: int) -> DensityPrior | None:
        """The prior SwiftHydra fits: on the unlabeled rows of ``Z`` (``y == 0``; at most
        ``MAX_REFERENCE + MAX_CALIBRATION`` of them, drawn with ``seed`` and kept in their order),
        ``None`` with fewer than ``K + 2`` unlabeled rows."""
        unlabeled = np.flatnonzero(np.asarray(y) == 0)
        if len(unlabeled) < K + 2:
            return None
        rows = unlabeled
        if len(rows) > MAX_REFERENCE + MAX_CALIBRATION:  # all the prior can use, in the rows' order
            rows = np.sort(np.random.RandomState(seed).choice(rows, MAX_REFERENCE + MAX_CALIBRATION, replace=False))
        return cls.fit(Z[rows], seed)

    def separation(self, anomalies: np.ndarray) -> float:
        """AUC of the term between known ``anomalies`` (rows) and the unlabeled rows it was fitted
        on: the share of (anomaly, unlabeled) pairs the prior orders right, ties counting half.
        NaN without anomalies."""
        if len(anomalies) == 0:
            return float("nan")
        ref = np.sort(self.calibration_)
        t = self.term(anomalies)
        below = np.searchsorted(ref, t, side="left")
        ties = np.searchsorted(ref, t, side="right") - below
        return float(np.mean((below + 0.5 * ties) / len(ref)))

    def torch_term(self, z: torch.Tensor) -> torch.Tensor:
        """The term for rows ``z`` (B, d), differentiable, float64 (B,)."""
        ref = self.reference.to(z.device)
        return (log_knn_distance(z, ref, self.k) - self.center) / self.scale

    def term(self, Z: np.ndarray | torch.Tensor) -> np.ndarray:
        """The term for many rows, in blocks (numpy float64)."""
        z = torch.as_tensor(np.asarray(Z) if not isinstance(Z, torch.Tensor) else Z)
        with torch.no_grad():
            logd = _chunked(z, self.reference, self.k)
        return ((logd - self.center) / self.scale).numpy()

    # ----------------------------------------------------------------- persistence
    def get_config(self) -> dict:
        return {"k": self.k, "center": self.center, "scale": self.scale}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"reference": self.reference}

    @classmethod
    def from_state(cls, config: dict, tensors: dict[str, torch.Tensor]) -> DensityPrior:
        ref = tensors["reference"]
        k = int(config["k"])
        if ref.ndim != 2 or not 1 <= k <= ref.shape[0]:
            raise ValueError("density prior: reference rows and k do not fit")
        scale = float(config["scale"])
        if not (np.isfinite(scale) and scale > 0 and np.isfinite(float(config["center"]))):
            raise ValueError("density prior: non-finite or non-positive calibration")
        return cls(ref, k, float(config["center"]), scale)


def prior_part(term, scale: float, tail_scale: float = 0.0, tail_from: float = float("inf")):
    """The prior's part of SwiftHydra's score from its term ``t`` (numpy array or torch tensor):
    ``scale * t + tail_scale * max(t - tail_from, 0)`` (docs/design.md §10.1). Beyond
    ``tail_from``, the largest term of an unlabeled training row, a row is farther from the
    training data than any row the networks learned from, and the prior counts with the rule's
    full weight. With ``tail_scale=0`` (``prior_weight`` a number, or the full weight already) it
    is ``scale * t``."""
    part = scale * term
    if tail_scale > 0:
        part = part + tail_scale * (term - tail_from).clip(min=0.0)
    return part


def spread(values: np.ndarray, floor: float) -> float:
    """Interquartile range of ``values``; their standard deviation when that is not above
    ``floor``, and 1 when neither is."""
    q1, q3 = np.percentile(values, [25, 75])
    if np.isfinite(q3 - q1) and q3 - q1 > floor:
        return float(q3 - q1)
    std = float(np.std(values))
    return std if std > floor else 1.0


def _chunked(z: torch.Tensor, reference: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`log_knn_distance` in blocks of rows (float64, on the reference's device). On CPU
    the blocks are spread over ``torch.get_num_threads()`` Python threads, each running its ops on
    one intra-op thread (torch and numpy release the GIL inside ops): the candidate search's
    ``argpartition`` has no intra-op threads of its own (docs/benchmarks.md §10.14). Each block's
    values do not depend on the thread that computes it."""
    starts = range(0, len(z), _CHUNK)
    float32 = reference32(reference)

    def block(s: int) -> torch.Tensor:
        with torch.no_grad():  # grad mode is per thread
            return log_knn_distance(z[s:s + _CHUNK].to(reference.device), reference, k, float32=float32).cpu()

    threads = torch.get_num_threads()
    workers = 1 if reference.device.type != "cpu" else max(1, min(threads, len(starts)))
    if workers == 1:
        out = [block(s) for s in starts]
    else:
        from concurrent.futures import ThreadPoolExecutor

        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="swifthydra-prior") as pool:
                out = list(pool.map(block, starts))
        finally:
            torch.set_num_threads(threads)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
