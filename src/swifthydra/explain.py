"""Which input columns push a row's anomaly score up: per-row attributions for a fitted model.

Three methods, all relative to a *baseline* row (by default the training mean; ``swifthydra
explain`` uses a typical training row: each numeric column at its median, each categorical
column at its most frequent category, :meth:`TablePreprocessor.baseline_`):

- ``"occlusion"`` (default): the contribution of a column is how much the score drops when that
  column alone is set to its baseline value, ``s(x) - s(x with column j := baseline_j)``. It is
  exact for the model as it scores (routing to experts included) and needs one extra scoring
  pass per column. A categorical column is occluded as a whole (its one-hot block).
- ``"integrated-gradients"``: gradient x input on the standardised features, with the gradient
  averaged along the straight path from the baseline to the row (Sundararajan et al., 2017),
  ``Σ_{i ∈ j} (z_i - z0_i) mean_α ∂s/∂z_i(z0 + α (z - z0))`` with ``z = (x - center_) / scale_``
  and ``z0`` the standardised baseline. The attributions add up to ``s(x) - s(baseline)`` for a
  smooth score and, unlike the plain gradient, they see effects that saturate near the row.
- ``"gradient"``: plain gradient x input at the row, ``Σ_{i ∈ j} ∂s/∂z_i(z) (z_i - z0_i)``: the
  first-order Taylor estimate of the occlusion drop, from one backward pass. Cheap but misleading
  where the score saturates (a row far out in a flat, confidently anomalous region).

For a MoME the gradient flows through the expert each point is routed to (routing itself is
piecewise constant, so the gradient methods do not see its jumps; occlusion does).

Contributions are in the units of the score (a logit): positive values push the row towards
"anomaly". They are local explanations of this model's score, not causal statements about the data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from swifthydra.exceptions import InvalidInputError

METHODS = ("occlusion", "integrated-gradients", "gradient")


def _groups(n_features: int, groups) -> list[tuple[str, list[int]]]:
    if groups is None:
        return [(f"x{i}", [i]) for i in range(n_features)]
    out = []
    for name, idx in groups:
        idx = [int(i) for i in idx]
        if not idx or min(idx) < 0 or max(idx) >= n_features:
            raise InvalidInputError(f"feature group {name!r} has indices outside 0..{n_features - 1}.")
        out.append((str(name), idx))
    return out


def attribute(
    model: Any,
    X: Any,
    *,
    baseline: Any = None,
    groups: list[tuple[str, list[int]]] | None = None,
    method: str = "occlusion",
    steps: int = 32,
) -> np.ndarray:
    """Contribution of each feature group to each row's score.

    Parameters
    ----------
    model : SwiftHydra (fitted)
        Any object with ``decision_function`` works for ``"occlusion"``; the gradient methods need a
        fitted :class:`~swifthydra.hydra.SwiftHydra`.
    X : array-like of shape (n_rows, n_features)
        Rows to explain (preprocessed features, as passed to ``decision_function``).
    baseline : array-like of shape (n_features,), optional
        The reference row; default: the training mean ``model.center_``.
    groups : list of (name, feature indices), optional
        Columns to attribute to (e.g. :attr:`TablePreprocessor.feature_groups_`, which puts a
        categorical column's one-hot block in one group); default: one group per feature.
    method : {"occlusion", "integrated-gradients", "gradient"}
    steps : int
        Points on the path for ``"integrated-gradients"`` (midpoint rule).

    Returns
    -------
    ndarray of shape (n_rows, n_groups)
        Positive = the group pushes the score up (towards "anomaly").
    """
    from swifthydra._validation import check_X

    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {list(METHODS)}, got {method!r}.")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InvalidInputError(f"steps must be a positive integer, got {steps!r}.")
    n_features = getattr(model, "n_features_in_", None)
    X = check_X(X, name="X", n_features=n_features, min_rows=0)
    groups = _groups(X.shape[1], groups)
    if baseline is None:
        if not hasattr(model, "center_"):
            raise InvalidInputError("pass a baseline row: this model has no training mean (center_).")
        baseline = model.center_
    baseline = np.asarray(baseline, dtype=np.float64).reshape(-1)
    if baseline.shape != (X.shape[1],) or not np.isfinite(baseline).all():
        raise InvalidInputError(f"baseline must be {X.shape[1]} finite numbers, got shape {baseline.shape}.")
    if X.shape[0] == 0:
        return np.zeros((0, len(groups)))
    if method == "occlusion":
        return _occlusion(model, X, baseline, groups)
    alphas = (np.arange(steps) + 0.5) / steps if method == "integrated-gradients" else np.ones(1)
    block = max(1, 65536 // len(alphas))  # path points per backward pass stay bounded
    return np.vstack([_gradient(model, X[i : i + block], baseline, groups, alphas) for i in range(0, len(X), block)])


def _occlusion(model, X, baseline, groups) -> np.ndarray:
    n = X.shape[0]
    stacked = np.repeat(X[None], len(groups) + 1, axis=0)  # (G + 1, n, F); slice 0 untouched
    for g, (_, idx) in enumerate(groups, start=1):
        stacked[g][:, idx] = baseline[idx]
    scores = np.asarray(model.decision_function(stacked.reshape(-1, X.shape[1])), dtype=np.float64)
    scores = scores.reshape(len(groups) + 1, n)
    return (scores[0][None] - scores[1:]).T  # (n, G)


def _gradient(model, X, baseline, groups, alphas: np.ndarray) -> np.ndarray:
    import torch

    from swifthydra.nn.moe import MoMENet

    if not (hasattr(model, "center_") and hasattr(model, "detector_")):
        raise InvalidInputError("the gradient methods need a fitted SwiftHydra.")
    detector = model.scorer_
    net = detector.model_
    device = next(net.parameters()).device
    z1 = torch.tensor(model._scale(X), device=device)  # (n, F) float32, the rows
    z0 = torch.tensor(model._scale(baseline[None]), device=device)  # (1, F), the baseline
    a = torch.tensor(alphas, dtype=torch.float32, device=device).view(-1, 1, 1)  # (m, 1, 1)
    z = (z0 + a * (z1 - z0)).reshape(-1, z1.shape[1]).requires_grad_(True)  # (m n, F) path points
    was_training = net.training
    net.eval()
    try:
        with torch.enable_grad():
            if isinstance(net, MoMENet):
                x = net.scaler(z)
                _, index = net.route(x, sample=False)  # (n, k)
                outs = torch.stack([expert(x) for expert in net.experts], dim=1)  # (n, K)
                if index.shape[1] == 1:
                    score = outs.gather(1, index).squeeze(1)
                else:  # top-k: routing weights as scored, held fixed (no gate gradient)
                    probs, _ = net.route(x.detach(), sample=False)
                    w = probs.gather(1, index)
                    score = (outs.gather(1, index) * (w / w.sum(-1, keepdim=True))).sum(1)
            else:
                score = net(z)
            (grad,) = torch.autograd.grad(score.sum(), z)
    finally:
        net.train(was_training)
    mean_grad = grad.reshape(len(alphas), *z1.shape).mean(0)  # (n, F)
    contrib = (mean_grad * (z1 - z0)).detach().cpu().double().numpy()  # (n, F)
    if getattr(model, "prior_", None) is not None:
        contrib = contrib + _prior_gradient(model, X, baseline, alphas)
    return np.stack([contrib[:, idx].sum(1) for _, idx in groups], axis=1)


def _prior_gradient(model, X, baseline, alphas: np.ndarray) -> np.ndarray:
    """The density prior's part of the score (docs/design.md §10.1), attributed the same way but
    along the straight path in *its* space, the standardised rows: each part adds up to its own
    score difference, so the sum does too."""
    import torch

    s1 = torch.from_numpy(model.scaler_.standardise(X))  # (n, F) float64
    s0 = torch.from_numpy(model.scaler_.standardise(baseline[None]))
    a = torch.tensor(alphas, dtype=torch.float64).view(-1, 1, 1)
    s = (s0 + a * (s1 - s0)).reshape(-1, s1.shape[1]).requires_grad_(True)
    with torch.enable_grad():
        term = model._prior_part(model.prior_.torch_term(s))
        (grad,) = torch.autograd.grad(term.sum(), s)
    mean_grad = grad.reshape(len(alphas), *s1.shape).mean(0)
    return (mean_grad * (s1 - s0)).detach().numpy()


def top_contributions(
    contributions: np.ndarray, names: list[str], k: int
) -> list[list[tuple[str, float]]]:
    """For each row, its ``k`` groups with the largest contributions (largest first)."""
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :k]
    return [[(names[j], float(contributions[r, j])) for j in order[r]] for r in range(contributions.shape[0])]
