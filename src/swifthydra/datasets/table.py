"""Read CSV and Parquet tables into numeric matrices, with a preprocessing that can be reapplied.

``read_table`` turns a user's file into ``X`` (float64), optional weak labels ``y`` and optional
ids. Non-numeric columns are one-hot encoded (``categorical="onehot"``), rejected with a message
naming them (``categorical="reject"``) or left out (``categorical="drop"``); missing values are
imputed with the training median / a ``__missing__`` category (``missing="impute"``) or rejected
(``missing="reject"``). A column whose values are all numbers is numeric even when pandas reads
it as text or objects (integers beyond int64 in a CSV, numbers stored as strings in Parquet). The
fitted :class:`TablePreprocessor` is returned with the data; it is plain JSON-serialisable state,
so the same transform applies at scoring time (``preprocessor.transform(df)``).

Files larger than memory are read in chunks: :func:`table_columns` reads only the header (CSV) or
schema (Parquet), and :func:`iter_table` yields DataFrames of at most ``chunk_rows`` rows (Parquet
through ``pyarrow.parquet.ParquetFile.iter_batches``, CSV through ``pandas.read_csv(chunksize=...)``).

CSV files are read strictly: the separator of a ``.csv``/``.txt`` file is detected from its first
lines (``,``, ``;``, tab or ``|``; ``.tsv`` is always tab-separated), and a row with more fields
than the header is an error naming its line (rows with fewer fields have missing values).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from swifthydra.exceptions import InvalidInputError

MISSING_CATEGORY = "__missing__"
OTHER_CATEGORY = "__other__"
_MAX_CATEGORIES = 100
_CSV_SUFFIXES = (".csv", ".txt", ".tsv", "")
_PARQUET_SUFFIXES = (".parquet", ".pq")


def _pandas():
    import pandas as pd

    return pd


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _table_kind(path: Path) -> str:
    """``"parquet"`` or ``"csv"`` from the file name, or an error naming the supported types."""
    suffix = path.suffix.lower()
    if suffix in _PARQUET_SUFFIXES:
        return "parquet"
    if suffix in _CSV_SUFFIXES:
        return "csv"
    raise InvalidInputError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .parquet.")


_SEPARATORS = ",;\t|"
_SNIFF_BYTES = 64 * 1024
_SNIFF_LINES = 50


def _sample_lines(path: Path) -> list[str]:
    """The first non-blank lines of a text file (at most 64 KiB, whole lines only)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(_SNIFF_BYTES)
    except OSError:
        return []
    lines = raw.decode("utf-8-sig", errors="replace").splitlines()
    if len(raw) == _SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # cut mid-line
    return [line for line in lines if line.strip()][:_SNIFF_LINES]


def _fields(line: str, sep: str) -> int:
    try:
        return len(next(csv.reader([line], delimiter=sep), []))
    except csv.Error:
        return 1


def _csv_sep(path: Path) -> str:
    """The field separator of a CSV file: tab for ``.tsv``; otherwise detected from the first lines
    among ``,``, ``;``, tab and ``|`` (``,`` when the header holds none of the others, or when
    the lines do not settle it)."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    lines = _sample_lines(path)
    if not lines or not any(c in lines[0] for c in _SEPARATORS[1:]):
        return ","  # the fast, common case: only commas (or a single column)
    try:
        sep = csv.Sniffer().sniff("\n".join(lines), delimiters=_SEPARATORS).delimiter
    except csv.Error:
        return ","
    # the separator must split the header (a sniffer can be swayed by the data rows)
    return sep if sep in _SEPARATORS and _fields(lines[0], sep) > 1 else ","


def _check_single_column(path: Path, columns: list[str], sep: str) -> None:
    """A table read as one column whose name holds another separator was split wrongly."""
    if len(columns) != 1:
        return
    other = [c for c in _SEPARATORS if c != sep and c in str(columns[0])]
    if other:
        shown = {"\t": "a tab"}.get(other[0], repr(other[0]))
        raise InvalidInputError(
            f"{path} reads as a single column {str(columns[0])[:60]!r}: its header holds {shown} but the "
            "first lines do not agree on one separator (',', ';', tab or '|'); check that every row has "
            "as many fields as the header."
        )


def _long_row_line(path: Path, sep: str, n_fields: int) -> tuple[int, int] | None:
    """``(line number, fields)`` of the first data row with more than ``n_fields`` fields."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
            reader = csv.reader(f, delimiter=sep)
            next(reader, None)  # the header
            for row in reader:
                if len(row) > n_fields:
                    return reader.line_num, len(row)
    except (OSError, csv.Error):
        pass
    return None


