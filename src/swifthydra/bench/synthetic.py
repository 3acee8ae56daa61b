"""ADBench's realistic synthetic anomalies, and the unseen-anomaly-type scenario.

ADBench (Han et al., 2022, §3.3 and ``DataGenerator.generate_realistic_synthetic``) replaces a
dataset by a synthetic copy whose anomalies are of one known type:

* a Gaussian mixture is fitted to the normal rows, with the BIC-best number of components in
  1..9 (``random_state=seed``); the synthetic normal rows are ``gm.sample(n_normal)``;
* **local**: the same mixture with every covariance scaled by ``alpha = 5``;
* **cluster**: the same mixture with every mean scaled by ``alpha = 5``;
* **global**: uniform per feature in ``[min * (1 + 0.1), max * (1 + 0.1)]`` of the synthetic
  normal rows (ADBench's formula, kept as is);
* **dependency**: normal rows from a vine copula fitted to the normal rows, anomalies from
  independent per-feature kernel density estimates (the features keep their marginals but lose
  their dependence).

Deviation from ADBench, documented: the ``copulas`` package is not a dependency, so
:func:`realistic_synthetic` with ``kind="dependency"`` draws normal rows from a *Gaussian* copula
(rank-normal scores, their correlation, empirical marginals) instead of a vine copula, and the
per-feature KDE is a Gaussian kernel with Scott's bandwidth sampled directly (pick a row, add
noise).

The unseen-type scenario (:func:`unseen_type_dataset`) needs all four types beside one normal
population, so it draws the normal rows once from the Gaussian mixture and generates every type
against that mixture; dependency anomalies there come from per-feature KDEs of the (real) normal
rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

import numpy as np

from swifthydra.exceptions import InvalidInputError

ANOMALY_TYPES = ("local", "global", "cluster", "dependency")
ALPHA = 5.0
GLOBAL_PERCENTAGE = 0.1
MAX_COMPONENTS = 9


def _check_kind(kind: str) -> str:
    key = str(kind).strip().lower()
    if key not in ANOMALY_TYPES:
        raise InvalidInputError(
            f"unknown anomaly type {kind!r}: choose one of {', '.join(ANOMALY_TYPES)}."
        )
    return key


def fit_normal_mixture(X_normal: np.ndarray, seed: int, max_components: int = MAX_COMPONENTS):
    """Fit ADBench's Gaussian mixture: BIC-best ``n_components`` in ``1..max_components``.

    Returns
    -------
    sklearn.mixture.GaussianMixture
    """
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    X_normal = np.asarray(X_normal, dtype=np.float64)
    best, best_bic = None, np.inf
    # k-means' OpenMP threads only slow these small fits down (and badly so on a busy machine)
    with threadpool_limits(limits=1):
        for k in range(1, min(max_components, len(X_normal)) + 1):
            gm = GaussianMixture(n_components=k, random_state=seed).fit(X_normal)
            bic = gm.bic(X_normal)
            if bic < best_bic:
                best, best_bic = gm, bic
    return best


def _sample_mixture(gm, n: int, seed: int, *, cov_scale: float = 1.0, mean_scale: float = 1.0):
    """Sample ``n`` rows from a copy of ``gm`` with scaled covariances / means."""
    import copy

    if n <= 0:
        return np.empty((0, gm.means_.shape[1]))
    g = copy.deepcopy(gm)
    g.covariances_ = gm.covariances_ * cov_scale
    g.means_ = gm.means_ * mean_scale
    g.random_state = seed
    X, _ = g.sample(n)
    # sample() returns rows grouped by component: shuffle so order carries no information
    return X[np.random.RandomState(seed).permutation(n)]


def global_anomalies(X_normal: np.ndarray, n: int, rng: np.random.RandomState) -> np.ndarray:
    """Uniform per feature in ``[min * 1.1, max * 1.1]`` of ``X_normal`` (ADBench's formula)."""
    low = X_normal.min(axis=0) * (1 + GLOBAL_PERCENTAGE)
    high = X_normal.max(axis=0) * (1 + GLOBAL_PERCENTAGE)
    return rng.uniform(low, high, size=(n, X_normal.shape[1]))


def kde_marginal_sample(X: np.ndarray, n: int, rng: np.random.RandomState) -> np.ndarray:
    """Independent per-feature samples from 1-D Gaussian KDEs (Scott's bandwidth)."""
    X = np.asarray(X, dtype=np.float64)
    m, d = X.shape
    out = np.empty((n, d))
    for j in range(d):
        col = X[:, j]
        bw = col.std() * m ** (-1.0 / 5.0)  # Scott's rule in one dimension
        out[:, j] = col[rng.randint(0, m, size=n)] + rng.normal(0.0, 1.0, size=n) * bw
    return out


def gaussian_copula_sample(X: np.ndarray, n: int, rng: np.random.RandomState) -> np.ndarray:
    """Sample ``n`` rows with the marginals of ``X`` and its rank-normal correlation."""
    from scipy.stats import norm, rankdata

    X = np.asarray(X, dtype=np.float64)
    m, d = X.shape
    Z = norm.ppf(rankdata(X, axis=0) / (m + 1))
    C = np.atleast_2d(np.corrcoef(Z, rowvar=False))
    C = np.nan_to_num(C, nan=0.0)  # constant columns
    np.fill_diagonal(C, 1.0)
    w, V = np.linalg.eigh(C)
    A = V * np.sqrt(np.clip(w, 1e-9, None))  # C = A A^T, robust to near-singular C
    Zs = rng.standard_normal((n, d)) @ A.T
    U = norm.cdf(Zs)
    out = np.empty((n, d))
    for j in range(d):
        out[:, j] = np.quantile(X[:, j], U[:, j])
    return out


def realistic_synthetic(
    X,
    y,
    kind: str,
    seed: int = 1,
    *,
    alpha: float = ALPHA,
    percentage: float = GLOBAL_PERCENTAGE,
) -> tuple[np.ndarray, np.ndarray]:
    """Replace a dataset by ADBench's realistic synthetic copy with anomalies of one type.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        True labels (1 = anomaly); the numbers of normal rows and anomalies are kept.
    kind : {"local", "global", "cluster", "dependency"}
    seed : int
    alpha : float
        Scale of the covariances (local) or means (cluster).
    percentage : float
        Widening of the global anomalies' box.

    Returns
    -------
    X_syn : ndarray
        Synthetic normal rows followed by synthetic anomalies.
    y_syn : ndarray
        0 for the normal rows, 1 for the anomalies.
    """
    kind = _check_kind(kind)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(int)
    X_normal = X[y == 0]
    n_normal, n_anom = int((y == 0).sum()), int((y == 1).sum())
    rng = np.random.RandomState(seed)
    if kind == "dependency":
        normal = gaussian_copula_sample(X_normal, n_normal, rng)
        anomalies = kde_marginal_sample(X_normal, n_anom, rng)
    else:
        gm = fit_normal_mixture(X_normal, seed)
        normal = _sample_mixture(gm, n_normal, seed)
        if kind == "local":
            anomalies = _sample_mixture(gm, n_anom, seed + 1, cov_scale=alpha)
        elif kind == "cluster":
            anomalies = _sample_mixture(gm, n_anom, seed + 1, mean_scale=alpha)
        else:
            low = normal.min(axis=0) * (1 + percentage)
            high = normal.max(axis=0) * (1 + percentage)
            anomalies = rng.uniform(low, high, size=(n_anom, X.shape[1]))
    X_syn = np.concatenate([normal, anomalies])
    y_syn = np.concatenate([np.zeros(n_normal, int), np.ones(n_anom, int)])
    return X_syn, y_syn


@dataclass(frozen=True)
class UnseenTypeSplit:
    """Train with anomalies of one type, test on every type.

    Attributes
    ----------
    X_train, y_train : ndarray
        MinMax-scaled training rows (synthetic normals + anomalies of ``train_type``) and weak
        labels (``ceil(labeled_ratio * n)`` of the training anomalies labelled).
    y_train_true : ndarray
        True training labels.
    X_test, y_test : ndarray
        Synthetic normal test rows and test anomalies of every type; true labels.
    test_types : ndarray of str
        ``"normal"`` or the anomaly type of each test row.
    train_type : str
    """

    X_train: np.ndarray
    y_train: np.ndarray
    y_train_true: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    test_types: np.ndarray
    train_type: str

    @property
    def n_labeled(self) -> int:
        return int(self.y_train.sum())


@dataclass(frozen=True)
class SyntheticPool:
    """Synthetic normal rows and anomalies of every type for one dataset and seed."""

    normal: np.ndarray
    anomalies: dict


def synthetic_pool(X, y, seed: int = 1, *, protocol: str = "adbench") -> SyntheticPool:
    """Generate one normal population and anomalies of all four types (see module docstring).

    The dataset is first brought to ADBench's size rules (``protocol="adbench"``: resampled to
    1000 rows when smaller, subsampled to 10000 when larger; ``"clean"``: deduplicated, only
    the upper cap). The numbers of normal rows and anomalies are kept.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(int)
    if protocol == "clean":
        X, idx = np.unique(X, axis=0, return_index=True)
        y = y[idx]
    rng = np.random.RandomState(seed)
    if protocol == "adbench" and len(X) < 1000:
        pick = rng.choice(len(X), 1000, replace=True)
        X, y = X[pick], y[pick]
    if len(X) > 10000:
        pick = np.random.RandomState(seed).choice(len(X), 10000, replace=False)
        X, y = X[pick], y[pick]
    X_normal = X[y == 0]
    n_normal, n_anom = len(X_normal), max(int(y.sum()), 10)
    gm = fit_normal_mixture(X_normal, seed)
    normal = _sample_mixture(gm, n_normal, seed)
    anomalies = {
        "local": _sample_mixture(gm, n_anom, seed + 1, cov_scale=ALPHA),
        "cluster": _sample_mixture(gm, n_anom, seed + 2, mean_scale=ALPHA),
        "global": global_anomalies(normal, n_anom, rng),
        "dependency": kde_marginal_sample(X_normal, n_anom, rng),
    }
    return SyntheticPool(normal, anomalies)


def unseen_type_dataset(
    pool: SyntheticPool, train_type: str, seed: int = 1, labeled_ratio: float = 0.05
) -> UnseenTypeSplit:
    """Build the train/test split of the unseen-type scenario from a :class:`SyntheticPool`.

    Normal rows and each type's anomalies are split 70/30 (shuffled, seeded). The training part
    holds the training normals and the training anomalies of ``train_type`` only; the test part
    holds the test normals and the test anomalies of every type. MinMax scaling is fitted on the
    training part; ``ceil(labeled_ratio * n_train_anomalies)`` training anomalies are labelled.
    """
    from sklearn.preprocessing import MinMaxScaler

    train_type = _check_kind(train_type)
    rng = np.random.RandomState(seed)

    def halves(A):
        perm = rng.permutation(len(A))
        cut = int(round(0.7 * len(A)))
        return A[perm[:cut]], A[perm[cut:]]

    normal_tr, normal_te = halves(pool.normal)
    parts_te = [normal_te]
    types_te = [np.full(len(normal_te), "normal", dtype=object)]
    anom_tr = None
    for kind in ANOMALY_TYPES:
        a_tr, a_te = halves(pool.anomalies[kind])
        if kind == train_type:
            anom_tr = a_tr
        parts_te.append(a_te)
        types_te.append(np.full(len(a_te), kind, dtype=object))
    X_train = np.concatenate([normal_tr, anom_tr])
    y_true = np.concatenate([np.zeros(len(normal_tr), int), np.ones(len(anom_tr), int)])
    perm = rng.permutation(len(X_train))
    X_train, y_true = X_train[perm], y_true[perm]
    X_test = np.concatenate(parts_te)
    test_types = np.concatenate(types_te).astype(str)
    y_test = (test_types != "normal").astype(int)
    scaler = MinMaxScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    idx = np.flatnonzero(y_true == 1)
    labeled = rng.choice(idx, ceil(float(labeled_ratio) * len(idx)), replace=False)
    y_weak = np.zeros_like(y_true)
    y_weak[labeled] = 1
    return UnseenTypeSplit(X_train, y_weak, y_true, X_test, y_test, test_types, train_type)
