"""Reward of the latent-space agent: diversity, deception and the label-noise guard.

The agent proposes a candidate anomaly ``x̂`` (a decoded latent point). Its reward is

    r(x̂) = λ·γ^e · ΔH(x̂) + (1 − γ^e) · (−log W(x̂)) − penalty · violation(x̂)

with ``e`` the episode index of the self-reinforcing loop (docs/design.md §7):

* ``ΔH(x̂)`` — **diversity**: how much the entropy of the anomaly set ``A`` (real plus generated so
  far) grows when ``x̂`` joins it. Estimated with the Kozachenko–Leonenko k-nearest-neighbour
  estimator, exactly (see :class:`EntropyGain`); ``estimator="proxy"`` uses the cheap log distance
  from ``x̂`` to its k-th nearest anomaly instead.
* ``−log W(x̂)`` — **deception**: large when the current detector's anomaly probability ``W(x̂)``
  is small, i.e. the detector misses ``x̂``.
  ``deception_mode="boundary"`` replaces it by :func:`boundary_deception`, a bump centred on
  the detector's decision boundary: it rewards candidates the detector is unsure about, not
  those it scores deep among normal rows (labelled anomalies there are label noise).
* ``γ^e`` moves the weight from diversity (early episodes) to deception (late episodes).
* ``violation(x̂) ∈ {0, 1}`` — **label-noise guard**: a candidate whose k-th nearest *normal*
  row is closer than a data-driven margin (see :func:`normal_margin`) sits inside dense normal data;
  labelled 1 it would teach the detector the wrong thing (docs/design.md §7.4). It loses ``penalty`` in
  the reward (optionally on a linear ramp, :func:`guard_violation`) and is flagged in the
  ``accepted`` mask so the loop can drop it at selection time.

All distances are Euclidean in the space the caller passes (``SwiftHydra`` passes its standardised,
power-transformed rows: docs/design.md §7). Every function takes and returns
:class:`torch.Tensor` (numpy input is converted), works on CPU and CUDA, is vectorised with chunked
``torch.cdist``, and guards ``log``/division so that the outputs stay finite for duplicated, huge
or non-finite inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy.special import digamma

from swifthydra.exceptions import InvalidInputError

__all__ = [
    "EntropyGain",
    "HydraReward",
    "boundary_deception",
    "combine_reward",
    "deception",
    "entropy_gain",
    "guard_violation",
    "kl_entropy",
    "knn_distances",
    "normal_margin",
    "reward_weights",
    "select_top",
]

# Distances are clamped into [MIN_DIST, MAX_DIST] before taking logs: duplicates give 0 and
# float32 overflow gives inf, and neither may turn into -inf/+inf/NaN rewards.
MIN_DIST = 1e-8
MAX_DIST = 1e15


def _as_tensor(x: Any, *, name: str, device: torch.device | None = None) -> torch.Tensor:
    """Return ``x`` as a 2-D float32 tensor (numpy and nested lists are converted)."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2:
        raise InvalidInputError(
            f"{name} must be 2-D (n_rows, n_features), got shape {tuple(x.shape)}."
        )
    if not x.is_floating_point():
        x = x.float()
    if device is not None:
        x = x.to(device)
    return x


def _euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact pairwise Euclidean distances (no matmul trick: duplicates give exactly 0)."""
    d = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")
    return torch.nan_to_num(d, nan=MAX_DIST, posinf=MAX_DIST).clamp_(max=MAX_DIST)


def knn_distances(
    queries: Any,
    reference: Any,
    k: int,
    *,
    exclude_self: bool = False,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Distances from each query row to its ``k`` nearest reference rows.

    Parameters
    ----------
    queries : tensor of shape (Q, d)
    reference : tensor of shape (R, d)
    k : int
        Number of neighbours; at most ``R`` (``R - 1`` with ``exclude_self``).
    exclude_self : bool
        ``queries`` *is* ``reference`` (same rows, same order): row ``i`` is not its own neighbour.
    chunk_size : int
        Queries processed per ``cdist`` call, to bound memory at ``chunk_size * R`` floats.

    Returns
    -------
    tensor of shape (Q, k)
        Sorted ascending; column ``k - 1`` is the k-th nearest-neighbour distance.
    """
    q = _as_tensor(queries, name="queries")
    r = _as_tensor(reference, name="reference", device=q.device).to(q.dtype)
    if q.shape[1] != r.shape[1]:
        raise InvalidInputError(
            f"queries have {q.shape[1]} features but reference has {r.shape[1]}."
        )
    available = r.shape[0] - (1 if exclude_self else 0)
    if not 1 <= k <= available:
        raise InvalidInputError(f"k={k} neighbours requested but only {available} reference rows.")
    if exclude_self and q.shape[0] != r.shape[0]:
        raise InvalidInputError("exclude_self needs queries and reference to be the same rows.")
    out = []
    for start in range(0, q.shape[0], chunk_size):
        d = _euclidean(q[start : start + chunk_size], r)  # (c, R)
        if exclude_self:
            rows = torch.arange(d.shape[0], device=d.device)
            d[rows, rows + start] = float("inf")
        out.append(torch.topk(d, k, dim=1, largest=False, sorted=True).values)
    if not out:
        return q.new_zeros((0, k))
    return torch.cat(out, dim=0)


