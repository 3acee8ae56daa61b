"""Pseudo-labels for the unsupervised case (no known anomaly).

Swift Hydra needs a few anomalies to start from. When none is labelled, the top-scored rows of an
unsupervised ensemble are used instead: the rank average of scikit-learn's Isolation Forest and an
ECOD score (Li et al., "ECOD: Unsupervised Outlier Detection Using Empirical Cumulative
Distribution Functions", TKDE 2022) — per feature, the negative log of the empirical tail
probability on the side the feature's skewness points to, summed over features.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import rankdata, skew


def ecod_scores(X: np.ndarray) -> np.ndarray:
    """ECOD outlier scores of the rows of ``X`` (higher = more anomalous), fitted on ``X`` itself."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    # Empirical CDFs: P(X_j <= x) and P(X_j >= x), with ties counted, as ranks / n.
    left = rankdata(X, method="max", axis=0) / n
    right = rankdata(-X, method="max", axis=0) / n
    neg_log_left = -np.log(left)
    neg_log_right = -np.log(right)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # constant columns: skewness is 0 by convention
        skewness = np.nan_to_num(skew(X, axis=0, bias=True))
    auto = np.where(skewness < 0, neg_log_left, neg_log_right)
    return np.maximum.reduce([neg_log_left.sum(1), neg_log_right.sum(1), auto.sum(1)])


def unsupervised_scores(X: np.ndarray, random_state: int | None = None) -> np.ndarray:
    """Rank average (in [0, 1]) of Isolation Forest and ECOD scores; higher = more anomalous."""
    from sklearn.ensemble import IsolationForest

    X = np.asarray(X, dtype=np.float64)
    forest = IsolationForest(n_estimators=200, random_state=random_state).fit(X)
    s_forest = -forest.score_samples(X)
    s_ecod = ecod_scores(X)
    n = X.shape[0]
    return (rankdata(s_forest) + rankdata(s_ecod)) / (2.0 * n)


def pseudo_labels(X: np.ndarray, contamination: float, random_state: int | None = None, min_count: int = 2) -> np.ndarray:
    """Label the top ``contamination`` fraction of rows (at least ``min_count``) as anomalies (1)."""
    scores = unsupervised_scores(X, random_state)
    n = X.shape[0]
    k = int(min(n - 1, max(min_count, np.ceil(contamination * n))))
    order = np.argsort(-scores, kind="stable")
    y = np.zeros(n, dtype=np.int64)
    y[order[:k]] = 1
    return y
