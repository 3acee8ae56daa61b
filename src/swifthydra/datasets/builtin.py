"""Built-in datasets that need neither the network nor a data folder.

ADBench's ``43_WDBC`` and ``45_wine`` are subsets of UCI data sets that scikit-learn ships:

* ``wdbc``: the breast-cancer Wisconsin (diagnostic) data; all 357 benign rows are normal and 10
  malignant rows are the anomalies (367 rows, 30 features).
* ``wine``: the UCI wine data; the 119 rows of cultivars 2 and 3 are normal and 10 rows of
  cultivar 1 are the anomalies (129 rows, 13 features).

The rows and their order are exactly those of ADBench's files (a test checks them against the
published files when ``../shared/adbench`` is present).
"""

from __future__ import annotations

import numpy as np

from swifthydra.exceptions import UnknownDatasetError

# Row indices, in scikit-learn's copies, of the anomalies ADBench kept; they come first in
# ADBench's files, followed by every normal row in their original order.
_WDBC_ANOMALY_ROWS = (28, 117, 230, 95, 370, 323, 516, 498, 33, 564)  # malignant (target 0)
_WINE_ANOMALY_ROWS = (57, 16, 32, 7, 56, 48, 9, 37, 5, 53)  # cultivar 1 (target 0)

BUILTIN_DATASETS = ("wdbc", "wine")


def load_builtin(name: str = "wdbc") -> tuple[np.ndarray, np.ndarray]:
    """Load a built-in dataset as ``(X, y)`` (float64, int64; 1 = anomaly).

    Parameters
    ----------
    name : {"wdbc", "wine"}
        Which dataset. ADBench's names (``"43_WDBC"``, ``"45_wine"``) are accepted too.
    """
    from sklearn.datasets import load_breast_cancer, load_wine

    key = str(name).strip().lower()
    key = {"43_wdbc": "wdbc", "45_wine": "wine"}.get(key, key)
    if key == "wdbc":
        data = load_breast_cancer()
        anomalies, normal_target = _WDBC_ANOMALY_ROWS, 1
    elif key == "wine":
        data = load_wine()
        anomalies, normal_target = _WINE_ANOMALY_ROWS, (1, 2)
    else:
        raise UnknownDatasetError(
            f"unknown built-in dataset {name!r}: choose one of {', '.join(BUILTIN_DATASETS)}."
        )
    normal = np.flatnonzero(np.isin(data.target, normal_target))
    rows = np.concatenate([np.asarray(anomalies), normal])
    X = np.ascontiguousarray(data.data[rows], dtype=np.float64)
    y = np.concatenate([np.ones(len(anomalies)), np.zeros(len(normal))]).astype(np.int64)
    return X, y
