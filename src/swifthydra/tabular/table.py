"""Read CSV and Parquet tables into numeric matrices, with a preprocessing that can be reapplied.

``read_table`` turns a user's file into ``X`` (float64), optional weak labels ``y`` and optional
ids. Non-numeric columns are one-hot encoded (``categorical="onehot"``), rejected with a message
naming them (``categorical="reject"``) or left out (``categorical="drop"``); missing values are
imputed with the training median / a ``__missing__`` category (``missing="impute"``) or rejected
(``missing="reject"``). A column whose values are all numbers is numeric even when pandas reads
it as text or objects (integers beyond int64 in a CSV, numbers stored as strings in Parquet). The
fitted :class:`TablePreprocessor` is returned with the data; it is plain JSON-serialisable state,
so the same transform applies at scoring time (``preprocessor.transform(df)``).

Each column's kind (numeric, categorical or datetime) is recorded at fit, and a column whose
values are of another kind at scoring time is an error naming it. Timestamps (datetime64, or ISO
8601 text such as ``2024-03-01 13:45:00``) become three numeric features (hour of the day, day of
the week, days since the earliest training timestamp). The training range of each numeric column
is kept, so scoring can count values outside it. A value that cannot be used (text in a numeric
column, inf, a timestamp that does not parse) is an error naming its column and 1-based data row,
or, with ``transform_checked(on_bad_rows="skip"|"nan")``, marks its row instead.

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
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from swifthydra.exceptions import DataWarning, InvalidInputError

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


def duplicated_names(names) -> list[str]:
    """The names (as text) that occur more than once, sorted."""
    counts: dict[str, int] = {}
    for name in names:
        counts[str(name)] = counts.get(str(name), 0) + 1
    return sorted(name for name, n in counts.items() if n > 1)


def _check_unique_columns(path: Path, columns, sep: str | None = None) -> None:
    """A column name given twice is an error naming it (pandas would read a CSV's second
    ``amount`` as ``amount.1``, a name the user's file does not hold)."""
    names = [str(c) for c in columns]
    if sep is not None:  # CSV: the header as written, before pandas renames duplicates
        try:
            with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
                names = next(csv.reader(f, delimiter=sep), names)
        except (OSError, csv.Error):
            pass
    twice = duplicated_names(names)
    if twice:
        raise InvalidInputError(f"{path}: columns {twice} appear more than once in the header: give every column its own name.")


def csv_decimal(path: str | os.PathLike) -> str:
    """The decimal mark a CSV file's numbers are likely written with: ``","`` for a
    ``;``-separated file, ``"."`` otherwise (and for Parquet)."""
    path = Path(path)
    if _table_kind(path) != "csv":
        return "."
    return "," if _csv_sep(path) == ";" else "."


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
            columns = [str(c) for c in schema.names if c not in index]
            _check_unique_columns(path, columns)
            return columns
        pd = _pandas()
        sep = _csv_sep(path)
        columns = [str(c) for c in pd.read_csv(path, sep=sep, nrows=0).columns]
    except InvalidInputError:
        raise
    except Exception as exc:  # not really parquet, empty file, undecodable bytes, ...
        raise InvalidInputError(f"cannot read {path} as {kind.upper() if kind == 'csv' else kind}: {_first_line(exc)}") from None
    _check_single_column(path, columns, sep)
    _check_unique_columns(path, columns, sep)
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
            _check_unique_columns(path, parquet.schema_arrow.names)
            batches = (b.to_pandas() for b in parquet.iter_batches(batch_size=chunk_rows, columns=columns))
        else:
            sep = _csv_sep(path)
            header = [str(c) for c in pd.read_csv(path, sep=sep, nrows=0).columns]
            _check_single_column(path, header, sep)
            _check_unique_columns(path, header, sep)
            if columns is not None:
                absent = [c for c in columns if c not in header]
                if absent:
                    raise InvalidInputError(f"columns {absent} are not in the file; its columns are {header[:20]}")
            dtype = {c: "str" for c in header if columns is not None and c not in columns}
            dtype.update({c: "string" for c in (string_columns or [])})
            batches = pd.read_csv(path, sep=sep, chunksize=chunk_rows, dtype=dtype or None)
    except InvalidInputError:
        raise
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
            import pyarrow.parquet as pq

            _check_unique_columns(path, pq.read_schema(path).names)
            return pd.read_parquet(path, columns=columns)
        sep = _csv_sep(path)
        # every column is parsed (usecols would make pandas ignore the extra fields of ragged rows)
        df = pd.read_csv(path, sep=sep)
    except InvalidInputError:
        raise
    except ValueError as exc:  # missing columns, not really parquet, undecodable bytes
        raise InvalidInputError(f"cannot read {path}: {_first_line(exc)}") from None
    except Exception as exc:  # pandas/pyarrow parser errors: ragged rows, ...
        raise InvalidInputError(f"cannot read {path} as {suffix.lstrip('.') or 'CSV'}: {_first_line(exc)}") from None
    if not df.index.equals(pd.RangeIndex(len(df))):
        raise _long_first_row_error(path, sep, len(df.columns))
    _check_single_column(path, [str(c) for c in df.columns], sep)
    _check_unique_columns(path, df.columns, sep)
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


# Numbers written for people: a currency sign before or after ($, €, £, ¥, ₹), thousands grouped by
# ',' (or "'") with a decimal point ("1,500.64", "$1,500", "-1'500.5"), or grouped by '.' or a
# space with a decimal comma ("1.500,64", "1 500,64", "12,5"). Groups must have exactly three
# digits, so "1,2" is never read as twelve. The decimal comma is only read in a ';'-separated
# file (the convention where it is common), or when the caller says so (``decimal=","``).
_CURRENCY = "$€£¥₹"
_FORMATTED = {
    ".": (re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d{1,3}(?:'\d{3})+|\d+)(?:\.\d*)?|[+-]?\.\d+"), "[,']"),
    ",": (re.compile(r"[+-]?(?:\d{1,3}(?:\.\d{3})+|\d{1,3}(?:[ \u00a0\u202f]\d{3})+|\d+)(?:,\d*)?|[+-]?,\d+"),
          "[. \u00a0\u202f]"),
}
DECIMAL_MARKS = tuple(_FORMATTED)


def parse_formatted_numbers(values, decimal: str) -> np.ndarray:
    """Numbers written with thousands separators, a currency sign or (``decimal=","``) a decimal
    comma, as float64; NaN where a value is missing or not such a number."""
    pd = _pandas()
    pattern, groups = _FORMATTED[decimal]
    text = pd.Series(values).astype("string").str.strip()
    sign = rf"^([+-]?)\s*[{re.escape(_CURRENCY)}]\s*"
    text = text.str.replace(sign, r"\1", regex=True).str.replace(rf"\s*[{re.escape(_CURRENCY)}]$", "", regex=True)
    ok = text.str.fullmatch(pattern.pattern).fillna(False)
    clean = text.where(ok).str.replace(groups, "", regex=True)
    if decimal == ",":
        clean = clean.str.replace(",", ".", regex=False)
    return pd.to_numeric(clean, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _number_format(col, decimal: str = ".") -> str | None:
    """The decimal mark (``"."`` or ``","``) with which every value of a text column reads as a
    formatted number (see :func:`parse_formatted_numbers`); ``None`` when none does. ``decimal``
    is the file's convention: the decimal comma is tried only when it is ``","``."""
    pd = _pandas()
    if not (pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)):
        return None
    values = col.dropna()
    if len(values) == 0:
        return None
    marks = (",", ".") if decimal == "," else (".",)
    for mark in marks:
        if all(not len(part) or not np.isnan(parse_formatted_numbers(part, mark)).any()
               for part in (values.iloc[:1000], values.iloc[1000:])):
            return mark
    return None


# ISO 8601 dates and times, the only text read as timestamps: 2024-03-01, 2024-03-01 13:45,
# 2024-03-01T13:45:07.25Z, 2024-03-01 13:45:07+02:00. Other spellings (01/03/2024, 1 Mar 2024)
# are ambiguous or locale-dependent, and ids or codes must never be taken for dates.
_ISO_DATETIME = (
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?"
)
_EPOCH = "1970-01-01"
_DAY = 86_400.0
DATETIME_FEATURES = ("hour", "weekday", "elapsed_days")
KINDS = ("numeric", "categorical", "datetime")
_KIND_TEXT = {"numeric": "numbers", "categorical": "text categories", "datetime": "dates/times"}
BAD_ROWS = ("fail", "skip", "nan")
#: what an error about a bad value tells the user to do, when scoring and when training
BAD_ROWS_ADVICE = ("clean the data, or pass --on-bad-rows skip|nan (on_bad_rows= in Python) to leave such rows out "
                   "or give them an empty score.")
TRAINING_BAD_ROWS_ADVICE = "clean the data: every training value must be usable (drop or fix such rows)."


def _row_text(row: int) -> str:
    """A 1-based data row, unambiguously."""
    return f"data row {row} (row 1 = the first row after the header)"


def _show(value) -> str:
    """A value from a table, for a message: numpy scalars as Python ones, timestamps as text."""
    if isinstance(value, np.generic):
        value = value.item()
    if hasattr(value, "isoformat") and not isinstance(value, str):
        return str(value)
    return repr(value)


def _is_datetime_dtype(col) -> bool:
    pd = _pandas()
    return bool(pd.api.types.is_datetime64_any_dtype(col))


def _looks_like_dates(values) -> np.ndarray:
    """Per value (a Series of non-missing values): whether it is ISO 8601 date/time text."""
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    text = values.astype("string").str.strip()
    return text.str.fullmatch(_ISO_DATETIME).fillna(False).to_numpy(dtype=bool)


_TZ_SUFFIX = re.compile(r".*\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)")


def _time_zone(col) -> tuple[str | None, str, int]:
    """Whether a column's timestamps carry a time zone: ``("naive" | "aware" | "mixed" | None,
    an example zone, the index of the first value of the minority kind)``; ``None`` without
    values. datetime64 columns are aware when their dtype has a zone; ISO 8601 text is aware
    when its values end in ``Z`` or a UTC offset such as ``+02:00``."""
    if _is_datetime_dtype(col):
        tz = getattr(col.dtype, "tz", None)
        if not col.notna().any():
            return None, "", 0
        return ("aware", str(tz), 0) if tz is not None else ("naive", "", 0)
    present = col.notna().to_numpy(dtype=bool)
    if not present.any():
        return None, "", 0
    text = col.astype("string").str.strip()
    zone = text.str.extract(_TZ_SUFFIX, expand=False)
    aware = zone.notna().to_numpy(dtype=bool) & present
    if aware.all() or not aware[present].any():
        first = int(np.flatnonzero(present)[0])
        return ("aware", str(zone.iloc[first]), 0) if aware[present].all() else ("naive", "", 0)
    minority = aware if aware.sum() <= (present & ~aware).sum() else present & ~aware
    example = str(zone.iloc[int(np.flatnonzero(aware)[0])])
    return "mixed", example, int(np.flatnonzero(minority)[0])


def _parse_seconds(col) -> tuple[np.ndarray, np.ndarray]:
    """``(seconds since 1970-01-01 UTC, float64 with NaN for missing, unreadable mask)`` of a
    column of timestamps: datetime64 (time-zone aware ones converted to UTC) or ISO 8601 text
    (text with a UTC offset converted to UTC, text without one taken as is)."""
    pd = _pandas()
    if _is_datetime_dtype(col):
        ts = col
        if getattr(col.dtype, "tz", None) is not None:
            ts = col.dt.tz_convert("UTC").dt.tz_localize(None)
        seconds = (ts - pd.Timestamp(_EPOCH)).dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan)
        return seconds, np.zeros(len(col), dtype=bool)
    present = col.notna().to_numpy(dtype=bool)
    text = col.astype("string").str.strip()
    iso = text.str.fullmatch(_ISO_DATETIME).fillna(False)
    parsed = pd.to_datetime(text.where(iso), format="ISO8601", utc=True, errors="coerce")
    seconds = (parsed.dt.tz_localize(None) - pd.Timestamp(_EPOCH)).dt.total_seconds()
    seconds = seconds.to_numpy(dtype=np.float64, na_value=np.nan)
    return seconds, present & np.isnan(seconds)


def _is_datetime(col) -> bool:
    """Whether a column holds timestamps: a datetime64 dtype, or text whose every value is an
    ISO 8601 date or date-time that parses (so ids and codes are never taken for dates)."""
    pd = _pandas()
    if _is_datetime_dtype(col):
        return bool(col.notna().any())
    if not (pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)):
        return False
    values = col.dropna()
    if len(values) == 0:
        return False
    for part in (values.iloc[:1000], values.iloc[1000:]):  # a text column fails on its first values
        if len(part) and not _looks_like_dates(part).all():
            return False
    _, unreadable = _parse_seconds(values)
    return not unreadable.any()