def _log_unit_ball_volume(d: int) -> float:
    return (d / 2.0) * math.log(math.pi) - math.lgamma(d / 2.0 + 1.0)


def kl_entropy(points: Any, k: int = 3) -> float:
    """Kozachenko–Leonenko differential-entropy estimate of a point set (nats).

    ``H = ψ(N) − ψ(k) + log V_d + (d / N) Σ_i log ε_i`` with ``ε_i`` the distance from point ``i``
    to its k-th nearest other point and ``V_d`` the volume of the unit d-ball. Used for logging
    the diversity of the anomaly set and as the reference that :class:`EntropyGain` must match.
    """
    p = _as_tensor(points, name="points").double()
    n, d = p.shape
    k = min(k, n - 1)
    if k < 1:
        raise InvalidInputError(f"kl_entropy needs at least 2 points, got {n}.")
    eps = knn_distances(p, p, k, exclude_self=True)[:, -1].clamp(MIN_DIST, MAX_DIST)
    return float(
        digamma(n) - digamma(k) + _log_unit_ball_volume(d) + d * torch.log(eps).mean().item()
    )


class EntropyGain:
    """Entropy gain ΔH of an anomaly set when one candidate joins it (vectorised over candidates).

    ``estimator="kl"`` (default) is the *exact* change of the Kozachenko–Leonenko estimate
    (:func:`kl_entropy`) from ``A`` (``N`` points) to ``A ∪ {x̂}``, with the same ``k`` in both::

        ΔH = ψ(N+1) − ψ(N) + d/(N+1) · [Σ_i log ε'_i + log ε_x̂] − d/N · Σ_i log ε_i

    where ``ε_i`` is anomaly ``i``'s k-th neighbour distance before, ``ε'_i`` after ``x̂`` joined
    (``ε'_i = max(ε_i^(k−1), ‖a_i − x̂‖)`` if ``x̂`` is closer than ``ε_i``, else ``ε_i``) and ``ε_x̂``
    is the candidate's own k-th neighbour distance in ``A``. The neighbour distances of ``A`` are
    computed once here, so each call costs one ``cdist`` of candidates against ``A``. Every
    candidate is scored against the same set ``A`` (not sequentially against each other).

    ``estimator="proxy"`` uses ``log ε_x̂ − mean_i log ε_i``: the log ratio of the candidate's k-th
    neighbour radius to the typical one in ``A``.

    With ``normalize=True`` (default) the ``kl`` gain is multiplied by ``(N + 1) / d``: the gain
    per dimension that one point contributes. This removes the ``d / N`` factor, so the diversity
    term keeps a scale comparable with the deception term whatever the dimension and the size of
    the anomaly set; to first order it equals the proxy. The ranking of candidates is unchanged.

    With fewer than 2 anomalies the ``kl`` estimate is undefined: the proxy without centring
    (``log ε_x̂``, with ``N = 1``) is used; with no anomaly at all the gain is 0.
    """

    def __init__(
        self,
        anomalies: Any,
        k: int = 5,
        *,
        estimator: str = "kl",
        normalize: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        if estimator not in ("kl", "proxy"):
            raise InvalidInputError(f"estimator must be 'kl' or 'proxy', got {estimator!r}.")
        if k < 1:
            raise InvalidInputError(f"k must be >= 1, got {k}.")
        a = _as_tensor(anomalies, name="anomalies", device=device)
        if not torch.isfinite(a).all():
            raise InvalidInputError("anomalies contain NaN or infinite values.")
        self.anomalies = a
        self.estimator = estimator
        self.normalize = normalize
        self.n, self.d = a.shape
        self.k = min(k, self.n - 1) if self.n >= 2 else min(k, self.n)
        if self.n >= 2:
            nn = knn_distances(a, a, self.k, exclude_self=True).clamp(MIN_DIST, MAX_DIST)
            self._eps_k = nn[:, -1]  # (N,)
            self._eps_km1 = nn[:, -2] if self.k >= 2 else torch.zeros_like(self._eps_k)
            self._log_eps_sum = torch.log(self._eps_k).sum()
        self._psi_diff = float(digamma(self.n + 1) - digamma(self.n)) if self.n >= 1 else 0.0

    @property
    def typical_radius(self) -> float:
        """Median k-th neighbour distance within the anomaly set (0 below 2 points)."""
        return float(self._eps_k.median()) if self.n >= 2 else 0.0

    def __call__(self, candidates: Any) -> torch.Tensor:
        """Entropy gain of each candidate row; tensor of shape (B,)."""
        x = _as_tensor(candidates, name="candidates", device=self.anomalies.device)
        if x.shape[1] != self.d and self.n > 0:
            raise InvalidInputError(
                f"candidates have {x.shape[1]} features but the anomaly set has {self.d}."
            )
        x = torch.nan_to_num(x.to(self.anomalies.dtype), nan=0.0, posinf=MAX_DIST, neginf=-MAX_DIST)
        if self.n == 0:
            return x.new_zeros(x.shape[0])
        dist = _euclidean(x, self.anomalies).clamp_(MIN_DIST, MAX_DIST)  # (B, N)
        eps_x = torch.topk(dist, self.k, dim=1, largest=False, sorted=True).values[:, -1]
        log_eps_x = torch.log(eps_x)
        if self.n < 2:
            return log_eps_x
        if self.estimator == "proxy":
            return log_eps_x - self._log_eps_sum / self.n
        n, d = self.n, self.d
        # Anomalies whose k-th neighbour is farther than the candidate get a new k-th neighbour.
        new_eps = torch.where(
            dist < self._eps_k, torch.maximum(self._eps_km1, dist), self._eps_k
        ).clamp_(MIN_DIST, MAX_DIST)  # (B, N)
        sum_new = torch.log(new_eps).sum(dim=1) + log_eps_x  # (B,)
        if self.normalize:
            # (N + 1)/d · ΔH, arranged to avoid multiplying large sums by d.
            return (n + 1) / d * self._psi_diff + sum_new - (n + 1) / n * self._log_eps_sum
        return self._psi_diff + d / (n + 1) * sum_new - d / n * self._log_eps_sum


def entropy_gain(
    candidates: Any,
    anomalies: Any,
    k: int = 5,
    *,
    estimator: str = "kl",
    normalize: bool = True,
) -> torch.Tensor:
    """Entropy gain of the anomaly set for each candidate; see :class:`EntropyGain`.

    Build an :class:`EntropyGain` once and call it repeatedly when the anomaly set is fixed.
    """
    a = _as_tensor(anomalies, name="anomalies")
    return EntropyGain(a, k, estimator=estimator, normalize=normalize)(candidates)


def deception(w: Any, eps: float = 1e-6) -> torch.Tensor:
    """Deception term ``−log W`` from detector anomaly probabilities ``W`` (shape (B,)).

    ``W`` is clamped into ``[eps, 1]`` so the term lies in ``[0, −log eps]``; NaN counts as a
    detected anomaly (``W = 1``, no reward).
    """
    w = w if isinstance(w, torch.Tensor) else torch.as_tensor(np.asarray(w, dtype=np.float32))
    w = torch.nan_to_num(w.float(), nan=1.0).reshape(-1)
    return -torch.log(w.clamp(min=eps, max=1.0))


def boundary_deception(
    w: Any, center: float = 0.0, width: float = 1.0, scale: float = 2.0, eps: float = 1e-6
) -> torch.Tensor:
    """Boundary deception term: ``scale · exp(−½ ((logit W − center) / width)²)`` (shape (B,)).

    Largest (``scale``) for candidates the detector scores at its decision boundary ``center``
    (a logit, e.g. the detector's threshold), falling to 0 both for candidates it already flags
    with confidence and for ones it scores deep among normal rows. ``−log W`` instead keeps
    rewarding the latter, which, labelled anomalies, are label noise. ``W`` is clamped into
    ``[eps, 1 − eps]``; NaN gives 0.
    """
    if not width > 0.0:
        raise InvalidInputError(f"width must be > 0, got {width!r}.")
    w = w if isinstance(w, torch.Tensor) else torch.as_tensor(np.asarray(w, dtype=np.float32))
    w = w.float().reshape(-1)
    nan = torch.isnan(w)
    w = torch.nan_to_num(w, nan=0.5).clamp(min=eps, max=1.0 - eps)
    z = (torch.log(w) - torch.log1p(-w) - float(center)) / float(width)
    out = float(scale) * torch.exp(-0.5 * z * z)
    return torch.where(nan, torch.zeros_like(out), out)


def reward_weights(episode: int, lam: float = 1.0, gamma: float = 0.9) -> tuple[float, float]:
    """Weights ``(λ·γ^e, 1 − γ^e)`` of the diversity and the deception term in episode ``e``."""
    if episode < 0:
        raise InvalidInputError(f"episode must be >= 0, got {episode}.")
    if not 0.0 < gamma < 1.0:
        raise InvalidInputError(f"gamma must be in (0, 1), got {gamma}.")
    g = gamma**episode
    return lam * g, 1.0 - g


def combine_reward(
    entropy_gain: torch.Tensor,
    deception: torch.Tensor,
    episode: int,
    lam: float = 1.0,
    gamma: float = 0.9,
) -> torch.Tensor:
    """``λ·γ^e·ΔH + (1 − γ^e)·(−log W)``, elementwise."""
    w_div, w_dec = reward_weights(episode, lam, gamma)
    return w_div * entropy_gain + w_dec * deception


def normal_margin(
    normals: Any,
    anomalies: Any = None,
    k: int = 5,
    *,
    normal_quantile: float = 0.5,
    anomaly_quantile: float = 0.1,
    max_rows: int = 2048,
    generator: torch.Generator | None = None,
) -> float:
    """Data-driven distance margin of the label-noise guard.

    A candidate whose k-th nearest normal row is closer than the margin is "inside normal data".
    The margin is the ``normal_quantile`` (default: median) of the normal rows' own
    leave-one-out k-th neighbour distances among normals — a candidate closer than that sits
    in normal data at least as dense as a typical normal row. When known ``anomalies`` are given,
    the margin is lowered to the ``anomaly_quantile`` of *their* k-th neighbour distances to the
    normals if that is smaller, so that the guard never rejects the region where most real
    anomalies live.

    At most ``max_rows`` normals (drawn with ``generator``) serve as the leave-one-out sample, so
    the cost stays ``O(max_rows · n_normals)``.
    """
    nrm = _as_tensor(normals, name="normals")
    if nrm.shape[0] < 2:
        raise InvalidInputError(f"normal_margin needs at least 2 normal rows, got {nrm.shape[0]}.")
    for q, nm in ((normal_quantile, "normal_quantile"), (anomaly_quantile, "anomaly_quantile")):
        if not 0.0 <= q <= 1.0:
            raise InvalidInputError(f"{nm} must be in [0, 1], got {q}.")
    k = min(k, nrm.shape[0] - 1)
    if nrm.shape[0] > max_rows:
        idx = torch.randperm(nrm.shape[0], generator=generator)[:max_rows].to(nrm.device)
        sample = nrm[idx]
        # leave-one-out by taking the (k+1)-th neighbour: the sampled row itself is at distance 0.
        own = knn_distances(sample, nrm, k + 1)[:, -1]
    else:
        own = knn_distances(nrm, nrm, k, exclude_self=True)[:, -1]
    margin = torch.quantile(own.double(), normal_quantile).item()
    if anomalies is not None:
        a = _as_tensor(anomalies, name="anomalies", device=nrm.device)
        if a.shape[0] > 0:
            to_normal = knn_distances(a, nrm, k)[:, -1]
            margin = min(margin, torch.quantile(to_normal.double(), anomaly_quantile).item())
    return float(margin)


def guard_violation(
    normal_distance: torch.Tensor, margin: float, softness: float = 0.0
) -> torch.Tensor:
    """How far inside normal data a candidate is, in ``[0, 1]``; 0 means accepted.

    ``softness=0`` (default) is a step: 1 for ``dist < margin``, else 0. k-NN distances
    concentrate in high dimension (a point in the densest normal region is often only ~10 %
    closer than the margin), so a linear ramp from the margin would barely penalise it.
    ``softness > 0`` ramps linearly, ``clamp((margin − dist) / (softness · margin), 0, 1)``:
    full violation once ``softness · margin`` inside.
    """
    if margin <= 0.0:
        return torch.zeros_like(normal_distance)
    if softness <= 0.0:
        return (normal_distance < margin).to(normal_distance.dtype)
    return ((margin - normal_distance) / (softness * margin)).clamp(0.0, 1.0)


class HydraReward:
    """The Swift Hydra reward as a callable for :class:`~swifthydra.rl.env.LatentEnv`.

    Parameters
    ----------
    anomalies : tensor of shape (N, d)
        Current anomaly set (known anomalies plus generated ones kept so far).
    normals : tensor of shape (M, d), optional
        Unlabeled, mostly normal rows for the label-noise guard; ``None`` disables the guard.
    detector : callable, optional
        ``detector(x) -> W`` with ``x`` a (B, d) tensor and ``W`` anomaly probabilities of shape
        (B,) in (0, 1). Needed only when the deception weight ``1 − γ^e`` is positive.
    episode : int
        Episode index ``e`` of the self-reinforcing loop.
    lam, gamma : float
        ``λ`` scales the diversity term; ``γ^e`` shifts weight from diversity to deception.
    k : int
        Neighbours for the entropy estimate, the guard distance and the margin.
    estimator : {"kl", "proxy"}
        Entropy-gain estimator, see :class:`EntropyGain`.
    normalize_entropy : bool
        Scale the ``kl`` gain by ``(N + 1) / d`` (see :class:`EntropyGain`).
    margin : float or "auto"
        Guard margin; ``"auto"`` computes :func:`normal_margin` from ``normals`` and the
        ``anomalies`` given here (pass the real known anomalies; :meth:`update` never moves it).
    normal_quantile, anomaly_quantile : float
        Passed to :func:`normal_margin`.
    penalty : float
        Reward subtracted at full violation (see :func:`guard_violation`).
    guard_softness : float
        0: every candidate inside the margin loses ``penalty``; > 0: linear ramp
        (:func:`guard_violation`).
    w_eps : float
        Lower clamp of ``W`` in the deception term.
    deception_mode : {"log", "boundary"}
        ``"log"``: the deception term is ``−log W`` (:func:`deception`). ``"boundary"``:
        :func:`boundary_deception`, largest for candidates the detector scores at the logit
        ``boundary_center`` (±``boundary_width``), worth ``boundary_scale`` there.
    boundary_center, boundary_width, boundary_scale : float
        Shape of the ``"boundary"`` term; :meth:`update` moves the centre and width with the
        detector (e.g. its threshold and the spread of its training scores).
    invalid_reward : float
        Reward of a candidate with non-finite coordinates (never accepted).
    seed : int
        Seeds the row subsample of :func:`normal_margin`.
    """

    def __init__(
        self,
        anomalies: Any,
        normals: Any = None,
        detector: Callable[[torch.Tensor], Any] | None = None,
        *,
        episode: int = 0,
        lam: float = 1.0,
        gamma: float = 0.9,
        k: int = 5,
        estimator: str = "kl",
        normalize_entropy: bool = True,
        margin: float | str = "auto",
        normal_quantile: float = 0.5,
        anomaly_quantile: float = 0.1,
        penalty: float = 10.0,
        guard_softness: float = 0.0,
        w_eps: float = 1e-6,
        invalid_reward: float = -20.0,
        seed: int = 0,
        deception_mode: str = "log",
        boundary_center: float = 0.0,
        boundary_width: float = 1.0,
        boundary_scale: float = 2.0,
    ) -> None:
        if deception_mode not in ("log", "boundary"):
            raise InvalidInputError(
                f"deception_mode must be 'log' or 'boundary', got {deception_mode!r}."
            )
        if not boundary_width > 0.0:
            raise InvalidInputError(f"boundary_width must be > 0, got {boundary_width!r}.")
        self.deception_mode = deception_mode
        self.boundary_center = float(boundary_center)
        self.boundary_width = float(boundary_width)
        self.boundary_scale = float(boundary_scale)
        self.k = k
        self.lam = lam
        self.gamma = gamma
        self.estimator = estimator
        self.normalize_entropy = normalize_entropy
        self.normal_quantile = normal_quantile
        self.anomaly_quantile = anomaly_quantile
        self.penalty = penalty
        self.guard_softness = guard_softness
        self.w_eps = w_eps
        self.invalid_reward = invalid_reward
        self.seed = seed
        self.detector = detector
        if margin != "auto" and not (isinstance(margin, (int, float)) and margin >= 0):
            raise InvalidInputError(f"margin must be 'auto' or a number >= 0, got {margin!r}.")
        self._margin_arg = margin
        reward_weights(episode, lam, gamma)  # validates episode and gamma
        self.episode = episode
        self.anomalies = _as_tensor(anomalies, name="anomalies")
        self._margin_anomalies = self.anomalies
        self._gain = EntropyGain(
            self.anomalies, k, estimator=estimator, normalize=normalize_entropy
        )
        self.normals = (
            None
            if normals is None
            else _as_tensor(normals, name="normals", device=self.anomalies.device)
        )
        self._compute_margin()

    def _compute_margin(self) -> None:
        if self.normals is None or self.normals.shape[0] == 0:
            self.margin = 0.0
        elif self._margin_arg == "auto":
            ref = self._margin_anomalies
            self.margin = normal_margin(
                self.normals,
                ref if ref.shape[0] else None,
                self.k,
                normal_quantile=self.normal_quantile,
                anomaly_quantile=self.anomaly_quantile,
                generator=torch.Generator().manual_seed(self.seed),
            )
        else:
            self.margin = float(self._margin_arg)

    def update(
        self,
        *,
        anomalies: Any = None,
        detector: Callable[[torch.Tensor], Any] | None = None,
        episode: int | None = None,
        normals: Any = None,
        boundary_center: float | None = None,
        boundary_width: float | None = None,
    ) -> HydraReward:
        """Move to the next episode: new anomaly set, detector, episode index or normals
        (and, for ``deception_mode="boundary"``, a new boundary centre or width).

        The guard margin keeps using the anomalies given at construction (the real, known ones):
        generated anomalies joining the set never move it. New ``normals`` recompute it.
        Returns self.
        """
        if episode is not None:
            reward_weights(episode, self.lam, self.gamma)
            self.episode = episode
        if detector is not None:
            self.detector = detector
        if boundary_center is not None:
            self.boundary_center = float(boundary_center)
        if boundary_width is not None:
            if not boundary_width > 0.0:
                raise InvalidInputError(f"boundary_width must be > 0, got {boundary_width!r}.")
            self.boundary_width = float(boundary_width)
        if anomalies is not None:
            self.anomalies = _as_tensor(anomalies, name="anomalies")
            self._gain = EntropyGain(
                self.anomalies, self.k, estimator=self.estimator, normalize=self.normalize_entropy
            )
        if normals is not None:
            self.normals = _as_tensor(normals, name="normals", device=self.anomalies.device)
            self._compute_margin()
        return self

    @property
    def anomaly_radius(self) -> float:
        """Median k-th neighbour distance within the current anomaly set (0 below 2 points)."""
        return self._gain.typical_radius

    @property
    def weights(self) -> tuple[float, float]:
        """Current ``(diversity, deception)`` weights."""
        return reward_weights(self.episode, self.lam, self.gamma)

    @torch.no_grad()
    def terms(self, x: Any) -> dict[str, torch.Tensor]:
        """Every term of the reward for candidate rows ``x`` (B, d), by name.

        Keys: ``entropy_gain``, ``w`` (detector probability, NaN when not evaluated),
        ``deception``, ``normal_distance`` (k-th nearest normal; inf without a guard),
        ``violation``, ``accepted`` (bool), ``valid`` (finite row, bool), ``reward``.
        """
        x = _as_tensor(x, name="x", device=self.anomalies.device)
        valid = torch.isfinite(x).all(dim=1)
        xs = torch.where(valid[:, None], x, torch.zeros_like(x))
        w_div, w_dec = self.weights
        gain = self._gain(xs)
        if w_dec > 0.0:
            if self.detector is None:
                raise InvalidInputError(
                    f"episode {self.episode} gives the deception term weight {w_dec:.3g} but no "
                    "detector was passed: pass detector=callable returning W(x)."
                )
            w = self.detector(xs)
            w = w if isinstance(w, torch.Tensor) else torch.as_tensor(np.asarray(w))
            w = w.to(x.device).float().reshape(-1)
            if self.deception_mode == "boundary":
                dec = boundary_deception(
                    w, self.boundary_center, self.boundary_width, self.boundary_scale, self.w_eps
                )
            else:
                dec = deception(w, self.w_eps)
        else:
            w = torch.full_like(gain, float("nan"))
            dec = torch.zeros_like(gain)
        reward = w_div * gain + w_dec * dec
        if self.normals is not None and self.normals.shape[0] > 0:
            kk = min(self.k, self.normals.shape[0])
            nd = knn_distances(xs, self.normals, kk)[:, -1]
            violation = guard_violation(nd, self.margin, self.guard_softness)
            accepted = nd >= self.margin
        else:
            nd = torch.full_like(gain, float("inf"))
            violation = torch.zeros_like(gain)
            accepted = torch.ones_like(gain, dtype=torch.bool)
        reward = reward - self.penalty * violation
        reward = torch.where(valid, reward, torch.full_like(reward, self.invalid_reward))
        reward = torch.nan_to_num(reward, nan=self.invalid_reward)
        return {
            "entropy_gain": gain,
            "w": w,
            "deception": dec,
            "normal_distance": nd,
            "violation": violation,
            "accepted": accepted & valid,
            "valid": valid,
            "reward": reward,
        }

    def __call__(self, x: Any) -> torch.Tensor:
        """Reward of each candidate row; tensor of shape (B,)."""
        return self.terms(x)["reward"]


def select_top(
    reward: Any,
    top_l: int,
    accepted: Any = None,
    *,
    x: Any = None,
    min_distance: float = 0.0,
) -> torch.Tensor:
    """Indices of the ``top_l`` highest rewards among accepted candidates, best first.

    ``accepted`` (bool, shape (N,)) is the guard's mask from :meth:`HydraReward.terms`; rejected
    and non-finite candidates are never selected, so fewer than ``top_l`` indices may come back.

    With ``x`` (N, d) and ``min_distance > 0`` the selection is greedy non-maximum suppression:
    a candidate is skipped when it lies within ``min_distance`` of one already selected, so the
    kept set cannot collapse onto one high-reward spot (the entropy gain scores every candidate
    against the same anomaly set, not against each other). A natural radius is a fraction of
    :attr:`HydraReward.anomaly_radius`.
    """
    r = reward if isinstance(reward, torch.Tensor) else torch.as_tensor(np.asarray(reward))
    r = r.reshape(-1).double()
    if top_l < 0:
        raise InvalidInputError(f"top_l must be >= 0, got {top_l}.")
    keep = torch.isfinite(r)
    if accepted is not None:
        acc = torch.as_tensor(accepted, device=r.device).reshape(-1).bool()
        if acc.shape != r.shape:
            raise InvalidInputError(
                f"accepted has {acc.shape[0]} entries for {r.shape[0]} rewards."
            )
        keep &= acc
    idx = torch.nonzero(keep).reshape(-1)
    ranked = idx[torch.argsort(r[idx], descending=True, stable=True)]
    if min_distance <= 0.0 or ranked.numel() == 0:
        return ranked[:top_l]
    if x is None:
        raise InvalidInputError("min_distance > 0 needs the candidates x.")
    xt = _as_tensor(x, name="x", device=r.device)
    if xt.shape[0] != r.shape[0]:
        raise InvalidInputError(f"x has {xt.shape[0]} rows for {r.shape[0]} rewards.")
    xr = torch.nan_to_num(xt[ranked].double())
    chosen: list[int] = []
    free = torch.ones(ranked.shape[0], dtype=torch.bool, device=r.device)
    for pos in range(ranked.shape[0]):  # at most top_l passes do any work
        if len(chosen) >= top_l:
            break
        if not free[pos]:
            continue
        chosen.append(pos)
        free &= _euclidean(xr[pos : pos + 1], xr)[0] >= min_distance
    return ranked[torch.as_tensor(chosen, dtype=torch.long, device=r.device)]