def _long_first_row_error(path: Path, sep: str, n_fields: int) -> InvalidInputError:
    """pandas reads the first column as the row index when the first data row has more fields
    than the header (every column silently shifted); this is the error to raise instead (seen
    as a DataFrame index other than 0, 1, 2, ...)."""
    found = _long_row_line(path, sep, n_fields)
    where = f"line {found[0]} has {found[1]} fields" if found else "the first data row has more fields"
    return InvalidInputError(
        f"cannot read {path} as CSV: {where} but the header has {n_fields}: a ragged row, or a "
        "separator at the end of the lines; fix the file."
    )


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path} does not exist or is not a file.")
    return path


def table_columns(path: str | os.PathLike) -> list[str]:
    """Column names of a CSV or Parquet file, reading only its header or schema."""
    path = _existing_file(path)
    kind = _table_kind(path)
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            schema = pq.read_schema(path)
            meta = schema.pandas_metadata or {}
            # a pandas index written as a column (``__index_level_0__``) is not a column of the table
            index = {c for c in meta.get("index_columns", []) if isinstance(c, str)}
            return [str(c) for c in schema.names if c not in index]
        pd = _pandas()
        sep = _csv_sep(path)
        columns = [str(c) for c in pd.read_csv(path, sep=sep, nrows=0).columns]
    except Exception as exc:  # not really parquet, empty file, undecodable bytes, ...
        raise InvalidInputError(f"cannot read {path} as {kind.upper() if kind == 'csv' else kind}: {_first_line(exc)}") from None
    _check_single_column(path, columns, sep)
    return columns


def iter_table(
    path: str | os.PathLike,
    columns: list[str] | None = None,
    *,
    chunk_rows: int = 100_000,
    string_columns: list[str] | None = None,
):
    """Yield a CSV or Parquet file as DataFrames of at most ``chunk_rows`` rows, in file order.

    Only ``columns`` are yielded (all when ``None``); memory stays flat in the file size.
    ``string_columns`` are read as strings from CSV (so a chunk whose values happen to look
    numeric is not typed differently from the rest of the file). Errors anywhere in the file
    (ragged rows, undecodable bytes, not really Parquet) become :class:`InvalidInputError` naming
    the rows where reading stopped (for a CSV row with too many fields, its line).

    A CSV file is parsed whole (the other columns as plain text, no type inference): reading only
    ``columns`` (``usecols``) would make pandas ignore the extra fields of a ragged row.
    """
    pd = _pandas()
    path = _existing_file(path)
    kind = _table_kind(path)
    if not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool) or chunk_rows < 1:
        raise InvalidInputError(f"chunk_rows must be a positive integer, got {chunk_rows!r}.")
    what = "CSV" if kind == "csv" else "parquet"
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            # No pre-buffering (it reads every row group up front) and a buffered stream, so only
            # about one batch of a row group is in memory at a time, however large the group.
            parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
            batches = (b.to_pandas() for b in parquet.iter_batches(batch_size=chunk_rows, columns=columns))
        else:
            sep = _csv_sep(path)
            header = [str(c) for c in pd.read_csv(path, sep=sep, nrows=0).columns]
            _check_single_column(path, header, sep)
            if columns is not None:
                absent = [c for c in columns if c not in header]
                if absent:
                    raise InvalidInputError(f"columns {absent} are not in the file; its columns are {header[:20]}")
            dtype = {c: "str" for c in header if columns is not None and c not in columns}
            dtype.update({c: "string" for c in (string_columns or [])})
            batches = pd.read_csv(path, sep=sep, chunksize=chunk_rows, dtype=dtype or None)
    except Exception as exc:
        raise InvalidInputError(f"cannot read {path} as {what}: {_first_line(exc)}") from None
    start = 0
    while True:
        try:
            chunk = next(batches)
        except StopIteration:
            return
        except Exception as exc:
            raise InvalidInputError(
                f"cannot read {path} as {what} (from data row {start + 1} on): {_first_line(exc)}"
            ) from None
        if kind == "csv":
            if not chunk.index.equals(pd.RangeIndex(start, start + len(chunk))):
                batches.close()
                raise _long_first_row_error(path, sep, len(header))
            if columns is not None:
                chunk = chunk[columns]
        yield chunk
        start += len(chunk)