def datetime_features(seconds: np.ndarray, origin: float) -> np.ndarray:
    """The features of timestamps (seconds since 1970-01-01, no NaN): hour of the day (0-24,
    fractional), day of the week (0 = Monday) and days elapsed since ``origin`` (the training
    minimum), as ``(n, 3)`` float64."""
    days = np.floor(seconds / _DAY)
    out = np.empty((seconds.shape[0], 3), dtype=np.float64)
    out[:, 0] = (seconds - days * _DAY) / 3600.0
    out[:, 1] = np.mod(days + 3.0, 7.0)  # 1970-01-01 was a Thursday
    out[:, 2] = (seconds - origin) / _DAY
    return out


def _format_seconds(seconds: float) -> str:
    pd = _pandas()
    return str(pd.Timestamp(_EPOCH) + pd.Timedelta(seconds=float(seconds)))


@dataclass
class Prepared:
    """What :meth:`TablePreprocessor.transform_checked` returns for a table (or a chunk of one)."""

    X: np.ndarray  #: features, float64, finite (a bad row holds the typical row, see ``bad``)
    bad: np.ndarray  #: per row: a value could not be used (only with on_bad_rows 'skip' or 'nan')
    first_bad: str | None  #: the first bad value, described (column, data row, value)
    out_of_range: dict[str, int]  #: per numeric column: values outside the training [min, max]


