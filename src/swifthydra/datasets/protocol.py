"""The ADBench evaluation protocol: resampling, stratified split, scaling and weak labels.

``protocol="adbench"`` reproduces ADBench's ``DataGenerator.generator`` (semi-supervised setting,
``at_least_one_labeled=True``) step by step, for a seed ``s`` and labelled ratio ``la``:

1. a random state seeded with ``s``;
2. fewer than 1000 rows: resample with replacement up to 1000 rows (RNG re-seeded with ``s``);
3. more than 10000 rows: subsample 10000 rows without replacement (RNG re-seeded with ``s``);
4. stratified, shuffled 70/30 train/test split (``sklearn.model_selection.train_test_split``);
5. MinMax scaling fitted on the training part;
6. ``ceil(la * n_train_anomalies)`` training anomalies keep label 1, chosen at random; every other
   training label becomes 0.

ADBench draws from numpy's *global* RNG after ``np.random.seed(s)``; this module draws the same
numbers from a private ``RandomState(s)`` and leaves the global state alone.

Step 2 copies rows before the split, so copies of one row can land on both sides and inflate
scores on small datasets. ``protocol="clean"`` removes exact duplicate rows first (a duplicated row
is an anomaly if any copy is) and never resamples, so no row appears on both sides; steps 3-6 are
the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

import numpy as np

from swifthydra._validation import check_X, check_y
from swifthydra.exceptions import InvalidInputError

PROTOCOLS = ("adbench", "clean")
N_SAMPLES_LOWER = 1000
N_SAMPLES_UPPER = 10000
TEST_SIZE = 0.3


@dataclass(frozen=True)
class Split:
    """One train/test split with weak training labels.

    Attributes
    ----------
    X_train, X_test : ndarray
        MinMax-scaled (fitted on the training part) features.
    y_train : ndarray
        Weak labels: 1 = labelled anomaly, 0 = unlabeled (normal rows and unlabelled anomalies).
    y_test : ndarray
        True test labels.
    y_train_true : ndarray
        True training labels (for analysis only; a detector must not see them).
    train_index, test_index : ndarray
        Row of the input ``X`` each split row came from (resampled rows repeat).
    scaler : sklearn.preprocessing.MinMaxScaler
        The scaler fitted on the raw training rows.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    y_train_true: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray
    scaler: object

    @property
    def n_labeled(self) -> int:
        return int(self.y_train.sum())


def adbench_split(
    X,
    y,
    seed: int = 1,
    labeled_ratio: float = 0.05,
    protocol: str = "adbench",
) -> Split:
    """Split a dataset the way ADBench does (see the module docstring).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        True labels, 1 = anomaly.
    seed : int
        ADBench seed (the benchmark uses 1, 2, 3).
    labeled_ratio : float in [0, 1]
        Fraction of training anomalies that keep their label (rounded up).
    protocol : {"adbench", "clean"}
        ``"clean"`` deduplicates rows first and never resamples.

    Returns
    -------
    Split
    """
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import MinMaxScaler

    if protocol not in PROTOCOLS:
        raise InvalidInputError(f"unknown protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}.")
    try:
        la = float(labeled_ratio)
    except (TypeError, ValueError):
        raise InvalidInputError(f"labeled_ratio must be a number in [0, 1], got {labeled_ratio!r}.") from None
    if not 0.0 <= la <= 1.0:
        raise InvalidInputError(f"labeled_ratio must be in [0, 1], got {labeled_ratio!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise InvalidInputError(f"seed must be an integer in [0, 2**32), got {seed!r}.")
    X = check_X(X, name="X", max_abs=None)
    y = check_y(y, X.shape[0], name="y")
    n_anomalies = int(y.sum())
    if n_anomalies < 2 or X.shape[0] - n_anomalies < 2:
        raise InvalidInputError(
            f"a stratified split needs at least 2 anomalies and 2 normal rows; got {n_anomalies} "
            f"anomalies among {X.shape[0]} rows."
        )

    index = np.arange(X.shape[0])
    if protocol == "clean":
        index, y = _deduplicate(X, y)

    rng = np.random.RandomState(seed)
    if protocol == "adbench" and len(index) < N_SAMPLES_LOWER:
        rng = np.random.RandomState(seed)
        chosen = rng.choice(np.arange(len(index)), N_SAMPLES_LOWER, replace=True)
        index, y = index[chosen], y[chosen]
    if len(index) > N_SAMPLES_UPPER:
        rng = np.random.RandomState(seed)
        chosen = rng.choice(np.arange(len(index)), N_SAMPLES_UPPER, replace=False)
        index, y = index[chosen], y[chosen]

    pos = np.arange(len(index))
    try:
        pos_train, pos_test = train_test_split(
            pos, test_size=TEST_SIZE, shuffle=True, stratify=y, random_state=rng
        )
    except ValueError as exc:
        raise InvalidInputError(f"cannot split this data in a stratified way: {exc}") from None
    train_index, test_index = index[pos_train], index[pos_test]
    y_train_true, y_test = y[pos_train], y[pos_test]

    scaler = MinMaxScaler().fit(X[train_index])
    X_train = scaler.transform(X[train_index])
    X_test = scaler.transform(X[test_index])

    idx_anomaly = np.flatnonzero(y_train_true == 1)
    labeled = rng.choice(idx_anomaly, ceil(la * len(idx_anomaly)), replace=False)
    y_train = np.zeros_like(y_train_true)
    y_train[labeled] = 1
    return Split(X_train, y_train, X_test, y_test, y_train_true, train_index, test_index, scaler)


def _deduplicate(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first copy of each distinct row; its label is 1 if any copy is an anomaly."""
    _, first, inverse = np.unique(X, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    label = np.zeros(len(first), dtype=np.int64)
    np.maximum.at(label, inverse, y)
    order = np.argsort(first)  # keep the original row order
    return first[order], label[order]