def read_frame(path: str | os.PathLike, columns: list[str] | None = None):
    """Read a CSV or Parquet file into a pandas DataFrame with clear errors."""
    pd = _pandas()
    path = _existing_file(path)
    kind = _table_kind(path)
    suffix = path.suffix.lower()
    try:
        if kind == "parquet":
            return pd.read_parquet(path, columns=columns)
        sep = _csv_sep(path)
        # every column is parsed (usecols would make pandas ignore the extra fields of ragged rows)
        df = pd.read_csv(path, sep=sep)
    except ValueError as exc:  # missing columns, not really parquet, undecodable bytes
        raise InvalidInputError(f"cannot read {path}: {_first_line(exc)}") from None
    except Exception as exc:  # pandas/pyarrow parser errors: ragged rows, ...
        raise InvalidInputError(f"cannot read {path} as {suffix.lstrip('.') or 'CSV'}: {_first_line(exc)}") from None
    if not df.index.equals(pd.RangeIndex(len(df))):
        raise _long_first_row_error(path, sep, len(df.columns))
    _check_single_column(path, [str(c) for c in df.columns], sep)
    if columns is not None:
        absent = [c for c in columns if c not in df.columns]
        if absent:
            raise InvalidInputError(f"cannot read {path}: columns {absent} are not in the file.")
        df = df[list(columns)]
    return df


def _is_numeric(col) -> bool:
    """Whether a column is a numeric feature: a numeric or boolean dtype, or text/objects that
    are all numbers (pandas reads integers beyond int64 from CSV as Python ints in an object
    column; a Parquet file may store numbers as strings). At scoring time
    :meth:`TablePreprocessor.transform` parses such values the same way (``pd.to_numeric``)."""
    pd = _pandas()
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return True
    if not (pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)):
        return False  # dates, categories, ...
    values = col.dropna()
    if len(values) == 0:
        return False  # no values at all: a (missing) category, as before
    try:
        # a sample first: a text column usually fails on its first values
        for part in (values.iloc[:1000], values.iloc[1000:]):
            if len(part) and pd.to_numeric(part, errors="coerce").isna().any():
                return False
    except (TypeError, ValueError):
        return False
    return True