@dataclass
class TablePreprocessor:
    """Column-wise preprocessing learnt from a training table.

    Each feature column gets a kind at fit (``kinds_``): ``"numeric"`` (numbers, also numbers
    stored as text), ``"datetime"`` (a datetime64 column, or text whose every value is an ISO 8601
    date or date-time such as ``2024-03-01 13:45:07``) or ``"categorical"`` (any other text).
    :meth:`transform` refuses a column whose values are of another kind than in training (dates
    where training had numbers, numbers where it had text categories, ...), naming the column, both
    kinds and a row.

    A datetime column becomes three features, ``<column>:hour`` (hour of the day, 0-24 with
    minutes as fractions), ``<column>:weekday`` (0 = Monday ... 6 = Sunday) and
    ``<column>:elapsed_days`` (days since the earliest training timestamp), never a one-hot block
    of distinct timestamps. Times with a UTC offset or a time zone are converted to UTC first;
    naive times are taken as they are. A missing timestamp is imputed with the training median
    timestamp, as missing numbers are imputed with their column's median.

    Parameters
    ----------
    categorical : {"onehot", "reject", "drop"}
        What to do with non-numeric columns: one-hot encode them, refuse them, or leave them out
        (``dropped_columns_``; they may then be present or absent at scoring time). Timestamps
        are features in every mode.
    missing : {"impute", "reject"}
        What to do with missing values.
    exclude : list of str
        Columns that are not features (label, id).
    """

    categorical: str = "onehot"
    missing: str = "impute"
    exclude: list[str] = field(default_factory=list)
    #: the file's decimal mark: with ``","`` text numbers with a decimal comma are numbers too
    decimal: str = "."
    numeric_columns_: list[str] = field(default_factory=list)
    medians_: dict[str, float] = field(default_factory=dict)
    categories_: dict[str, list[str]] = field(default_factory=dict)
    input_columns_: list[str] = field(default_factory=list)
    dropped_columns_: list[str] = field(default_factory=list)
    modes_: dict[str, str] = field(default_factory=dict)
    kinds_: dict[str, str] = field(default_factory=dict)
    #: per datetime column, in feature order: ``{"min", "median", "max"}`` in seconds since 1970 (UTC)
    datetimes_: dict[str, dict[str, float]] = field(default_factory=dict)
    #: per numeric column: the training ``[min, max]`` (empty for files written before it existed)
    ranges_: dict[str, list[float]] = field(default_factory=dict)
    #: numeric columns written as text with separators or a currency sign: their decimal mark
    number_formats_: dict[str, str] = field(default_factory=dict)
    #: per datetime column: ``{"kind": "naive" | "aware", "zone": an example zone}`` from training
    time_zones_: dict[str, dict[str, str]] = field(default_factory=dict)
    #: columns left out because every training value was missing or equal (no information)
    constant_columns_: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.categorical not in ("onehot", "reject", "drop"):
            raise InvalidInputError(
                f"categorical must be 'onehot', 'reject' or 'drop', got {self.categorical!r}."
            )
        if self.missing not in ("impute", "reject"):
            raise InvalidInputError(f"missing must be 'impute' or 'reject', got {self.missing!r}.")
        if self.decimal not in DECIMAL_MARKS:
            raise InvalidInputError(f"decimal must be '.' or ',', got {self.decimal!r}.")

    @property
    def datetime_columns_(self) -> list[str]:
        return list(self.datetimes_)

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, df) -> TablePreprocessor:
        pd = _pandas()
        features = [c for c in df.columns if c not in self.exclude]
        if not features:
            raise InvalidInputError("the table has no feature columns besides the label/id columns.")
        duplicated = duplicated_names(df.columns)
        if duplicated:
            raise InvalidInputError(f"columns {duplicated} appear more than once: give every column its own name.")
        numeric, self.number_formats_ = [], {}
        for c in features:  # numbers, or numbers written with separators or a currency sign
            if _is_numeric(df[c]):
                numeric.append(c)
                continue
            mark = _number_format(df[c], self.decimal)
            if mark is not None:
                self.number_formats_[str(c)] = mark
                numeric.append(c)
        dates = [c for c in features if c not in numeric and _is_datetime(df[c])]
        self.constant_columns_ = [str(c) for c in features if self._constant(df[c], c in numeric, c in dates)]
        if self.constant_columns_:
            if len(self.constant_columns_) == len(features):
                raise InvalidInputError(
                    f"every feature column is empty or holds a single value ({self.constant_columns_}): "
                    "there is nothing to learn from."
                )
            warnings.warn(
                f"columns {self.constant_columns_} are empty or hold a single value in training: they are "
                "left out of the features (a model cannot learn from them).", DataWarning, stacklevel=2,
            )
            features = [c for c in features if str(c) not in self.constant_columns_]
            numeric = [c for c in numeric if c in features]
            dates = [c for c in dates if c in features]
        other = [c for c in features if c not in numeric and c not in dates]
        if other and self.categorical == "reject":
            raise InvalidInputError(
                f"non-numeric columns {[str(c) for c in other]}: drop them or let them be one-hot "
                "encoded (categorical='onehot')."
            )
        self.dropped_columns_ = []
        if self.categorical == "drop":
            self.dropped_columns_ = [str(c) for c in other]
            features, other = [c for c in features if c in numeric or c in dates], []
            if not features:
                raise InvalidInputError(
                    f"every feature column is non-numeric ({self.dropped_columns_}): nothing is left "
                    "after dropping them; let them be one-hot encoded instead."
                )
        self.input_columns_ = [str(c) for c in features]
        self._check_missing(df, features)
        self.kinds_ = {
            str(c): "numeric" if c in numeric else "datetime" if c in dates else "categorical" for c in features
        }
        self.numeric_columns_ = [str(c) for c in numeric]
        self.medians_ = {}
        self.ranges_ = {}
        for c in numeric:
            col = pd.Series(self._numbers(df[c], str(c)), index=df.index)
            med = col.median()
            self.medians_[str(c)] = float(med) if np.isfinite(med) else 0.0
            finite = col[np.isfinite(col.to_numpy(dtype=np.float64, na_value=np.nan))]
            if len(finite):
                self.ranges_[str(c)] = [float(finite.min()), float(finite.max())]
        self.datetimes_ = {}
        self.time_zones_ = {}
        for c in dates:
            kind, zone, i = _time_zone(df[c])
            if kind == "mixed":
                raise InvalidInputError(
                    f"column {str(c)!r} mixes times with a time zone ({zone}) and times without one "
                    f"({_show(df[c].iloc[i])} in {_row_text(1 + i)}): write them all one way."
                )
            self.time_zones_[str(c)] = {"kind": kind, "zone": zone}
            seconds, _ = _parse_seconds(df[c])
            seen = seconds[~np.isnan(seconds)]
            self.datetimes_[str(c)] = {
                "min": float(seen.min()), "median": float(np.median(seen)), "max": float(seen.max()),
            }
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

    def _check_missing(self, df, columns, first_row: int = 1) -> None:
        if self.missing != "reject":
            return
        missing = [str(c) for c in columns if df[c].isna().any()]
        if missing:
            row = first_row + int(np.flatnonzero(df[missing[0]].isna().to_numpy(dtype=bool))[0])
            raise InvalidInputError(
                f"missing values in columns {missing} (the first in column {missing[0]!r}, {_row_text(row)}): "
                "fill them or let them be imputed (missing='impute')."
            )

    def _numbers(self, col, c: str) -> np.ndarray:
        """A numeric column's values as float64 (NaN where missing or unreadable)."""
        pd = _pandas()
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            return col.to_numpy(dtype=np.float64, na_value=np.nan)
        if c in self.number_formats_:
            return parse_formatted_numbers(col, self.number_formats_[c])
        try:
            return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):  # objects that are not scalars
            return np.full(len(col), np.nan)

    def _constant(self, col, numeric: bool, date: bool) -> bool:
        """Whether a training column carries no information: every value missing, or one value
        everywhere (none missing; a single value beside missing ones keeps the missingness as a
        category or an imputed feature)."""
        if not col.notna().any():
            return True
        if col.isna().any():
            return False
        if numeric:
            values = self._numbers(col, str(col.name))
        elif date:
            values, _ = _parse_seconds(col)
        else:
            return col.astype("string").nunique() <= 1
        return bool(np.all(values == values[0]))

    # -- transforming --------------------------------------------------------------------------
    @property
    def feature_names_(self) -> list[str]:
        names = list(self.numeric_columns_)
        for c in self.datetimes_:
            names.extend(f"{c}:{f}" for f in DATETIME_FEATURES)
        for c, cats in self.categories_.items():
            names.extend(f"{c}={v}" for v in cats)
            names.append(f"{c}={OTHER_CATEGORY}")
        return names

    @property
    def feature_groups_(self) -> list[tuple[str, list[int]]]:
        """Each input column with the indices of the features it becomes (one, the features of a
        timestamp, or its one-hot block)."""
        groups = [(c, [i]) for i, c in enumerate(self.numeric_columns_)]
        start = len(self.numeric_columns_)
        for c in self.datetimes_:
            groups.append((c, list(range(start, start + len(DATETIME_FEATURES)))))
            start += len(DATETIME_FEATURES)
        for c, cats in self.categories_.items():
            groups.append((c, list(range(start, start + len(cats) + 1))))
            start += len(cats) + 1
        return groups

    def baseline_(self) -> np.ndarray:
        """A typical training row in feature space: each numeric column at its training median,
        each timestamp at the training median timestamp, each categorical column at its most
        frequent training category (used by explanations)."""
        if not self.input_columns_:
            raise InvalidInputError("the preprocessor is not fitted: call fit first.")
        parts = [np.array([self.medians_[c] for c in self.numeric_columns_], dtype=np.float64)]
        for stats in self.datetimes_.values():
            parts.append(datetime_features(np.array([stats["median"]]), stats["min"])[0])
        for c, cats in self.categories_.items():
            onehot = np.zeros(len(cats) + 1)
            mode = self.modes_.get(c, OTHER_CATEGORY)
            onehot[cats.index(mode) if mode in cats else len(cats)] = 1.0
            parts.append(onehot)
        return np.concatenate(parts)

    def typical_values_(self) -> dict[str, str]:
        """Each input column's typical training value as text (median, median timestamp, most
        frequent category)."""
        out = {c: f"{self.medians_[c]:.6g}" for c in self.numeric_columns_}
        out.update({c: _format_seconds(s["median"]) for c, s in self.datetimes_.items()})
        out.update(self.modes_)
        return out

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
        allowed |= set(self.constant_columns_)
        allowed |= {str(c) for c in allowed_extra}
        extra = sorted(present_set - allowed)
        duplicated = duplicated_names(present)
        if missing_cols or extra or duplicated:
            parts, todo = [], []
            if missing_cols:
                parts.append(f"missing columns {missing_cols}")
            if extra:
                parts.append(f"unexpected columns {extra}")
            ids = " (a column that only identifies the rows can be named as the id column instead)"
            if missing_cols and extra:
                todo.append("give a renamed column its training name, add the other missing columns and drop the "
                            "other unexpected ones" + ids)
            elif missing_cols:
                todo.append("add the missing columns: the model scores with every training column")
            elif extra:
                todo.append("drop the unexpected columns" + ids)
            if duplicated:
                parts.append(f"duplicated columns {duplicated}")
                todo.append("give every column its own name")
            raise InvalidInputError(
                f"the table does not match the training columns: {'; '.join(parts)}. To score it, "
                f"{'; '.join(todo)}."
            )

    @staticmethod
    def _kind_error(c: str, trained: str, now: str, col, mask, first_row: int) -> InvalidInputError:
        i = int(np.flatnonzero(np.asarray(mask, dtype=bool))[0])
        return InvalidInputError(
            f"column {c!r} held {_KIND_TEXT[trained]} in training but holds {now} now ({_show(col.iloc[i])} in "
            f"{_row_text(first_row + i)}): convert it back to {_KIND_TEXT[trained]}, or fit a new model on data "
            "of this type."
        )

    @staticmethod
    def _kind_now(col, present: np.ndarray) -> str:
        """What the non-missing values of a column are: dates/times, numbers or text."""
        pd = _pandas()
        if _is_datetime_dtype(col):
            return "dates/times (datetime64)"
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            return "numbers"
        values = col[present]
        if _looks_like_dates(values).all():
            return "dates/times"
        try:
            if not pd.to_numeric(values, errors="coerce").isna().any():
                return "numbers"
        except (TypeError, ValueError):
            pass
        return "text"

    def transform(self, df) -> np.ndarray:
        """Apply the fitted preprocessing; columns are matched by name. Any value that cannot be
        used (text in a numeric column, an infinite number, a timestamp that does not parse) is an
        :class:`InvalidInputError` naming its column and 1-based data row."""
        return self.transform_checked(df).X

    def transform_checked(
        self, df, *, on_bad_rows: str = "fail", first_row: int = 1, max_abs: float | None = None,
        advice: str = BAD_ROWS_ADVICE,
    ) -> Prepared:
        """:meth:`transform` with a choice for bad values, and drift counts.

        Parameters
        ----------
        df : DataFrame
        on_bad_rows : {"fail", "skip", "nan"}
            A bad value (non-numeric text in a numeric column, a non-finite number, a number of
            magnitude beyond ``max_abs``, a timestamp that does not parse) raises an
            :class:`InvalidInputError` naming the column and row (``"fail"``), or marks its row in
            ``Prepared.bad`` (``"skip"``, ``"nan"``: the caller leaves the row out or gives it an
            empty score; its features hold the typical row so the matrix stays finite). A column
            whose values are all of another kind than in training is an error in every mode.
        first_row : int
            The 1-based data row of ``df``'s first row (for messages about chunks of a file).
        max_abs : float, optional
            Numbers beyond this magnitude are bad values.
        """
        pd = _pandas()
        if on_bad_rows not in BAD_ROWS:
            raise InvalidInputError(f"on_bad_rows must be one of {list(BAD_ROWS)}, got {on_bad_rows!r}.")
        self.check_columns(df.columns)
        df = df.rename(columns=str)
        self._check_missing(df, self.input_columns_, first_row)
        n = len(df)
        width = len(self.feature_names_)
        X = np.empty((n, width), dtype=np.float64)
        bad = np.zeros(n, dtype=bool)
        problems: list[tuple[int, str]] = []  # (first row index, description) per column

        def flag(mask: np.ndarray, column: str, col, what: str) -> None:
            if mask.any():
                i = int(np.flatnonzero(mask)[0])
                problems.append((i, f"column {column!r} holds {what}: {_show(col.iloc[i])} in {_row_text(first_row + i)}"))
                bad[mask] = True

        out_of_range: dict[str, int] = {}
        for i, c in enumerate(self.numeric_columns_):
            col = df[c]
            present = col.notna().to_numpy(dtype=bool)
            if _is_datetime_dtype(col) and present.any():
                raise self._kind_error(c, "numeric", "dates/times (datetime64)", col, present, first_row)
            if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
                values = col.to_numpy(dtype=np.float64, na_value=np.nan)  # no parsing needed
            else:
                parsed = pd.Series(self._numbers(col, c), index=col.index)
                unread = parsed.isna().to_numpy(dtype=bool) & present
                if unread.any() and unread.sum() == present.sum():
                    # every value unreadable: a column of another kind, unless it is a single value
                    now = self._kind_now(col, present)
                    if now.startswith("dates/times") or present.sum() > 1:
                        raise self._kind_error(c, "numeric", now, col, present, first_row)
                flag(unread, c, col, "non-numeric values but was numeric in training")
                values = np.where(unread, np.nan, parsed.to_numpy(dtype=np.float64, na_value=np.nan))
            with np.errstate(invalid="ignore"):
                flag(np.isinf(values), c, col, "a non-finite value")
                if max_abs is not None:
                    big = np.isfinite(values) & (np.abs(values) > max_abs)
                    if big.any():
                        j = int(np.flatnonzero(big)[0])
                        flag(big, c, col, f"a value of magnitude {abs(values[j]):.3g}, beyond {max_abs:.0e}")
            values = np.where(np.isfinite(values), values, np.nan)
            nan = np.isnan(values)
            if c in self.ranges_:
                lo, hi = self.ranges_[c]
                with np.errstate(invalid="ignore"):
                    out_of_range[c] = int(((values < lo) | (values > hi)).sum())
            X[:, i] = np.where(nan, self.medians_[c], values) if nan.any() else values
        start = len(self.numeric_columns_)
        for c, stats in self.datetimes_.items():
            col = df[c]
            present = col.notna().to_numpy(dtype=bool)
            if present.any() and (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
                raise self._kind_error(c, "datetime", "numbers", col, present, first_row)
            self._check_time_zone(c, col, first_row)
            seconds, unread = _parse_seconds(col)
            if unread.any() and unread.sum() == present.sum():
                now = self._kind_now(col, present)
                if now == "numbers" or present.sum() > 1:
                    raise self._kind_error(c, "datetime", now, col, present, first_row)
            flag(unread, c, col, "a value that is not an ISO 8601 date/time such as 2024-03-01 13:45:00")
            seconds = np.where(np.isnan(seconds), stats["median"], seconds)
            X[:, start : start + len(DATETIME_FEATURES)] = datetime_features(seconds, stats["min"])
            start += len(DATETIME_FEATURES)
        rows = np.arange(n)
        for c, cats in self.categories_.items():
            col = df[c]
            present = col.notna().to_numpy(dtype=bool)
            values = col.astype("string").fillna(MISSING_CATEGORY).to_numpy(dtype=object)
            idx = pd.Index(cats, dtype=object).get_indexer(values)
            if present.any() and not (idx[present] >= 0).any():
                self._check_category_kind(c, cats, col, present, first_row)
            idx[idx < 0] = len(cats)  # unseen -> __other__
            block = X[:, start : start + len(cats) + 1]
            block[:] = 0.0
            block[rows, idx] = 1.0
            start += len(cats) + 1
        if problems:
            i, what = min(problems)
            if on_bad_rows == "fail":
                more = int(bad.sum()) - 1
                raise InvalidInputError(
                    f"{what}"
                    + (f", and {more} more row{'s' if more > 1 else ''} with bad values" if more > 0 else "")
                    + f": {advice}"
                )
            X[bad] = self.baseline_()
            first_bad = what
        else:
            first_bad = None
        if not np.isfinite(X).all():
            row, j = np.argwhere(~np.isfinite(X))[0]
            raise InvalidInputError(
                f"non-finite value in {_row_text(first_row + int(row))}, feature {self.feature_names_[j]!r}: clean the data."
            )
        return Prepared(X=X, bad=bad, first_bad=first_bad, out_of_range=out_of_range)

    def _check_time_zone(self, c: str, col, first_row: int) -> None:
        """Timestamps with a time zone where training had none, or the reverse, are an error: the
        conversion to UTC would shift the hour and weekday features silently."""
        trained = self.time_zones_.get(c)
        if trained is None:  # a model file written before time zones were recorded
            return
        kind, zone, i = _time_zone(col)
        if kind is None or kind == trained["kind"]:
            return
        had = f"a time zone ({trained['zone']})" if trained["kind"] == "aware" else "no time zone"
        if kind == "mixed":
            now = "times with and without a time zone"
        else:
            now = f"times with a time zone ({zone})" if kind == "aware" else "times without a time zone"
            i = int(np.flatnonzero(col.notna().to_numpy(dtype=bool))[0])
        fix = ("write them in the training's local time without an offset" if trained["kind"] == "naive"
               else f"give them a time zone as in training ({trained['zone']})")
        raise InvalidInputError(
            f"column {c!r} held times with {had} in training but holds {now} ({_show(col.iloc[i])} in "
            f"{_row_text(first_row + i)}): {fix}, or fit a new model on such times."
        )

    def _check_category_kind(self, c: str, cats: list[str], col, present: np.ndarray, first_row: int) -> None:
        """No value of a categorical column is a training category: refuse numbers or dates where
        training had text (unless training categories looked like those too)."""
        pd = _pandas()
        now = self._kind_now(col, present)
        known = pd.Series([v for v in cats if v != MISSING_CATEGORY], dtype="string")
        if now.startswith("dates/times") and not _looks_like_dates(known).any():
            raise self._kind_error(c, "categorical", now, col, present, first_row)
        if now == "numbers" and not pd.to_numeric(known, errors="coerce").notna().any():
            raise self._kind_error(c, "categorical", now, col, present, first_row)

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
            "kinds": self.kinds_,
            # pairs too: the datetime features follow this order
            "datetimes": [[c, dict(stats)] for c, stats in self.datetimes_.items()],
            "ranges": self.ranges_,
            "number_formats": self.number_formats_,
            "constant_columns": self.constant_columns_,
            "time_zones": self.time_zones_,
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
            numeric = [str(c) for c in state["numeric_columns"]]
            categories = {str(k): [str(x) for x in v] for k, v in categories}
            datetimes = {
                str(c): {k: float(s[k]) for k in ("min", "median", "max")} for c, s in state.get("datetimes", [])
            }
            kinds = state.get("kinds")
            if kinds is None:  # written before kinds were stored: numeric or categorical
                kinds = {c: "numeric" if c in numeric else "categorical" for c in input_columns}
            kinds = {str(k): str(v) for k, v in kinds.items()}
            expected = {**{c: "numeric" for c in numeric}, **{c: "datetime" for c in datetimes},
                        **{c: "categorical" for c in categories}}
            if kinds != expected or set(kinds) != set(input_columns):
                raise ValueError("the column kinds do not match the numeric, datetime and categorical columns")
            formats = {str(k): str(v) for k, v in state.get("number_formats", {}).items()}
            zones = {str(k): {"kind": str(v["kind"]), "zone": str(v.get("zone", ""))}
                     for k, v in state.get("time_zones", {}).items()}
            if any(c not in datetimes or v["kind"] not in ("naive", "aware") for c, v in zones.items()):
                raise ValueError("time zones of columns that are not timestamps")
            if any(c not in numeric or v not in DECIMAL_MARKS for c, v in formats.items()):
                raise ValueError("number formats of columns that are not numeric, or unknown decimal marks")
            ranges = {}
            for k, v in state.get("ranges", {}).items():
                lo, hi = (float(x) for x in v)
                ranges[str(k)] = [lo, hi]
            return cls(
                categorical=state["categorical"],
                missing=state["missing"],
                exclude=list(state["exclude"]),
                numeric_columns_=numeric,
                medians_={str(k): float(v) for k, v in state["medians"].items()},
                categories_=categories,
                input_columns_=input_columns,
                dropped_columns_=[str(c) for c in state.get("dropped_columns", [])],
                modes_={str(k): str(v) for k, v in state.get("modes", {}).items()},
                kinds_=kinds,
                datetimes_=datetimes,
                ranges_=ranges,
                number_formats_=formats,
                constant_columns_=[str(c) for c in state.get("constant_columns", [])],
                time_zones_=zones,
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


#: label values read as a known anomaly / as normal (trimmed, any case) by ``fit``, ``evaluate``
#: and :func:`read_table` alike, without --positive-label
POSITIVE_LABELS = ("1", "1.0", "true", "yes", "y", "anomaly", "anomalous", "outlier")
NEGATIVE_LABELS = ("0", "0.0", "false", "no", "n", "normal", "inlier")


def label_text(values):
    """The values of a label column as trimmed text (a pandas string Series); empty -> missing."""
    pd = _pandas()
    text = pd.Series(values).astype("string").str.strip()
    return text.mask(text == "")


def matches_label(text, positive_label: str, *, where: str, listing) -> np.ndarray:
    """Rows of :func:`label_text` equal to ``positive_label``: as text (trimmed, any case), or as
    numbers when both are numbers (``"1"`` matches ``1.0``).

    Raises :class:`InvalidInputError` when no row matches, naming ``where`` (e.g. ``"label column
    'y'"``) and the column's most frequent values as ``listing(present values)`` shows them."""
    pd = _pandas()
    target = str(positive_label).strip()
    match = (text.str.lower() == target.lower()).fillna(False).to_numpy(dtype=bool)
    number = pd.to_numeric(pd.Series([target]), errors="coerce").iloc[0]
    if not pd.isna(number):
        with np.errstate(invalid="ignore"):
            parsed = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        match |= parsed == float(number)
    if not match.any():
        raise InvalidInputError(
            f"no value of {where} is {target!r} (--positive-label); its most frequent values are "
            f"{listing(text.dropna())}."
        )
    return match


def _distinct(values, n: int = 5) -> list[str]:
    counts = values.value_counts()
    return [str(v) for v in counts.index[:n]]


def labels_from_column(values, positive_label: str | None = None, *, column: str = "label") -> np.ndarray:
    """Weak labels from a label column: 1 = known anomaly, 0 = unlabeled; an empty value is unlabeled.

    Without ``positive_label`` a value of :data:`POSITIVE_LABELS` (1, true, yes, y, anomaly,
    anomalous, outlier; any case) marks a known anomaly. With it, values equal to
    ``positive_label`` do (compared as text, trimmed and in any case, or as numbers when both are
    numbers: ``"1"`` matches ``1.0``).

    Raises :class:`InvalidInputError` (naming ``column``) when no row comes out as a known anomaly
    (``positive_label`` matches no value; no value is recognised, e.g. ``fraud``/``legit``; every
    value is 0, no, normal or empty: an unsupervised fit is asked for by giving no label column),
    and when more than half the rows do (an inverted label, or the -1/1 convention where 1 means
    normal).
    """
    text = label_text(values)
    as_str = text.str.lower()
    present = text.dropna()
    hint = "pass --positive-label VALUE (positive_label= in Python) with the value that marks known anomalies"
    if positive_label is not None:
        positive = matches_label(text, positive_label, where=f"label column {column!r}", listing=_distinct)
    else:
        positive = as_str.isin(list(POSITIVE_LABELS)).fillna(False).to_numpy(dtype=bool)
        unknown = present[~present.str.lower().isin(list(POSITIVE_LABELS + NEGATIVE_LABELS))]
        if not positive.any() and len(unknown):
            rare = present.value_counts().index[-1]
            raise InvalidInputError(
                f"label column {column!r} has values {_distinct(present)} but none is recognised as a known anomaly "
                f"({', '.join(POSITIVE_LABELS)}): {hint}, e.g. --positive-label {rare}."
            )
        if not positive.any():
            seen = f"its values are {_distinct(present)}" if len(present) else "every value is empty"
            raise InvalidInputError(
                f"label column {column!r} marks no row as a known anomaly ({seen}): {hint}, or leave the label "
                "column out (no --label-column) to fit without labels on purpose."
            )
    n_pos, n = int(positive.sum()), len(positive)
    if n_pos * 2 > n:
        values_seen = set(present.str.lower())
        if "-1" in values_seen or "-1.0" in values_seen:
            cause = ("it looks like the -1/1 convention, where 1 means normal and -1 an anomaly: pass "
                     "--positive-label -1")
        else:
            cause = ("the label looks inverted (the positive value marks normal rows): pass --positive-label "
                     "with the value that marks the few known anomalies")
        raise InvalidInputError(
            f"{n_pos} of {n} rows of label column {column!r} are known anomalies: more than half; {cause}."
        )
    return positive.astype(np.int64)


def read_table(
    path: str | os.PathLike,
    label_column: str | None = None,
    *,
    id_column: str | None = None,
    categorical: str = "onehot",
    missing: str = "impute",
    preprocessor: TablePreprocessor | None = None,
    positive_label: str | None = None,
) -> Table:
    """Read a CSV or Parquet file as features (and weak labels).

    Parameters
    ----------
    path : path
        ``.csv``, ``.tsv`` or ``.parquet`` file with a header row.
    label_column : str, optional
        Column of weak labels: 1 (true, yes, anomaly) = known anomaly, anything else or empty =
        unlabeled; see :func:`labels_from_column` for the checks.
    id_column : str, optional
        Column of row ids, kept aside and not used as a feature.
    categorical : {"onehot", "reject", "drop"}
        Non-numeric columns are one-hot encoded, rejected with a message naming them, or dropped.
    missing : {"impute", "reject"}
        Missing values are imputed (training median; ``__missing__`` category), or rejected.
    preprocessor : TablePreprocessor, optional
        An already fitted preprocessing (from training) to apply instead of fitting a new one.
    positive_label : str, optional
        The value of ``label_column`` that marks a known anomaly (e.g. ``"fraud"``).

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
    if positive_label is not None and label_column is None:
        raise InvalidInputError("a positive label was given without a label column: pass --label-column too.")
    y = (labels_from_column(df[label_column], positive_label, column=label_column)
         if label_column is not None else None)
    ids = df[id_column].to_numpy() if id_column is not None else None
    exclude = [c for c in (label_column, id_column) if c is not None]
    advice = BAD_ROWS_ADVICE
    if preprocessor is None:  # fitting: a bad training value can only be fixed in the data
        preprocessor = TablePreprocessor(categorical=categorical, missing=missing, exclude=exclude,
                                         decimal=csv_decimal(path)).fit(df)
        advice = TRAINING_BAD_ROWS_ADVICE
    X = preprocessor.transform_checked(df.drop(columns=exclude), advice=advice).X
    return Table(X=X, y=y, ids=ids, feature_names=preprocessor.feature_names_, preprocessor=preprocessor)
