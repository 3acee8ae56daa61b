"""Statistics of the report: ranks, Friedman test, Nemenyi critical difference, Wilcoxon-Holm.

References: Demšar, "Statistical Comparisons of Classifiers over Multiple Data Sets", JMLR 2006
(Friedman test, Nemenyi post-hoc test, critical-difference diagrams); Benavoli et al., JMLR 2016
(pairwise Wilcoxon signed-rank tests with Holm's correction, as in ADBench's figures).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def average_ranks(table):
    """Average rank of each column of a (datasets x models) score table; higher score = rank 1.

    Ties get the average of the ranks they span.
    """
    ranks = table.rank(axis=1, ascending=False, method="average")
    return ranks.mean(axis=0).sort_values()


@dataclass(frozen=True)
class FriedmanResult:
    statistic: float
    p_value: float
    n_datasets: int
    n_models: int
    critical_difference: float | None  # Nemenyi CD at ``alpha``
    alpha: float


def friedman_nemenyi(table, alpha: float = 0.05) -> FriedmanResult | None:
    """Friedman test over a complete (datasets x models) table, and the Nemenyi CD.

    Returns ``None`` with fewer than 3 models or 2 datasets. The CD is
    ``q_alpha * sqrt(k (k + 1) / (6 N))`` with ``q_alpha`` the studentised range quantile
    divided by sqrt(2).
    """
    from scipy.stats import friedmanchisquare, studentized_range

    n, k = table.shape
    if k < 3 or n < 2:
        return None
    cols = [table.iloc[:, j].to_numpy(dtype=float) for j in range(k)]
    with np.errstate(all="ignore"):
        try:
            stat, p = friedmanchisquare(*cols)
        except ValueError:
            stat, p = float("nan"), float("nan")
    q = float(studentized_range.ppf(1 - alpha, k, np.inf)) / np.sqrt(2.0)
    cd = q * np.sqrt(k * (k + 1) / (6.0 * n))
    return FriedmanResult(float(stat), float(p), n, k, float(cd), alpha)


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (monotone, capped at 1)."""
    items = sorted(((p, name) for name, p in p_values.items() if np.isfinite(p)))
    m = len(items)
    out: dict[str, float] = {name: float("nan") for name in p_values}
    running = 0.0
    for i, (p, name) in enumerate(items):
        adj = min(1.0, (m - i) * p)
        running = max(running, adj)
        out[name] = running
    return out


def signed_rank_p(diff) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (zeros split).

    NaNs are dropped; 1.0 when fewer than 2 differences remain or all are zero, NaN when none.
    """
    from scipy.stats import wilcoxon

    diff = np.asarray(diff, dtype=float)
    diff = diff[np.isfinite(diff)]
    if len(diff) < 2 or np.allclose(diff, 0):
        return 1.0 if len(diff) else float("nan")
    try:
        return float(wilcoxon(diff, zero_method="zsplit").pvalue)
    except ValueError:
        return float("nan")


def wilcoxon_vs(table, reference: str) -> dict[str, float]:
    """Two-sided Wilcoxon signed-rank p-value of each model against ``reference``."""
    out = {}
    ref = table[reference].to_numpy(dtype=float)
    for col in table.columns:
        if col == reference:
            continue
        out[col] = signed_rank_p(table[col].to_numpy(dtype=float) - ref)
    return out


def cliques(avg_ranks, cd: float) -> list[list[str]]:
    """Maximal groups of consecutive models (by rank) whose rank spread is below ``cd``."""
    names = list(avg_ranks.index)
    values = avg_ranks.to_numpy(dtype=float)
    groups: list[tuple[int, int]] = []
    for i in range(len(values)):
        j = i
        while j + 1 < len(values) and values[j + 1] - values[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in groups):
            groups.append((i, j))
    return [names[a : b + 1] for a, b in groups]