@dataclass
class TablePreprocessor:
    """Column-wise preprocessing learnt from a training table.

    Parameters
    ----------
    categorical : {"onehot", "reject", "drop"}
        What to do with non-numeric columns: one-hot encode them, refuse them, or leave them out
        (``dropped_columns_``; they may then be present or absent at scoring time).
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
    dropped_columns_: list[str] = field(default_factory=list)
    modes_: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.categorical not in ("onehot", "reject", "drop"):
            raise InvalidInputError(
                f"categorical must be 'onehot', 'reject' or 'drop', got {self.categorical!r}."
            )
        if self.missing not in ("impute", "reject"):
            raise InvalidInputError(f"missing must be 'impute' or 'reject', got {self.missing!r}.")

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, df) -> TablePreprocessor:
        pd = _pandas()
        features = [c for c in df.columns if c not in self.exclude]
        if not features:
            raise InvalidInputError("the table has no feature columns besides the label/id columns.")
        numeric = [c for c in features if _is_numeric(df[c])]
        other = [c for c in features if c not in numeric]
        if other and self.categorical == "reject":
            raise InvalidInputError(
                f"non-numeric columns {[str(c) for c in other]}: drop them or let them be one-hot "
                "encoded (categorical='onehot')."
            )
        self.dropped_columns_ = []
        if self.categorical == "drop":
            self.dropped_columns_ = [str(c) for c in other]
            features, other = numeric, []
            if not features:
                raise InvalidInputError(
                    f"every feature column is non-numeric ({self.dropped_columns_}): nothing is left "
                    "after dropping them; let them be one-hot encoded instead."
                )
        self.input_columns_ = [str(c) for c in features]
        self._check_missing(df, features)
        self.numeric_columns_ = [str(c) for c in numeric]
        self.medians_ = {}
        for c in numeric:
            col = pd.to_numeric(df[c], errors="coerce").astype(float)
            med = col.median()
            self.medians_[str(c)] = float(med) if np.isfinite(med) else 0.0
        self.categories_ = {}
        self.modes_ = {}
        for c in other:
            values = df[c].astype("string").fillna(MISSING_CATEGORY)
            counts = values.value_counts()
            cats = sorted(str(v) for v in counts.index[:_MAX_CATEGORIES])
            self.categories_[str(c)] = cats
            top = counts[counts == counts.max()].index if len(counts) else []
            self.modes_[str(c)] = min(str(v) for v in top) if len(top) else OTHER_CATEGORY
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

    @property
    def feature_groups_(self) -> list[tuple[str, list[int]]]:
        """Each input column with the indices of the features it becomes (one, or its one-hot block)."""
        groups = [(c, [i]) for i, c in enumerate(self.numeric_columns_)]
        start = len(self.numeric_columns_)
        for c, cats in self.categories_.items():
            groups.append((c, list(range(start, start + len(cats) + 1))))
            start += len(cats) + 1
        return groups

    def baseline_(self) -> np.ndarray:
        """A typical training row in feature space: each numeric column at its training median,
        each categorical column at its most frequent training category (used by explanations)."""
        if not self.input_columns_:
            raise InvalidInputError("the preprocessor is not fitted: call fit first.")
        parts = [np.array([self.medians_[c] for c in self.numeric_columns_], dtype=np.float64)]
        for c, cats in self.categories_.items():
            onehot = np.zeros(len(cats) + 1)
            mode = self.modes_.get(c, OTHER_CATEGORY)
            onehot[cats.index(mode) if mode in cats else len(cats)] = 1.0
            parts.append(onehot)
        return np.concatenate(parts)

    def check_columns(self, columns, allowed_extra=()) -> None:
        """Raise one :class:`InvalidInputError` naming every missing and every unexpected column.

        ``columns`` are the names present in a table. The label/id columns seen in training
        (``exclude``), dropped non-numeric columns and ``allowed_extra`` may be present without
        being features.
        """
        if not self.input_columns_:
            raise InvalidInputError("the preprocessor is not fitted: call fit first.")
        present = [str(c) for c in columns]
        present_set = set(present)
        missing_cols = [c for c in self.input_columns_ if c not in present_set]
        allowed = set(self.input_columns_) | set(self.exclude) | set(self.dropped_columns_)
        allowed |= {str(c) for c in allowed_extra}
        extra = sorted(present_set - allowed)
        duplicated = sorted({c for c in present if present.count(c) > 1})
        if missing_cols or extra or duplicated:
            parts = []
            if missing_cols:
                parts.append(f"missing columns {missing_cols}")
            if extra:
                parts.append(f"unexpected columns {extra}")
            if duplicated:
                parts.append(f"duplicated columns {duplicated}")
            raise InvalidInputError(
                f"the table does not match the training columns: {'; '.join(parts)}."
            )

    def transform(self, df) -> np.ndarray:
        """Apply the fitted preprocessing; columns are matched by name."""
        pd = _pandas()
        self.check_columns(df.columns)
        df = df.rename(columns=str)
        self._check_missing(df, self.input_columns_)
        n = len(df)
        width = len(self.numeric_columns_) + sum(len(cats) + 1 for cats in self.categories_.values())
        X = np.empty((n, width), dtype=np.float64)
        for i, c in enumerate(self.numeric_columns_):
            col = df[c]
            if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
                values = col.to_numpy(dtype=np.float64, na_value=np.nan)  # no parsing needed
            else:
                parsed = pd.to_numeric(col, errors="coerce")
                bad = parsed.isna() & col.notna()
                if bad.any():
                    raise InvalidInputError(
                        f"column {c!r} holds non-numeric values (e.g. {col[bad].iloc[0]!r}) "
                        "but was numeric in training."
                    )
                values = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
            nan = np.isnan(values)
            X[:, i] = np.where(nan, self.medians_[c], values) if nan.any() else values
        start = len(self.numeric_columns_)
        rows = np.arange(n)
        for c, cats in self.categories_.items():
            values = df[c].astype("string").fillna(MISSING_CATEGORY).to_numpy(dtype=object)
            idx = pd.Index(cats, dtype=object).get_indexer(values)
            idx[idx < 0] = len(cats)  # unseen -> __other__
            block = X[:, start : start + len(cats) + 1]
            block[:] = 0.0
            block[rows, idx] = 1.0
            start += len(cats) + 1
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
            # a list of [column, categories] pairs: the order of the one-hot blocks is the order of
            # the features, which a JSON object does not promise to keep
            "categories": [[c, list(cats)] for c, cats in self.categories_.items()],
            "input_columns": self.input_columns_,
            "dropped_columns": self.dropped_columns_,
            "modes": self.modes_,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TablePreprocessor:
        try:
            input_columns = [str(c) for c in state["input_columns"]]
            categories = state["categories"]
            if isinstance(categories, dict):
                # Files written before 0.1.1 hold a JSON object whose keys were sorted on writing:
                # the one-hot blocks follow the training column order, which input_columns keeps.
                categories = [(c, categories[c]) for c in input_columns if c in categories]
                if len(categories) != len(state["categories"]):
                    raise ValueError("categorical columns that are not input columns")
            return cls(
                categorical=state["categorical"],
                missing=state["missing"],
                exclude=list(state["exclude"]),
                numeric_columns_=list(state["numeric_columns"]),
                medians_={str(k): float(v) for k, v in state["medians"].items()},
                categories_={str(k): [str(x) for x in v] for k, v in categories},
                input_columns_=input_columns,
                dropped_columns_=[str(c) for c in state.get("dropped_columns", [])],
                modes_={str(k): str(v) for k, v in state.get("modes", {}).items()},
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
    categorical : {"onehot", "reject", "drop"}
        Non-numeric columns are one-hot encoded, rejected with a message naming them, or dropped.
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
