"""Read CSV and Parquet tables into numeric matrices, with a preprocessing that can be reapplied.

``read_table`` turns a user's file into ``X`` (float64), optional weak labels ``y`` and optional
ids. Non-numeric columns are one-hot encoded (``categorical="onehot"``) or rejected with a message
naming them (``categorical="reject"``); missing values are imputed with the training median /
a ``__missing__`` category (``missing="impute"``) or rejected (``missing="reject"``). The fitted
:class:`TablePreprocessor` is returned with the data; it is plain JSON-serialisable state, so the
same transform applies at scoring time (``preprocessor.transform(df)``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from swifthydra.exceptions import InvalidInputError

MISSING_CATEGORY = "__missing__"
OTHER_CATEGORY = "__other__"
_MAX_CATEGORIES = 100


def _pandas():
    import pandas as pd

    return pd


def read_frame(path: str | os.PathLike, columns: list[str] | None = None):
    """Read a CSV or Parquet file into a pandas DataFrame with clear errors."""
    pd = _pandas()
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path} does not exist or is not a file.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path, columns=columns)
        if suffix in (".csv", ".txt", ".tsv") or suffix == "":
            sep = "\t" if suffix == ".tsv" else ","
            return pd.read_csv(path, sep=sep, usecols=columns)
    except ValueError as exc:  # missing columns in usecols and the like
        raise InvalidInputError(f"cannot read {path}: {exc}") from None
    except Exception as exc:  # pandas/pyarrow parser errors: ragged rows, not really parquet, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInputError(f"cannot read {path} as {suffix.lstrip('.') or 'CSV'}: {first}") from None
    raise InvalidInputError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .parquet.")


@dataclass
class TablePreprocessor:
    """Column-wise preprocessing learnt from a training table.

    Parameters
    ----------
    categorical : {"onehot", "reject"}
        What to do with non-numeric columns.
    missing : {"impute", "reject"}
        What to do with missing values.
    exclude : list of str
        Columns that are not features (label, id).
    """

    categorical: str = "onehot"
    missing: str = "impute"
    exclude: list[str] = field(default_factory=list)
    numeric_columns_: list[str] = field(default_factory=list)
    medians_: dict[str, float] = field(default_factory=dict)
    categories_: dict[str, list[str]] = field(default_factory=dict)
    input_columns_: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.categorical not in ("onehot", "reject"):
            raise InvalidInputError(f"categorical must be 'onehot' or 'reject', got {self.categorical!r}.")
        if self.missing not in ("impute", "reject"):
            raise InvalidInputError(f"missing must be 'impute' or 'reject', got {self.missing!r}.")

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, df) -> TablePreprocessor:
        pd = _pandas()
        features = [c for c in df.columns if c not in self.exclude]
        if not features:
            raise InvalidInputError("the table has no feature columns besides the label/id columns.")
        self.input_columns_ = [str(c) for c in features]
        numeric = [c for c in features if pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])]
        other = [c for c in features if c not in numeric]
        if other and self.categorical == "reject":
            raise InvalidInputError(
                f"non-numeric columns {[str(c) for c in other]}: drop them or let them be one-hot "
                "encoded (categorical='onehot')."
            )
        self._check_missing(df, features)
        self.numeric_columns_ = [str(c) for c in numeric]
        self.medians_ = {}
        for c in numeric:
            col = pd.to_numeric(df[c], errors="coerce").astype(float)
            med = col.median()
            self.medians_[str(c)] = float(med) if np.isfinite(med) else 0.0
        self.categories_ = {}
        for c in other:
            values = df[c].astype("string").fillna(MISSING_CATEGORY)
            counts = values.value_counts()
            cats = sorted(str(v) for v in counts.index[:_MAX_CATEGORIES])
            self.categories_[str(c)] = cats
        return self

    def _check_missing(self, df, columns) -> None:
        if self.missing != "reject":
            return
        missing = [str(c) for c in columns if df[c].isna().any()]
        if missing:
            raise InvalidInputError(
                f"missing values in columns {missing}: fill them or let them be imputed (missing='impute')."
            )

    # -- transforming --------------------------------------------------------------------------
    @property
    def feature_names_(self) -> list[str]:
        names = list(self.numeric_columns_)
        for c, cats in self.categories_.items():
            names.extend(f"{c}={v}" for v in cats)
            names.append(f"{c}={OTHER_CATEGORY}")
        return names

    def transform(self, df) -> np.ndarray:
        """Apply the fitted preprocessing; columns are matched by name."""
        pd = _pandas()
        if not self.input_columns_:
            raise InvalidInputError("the preprocessor is not fitted: call fit first.")
        present = {str(c) for c in df.columns}
        missing_cols = [c for c in self.input_columns_ if c not in present]
        extra = sorted(present - set(self.input_columns_) - set(self.exclude))
        if missing_cols or extra:
            parts = []
            if missing_cols:
                parts.append(f"missing columns {missing_cols}")
            if extra:
                parts.append(f"unexpected columns {extra}")
            raise InvalidInputError(
                f"the table does not match the training columns: {'; '.join(parts)}."
            )
        df = df.rename(columns=str)
        self._check_missing(df, self.input_columns_)
        blocks = []
        if self.numeric_columns_:
            num = df[self.numeric_columns_].apply(pd.to_numeric, errors="coerce").astype(float)
            if num.isna().any().any():
                for c in self.numeric_columns_:
                    bad = num[c].isna() & df[c].notna()
                    if bad.any():
                        raise InvalidInputError(
                            f"column {c!r} holds non-numeric values (e.g. {df[c][bad].iloc[0]!r}) "
                            "but was numeric in training."
                        )
                num = num.fillna(self.medians_)
            blocks.append(num.to_numpy(dtype=np.float64))
        for c, cats in self.categories_.items():
            values = df[c].astype("string").fillna(MISSING_CATEGORY).to_numpy(dtype=object)
            onehot = np.zeros((len(df), len(cats) + 1), dtype=np.float64)
            lookup = {v: i for i, v in enumerate(cats)}
            idx = np.array([lookup.get(str(v), len(cats)) for v in values], dtype=np.int64)
            onehot[np.arange(len(df)), idx] = 1.0
            blocks.append(onehot)
        X = np.hstack(blocks) if blocks else np.zeros((len(df), 0))
        if not np.isfinite(X).all():
            row, col = np.argwhere(~np.isfinite(X))[0]
            raise InvalidInputError(
                f"non-finite value in row {row}, feature {self.feature_names_[col]!r}: clean the data."
            )
        return X

    def fit_transform(self, df) -> np.ndarray:
        return self.fit(df).transform(df)

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "categorical": self.categorical,
            "missing": self.missing,
            "exclude": list(self.exclude),
            "numeric_columns": self.numeric_columns_,
            "medians": self.medians_,
            "categories": self.categories_,
            "input_columns": self.input_columns_,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TablePreprocessor:
        try:
            return cls(
                categorical=state["categorical"],
                missing=state["missing"],
                exclude=list(state["exclude"]),
                numeric_columns_=list(state["numeric_columns"]),
                medians_={str(k): float(v) for k, v in state["medians"].items()},
                categories_={str(k): [str(x) for x in v] for k, v in state["categories"].items()},
                input_columns_=list(state["input_columns"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInputError(f"invalid preprocessing state ({type(exc).__name__}: {exc}).") from None


@dataclass
class Table:
    """What :func:`read_table` returns."""

    X: np.ndarray  #: features, float64
    y: np.ndarray | None  #: weak labels (1 = known anomaly, 0 = unlabeled), when a label column was given
    ids: np.ndarray | None  #: values of the id column, when given
    feature_names: list[str]  #: one name per column of X
    preprocessor: TablePreprocessor  #: the fitted preprocessing, to apply to new data


def labels_from_column(values) -> np.ndarray:
    """Weak labels from a label column: 1 (or true/"1"/"yes") = known anomaly, anything else = 0."""
    pd = _pandas()
    s = pd.Series(values)
    as_str = s.astype("string").str.strip().str.lower()
    positive = as_str.isin(["1", "1.0", "true", "yes", "y", "anomaly"])
    return positive.fillna(False).to_numpy(dtype=bool).astype(np.int64)


def read_table(
    path: str | os.PathLike,
    label_column: str | None = None,
    *,
    id_column: str | None = None,
    categorical: str = "onehot",
    missing: str = "impute",
    preprocessor: TablePreprocessor | None = None,
) -> Table:
    """Read a CSV or Parquet file as features (and weak labels).

    Parameters
    ----------
    path : path
        ``.csv``, ``.tsv`` or ``.parquet`` file with a header row.
    label_column : str, optional
        Column of weak labels: 1 = known anomaly, anything else or empty = unlabeled.
    id_column : str, optional
        Column of row ids, kept aside and not used as a feature.
    categorical : {"onehot", "reject"}
        Non-numeric columns are one-hot encoded, or rejected with a message naming them.
    missing : {"impute", "reject"}
        Missing values are imputed (training median; ``__missing__`` category), or rejected.
    preprocessor : TablePreprocessor, optional
        An already fitted preprocessing (from training) to apply instead of fitting a new one.

    Returns
    -------
    Table
    """
    df = read_frame(path)
    if len(df) == 0:
        raise InvalidInputError(f"{path} has no data rows.")
    for col, what in ((label_column, "label column"), (id_column, "id column")):
        if col is not None and col not in df.columns:
            raise InvalidInputError(f"{what} {col!r} is not in {path}; columns are {list(map(str, df.columns))[:20]}.")
    y = labels_from_column(df[label_column]) if label_column is not None else None
    ids = df[id_column].to_numpy() if id_column is not None else None
    exclude = [c for c in (label_column, id_column) if c is not None]
    if preprocessor is None:
        preprocessor = TablePreprocessor(categorical=categorical, missing=missing, exclude=exclude).fit(df)
    X = preprocessor.transform(df.drop(columns=exclude))
    return Table(X=X, y=y, ids=ids, feature_names=preprocessor.feature_names_, preprocessor=preprocessor)
