"""Input checks shared by every entry point.

Each check raises :class:`~swifthydra.exceptions.InvalidInputError` with a one-line message that
names the problem and what to do, instead of letting a confusing error surface from deep inside
numpy or PyTorch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from swifthydra.exceptions import InvalidInputError

# Values beyond this magnitude overflow float32 arithmetic inside the networks.
MAX_ABS_VALUE = 1e30


def check_X(
    X: Any,
    *,
    name: str = "X",
    n_features: int | None = None,
    min_rows: int = 1,
    dtype: type = np.float64,
    max_abs: float | None = MAX_ABS_VALUE,
) -> np.ndarray:
    """Validate a 2-D numeric feature matrix and return it as a contiguous array.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Numpy array, torch tensor, pandas DataFrame or nested lists of numbers.
    name : str
        Name used in error messages.
    n_features : int, optional
        Required number of columns (e.g. the number seen in ``fit``).
    min_rows : int
        Minimum number of rows.
    dtype : numpy dtype
        Floating dtype of the returned array.
    max_abs : float or None
        Largest allowed absolute value; ``None`` disables the check.

    Returns
    -------
    numpy.ndarray of shape (n_samples, n_features)
    """
    if X is None:
        raise InvalidInputError(f"{name} is None: pass a 2-D array of shape (n_samples, n_features).")
    if hasattr(X, "detach") and hasattr(X, "cpu"):  # torch tensor
        X = X.detach().cpu().numpy()
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise InvalidInputError(
            f"{name} is a sparse matrix, and sparse input is not supported: pass a dense array (X.toarray())."
        )
    if hasattr(X, "select_dtypes") and hasattr(X, "to_numpy"):  # pandas DataFrame
        non_numeric = [str(c) for c in X.select_dtypes(exclude=["number", "bool"]).columns]
        if non_numeric:
            raise InvalidInputError(
                f"{name} has non-numeric columns {non_numeric[:5]}: encode them first "
                "(swifthydra.datasets.read_table one-hot encodes them); a model fitted with `swifthydra fit` "
                "scores the raw table with its saved preprocessing: swifthydra.load_model(model_dir).decision_function(df)."
            )
        # nullable dtypes (Int64, boolean) hold pd.NA: read it as NaN, reported below
        X = X.to_numpy(dtype=np.float64, na_value=np.nan)
    elif hasattr(X, "to_numpy") and hasattr(X, "dtype"):  # pandas Series (1-D: rejected below)
        X = X.to_numpy()
    if isinstance(X, np.ma.MaskedArray):  # masked entries are missing values
        X = np.ma.asarray(X, dtype=np.float64).filled(np.nan)
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged nested lists and the like
        raise InvalidInputError(f"{name} cannot be read as an array ({exc}): pass a 2-D numeric array.") from None
    if arr.dtype == object or arr.dtype.kind in "USV":
        try:
            arr = arr.astype(np.float64)
        except OverflowError:  # Python ints beyond float64
            raise InvalidInputError(
                f"{name} contains an integer too large for float64: rescale or clip the data."
            ) from None
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"{name} contains non-numeric values (dtype {arr.dtype}): convert or one-hot encode "
                "text columns before fitting."
            ) from None
    if arr.dtype.kind == "c":
        raise InvalidInputError(f"{name} is complex-valued (Complex data not supported): pass real numbers.")
    if arr.dtype.kind not in "biuf":
        raise InvalidInputError(f"{name} has unsupported dtype {arr.dtype}: pass a numeric array.")
    if arr.ndim != 2:
        hint = " (use X.reshape(-1, 1) for a single feature)" if arr.ndim == 1 else ""
        raise InvalidInputError(
            f"{name} must be 2-D (n_samples, n_features), got {arr.ndim}-D with shape {arr.shape}{hint}."
        )
    if arr.shape[0] < min_rows:
        raise InvalidInputError(f"{name} has {arr.shape[0]} rows (n_samples={arr.shape[0]}); at least {min_rows} required.")
    if arr.shape[1] == 0:
        raise InvalidInputError(f"{name} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required: pass at least one feature.")
    if n_features is not None and arr.shape[1] != n_features:
        raise InvalidInputError(
            f"{name} has {arr.shape[1]} features but the model was fitted with {n_features}: "
            "pass the same columns as in fit."
        )
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=dtype)
    finite = np.isfinite(out)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        original = arr[row, col]
        if arr.dtype.kind == "f" and np.isnan(original):
            what = "NaN"
        elif arr.dtype.kind == "f" and not np.isfinite(original):
            what = "infinite values"
        else:
            what = f"a value too large for {np.dtype(dtype).name}"
        raise InvalidInputError(
            f"{name} contains {what} (first at row {row}, column {col}): "
            "impute, clip or drop such values before fitting or scoring."
        )
    # the bound rounded like the data: a value <= max_abs stays <= it after a cast to float32
    if max_abs is not None and out.size and float(np.abs(out).max()) > float(out.dtype.type(max_abs)):
        bad = np.unravel_index(int(np.abs(out).argmax()), out.shape)
        raise InvalidInputError(
            f"{name} has a value of magnitude {abs(out[bad]):.3g} at row {bad[0]}, column {bad[1]}, "
            f"beyond the supported {max_abs:.0e}: rescale or clip the data."
        )
    return out


def check_y(y: Any, n_rows: int, *, name: str = "y") -> np.ndarray:
    """Validate weak labels: 1 = known anomaly, 0 = unlabeled. Returns an int64 array."""
    if y is None:
        raise InvalidInputError(
            f"{name} is None: pass one label per row (1 = known anomaly, 0 = unlabeled)."
        )
    if hasattr(y, "detach") and hasattr(y, "cpu"):
        y = y.detach().cpu().numpy()
    if hasattr(y, "to_numpy"):  # pandas Series: nullable dtypes (Int64, boolean) hold pd.NA
        try:
            y = y.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            y = y.to_numpy()
    try:
        arr = np.asarray(y)
    except Exception as exc:
        raise InvalidInputError(f"{name} cannot be read as an array ({exc}).") from None
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be 1-D with one label per row, got shape {arr.shape}.")
    if arr.shape[0] != n_rows:
        raise InvalidInputError(f"{name} has {arr.shape[0]} labels but X has {n_rows} rows.")
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.kind == "c":
        raise InvalidInputError(f"{name} is complex-valued: pass 0 (unlabeled) and 1 (known anomaly).")
    try:
        num = arr.astype(np.float64)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(f"{name} must hold 0 (unlabeled) and 1 (known anomaly), got dtype {arr.dtype}.") from None
    if not np.isfinite(num).all() or not np.isin(num, (0.0, 1.0)).all():
        bad = np.unique(num[~np.isin(num, (0.0, 1.0))])[:5]
        raise InvalidInputError(
            f"{name} must hold only 0 (unlabeled) and 1 (known anomaly); found {bad.tolist()}."
        )
    return num.astype(np.int64)


def check_not_constant(X: np.ndarray, *, name: str = "X") -> None:
    """Refuse a matrix whose rows are all identical: there is nothing to tell apart.

    Constant *columns* are fine (they are standardised to 0 and carry no information); only a
    matrix in which every row equals the first one is an error.
    """
    if X.shape[0] >= 2 and bool((X == X[0]).all()):
        raise InvalidInputError(
            f"all {X.shape[0]} rows of {name} are identical: an anomaly detector needs rows that "
            "differ; check that the right columns were selected."
        )


def frame_feature_names(X: Any) -> np.ndarray | None:
    """The column names of a pandas DataFrame when every one is a string (scikit-learn's rule
    for ``feature_names_in_``), as an object array; ``None`` for anything else."""
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "iloc"):
        return None
    names = list(columns)
    if not names or not all(isinstance(c, str) for c in names):
        return None
    return np.asarray(names, dtype=object)


def check_feature_names(X: Any, fitted: np.ndarray | None, *, name: str = "X") -> None:
    """Refuse a DataFrame whose column names differ from those seen in ``fit`` (``fitted``):
    other names, missing ones, or the same ones in another order. Arrays and frames without
    string names are taken by position, as in scikit-learn."""
    names = frame_feature_names(X)
    if fitted is None or names is None:
        return
    if len(names) == len(fitted) and bool((names == fitted).all()):
        return
    seen = set(fitted.tolist())
    now = set(names.tolist())
    unseen = [c for c in names.tolist() if c not in seen]
    missing = [c for c in fitted.tolist() if c not in now]
    parts = []
    if unseen:
        parts.append(f"columns not seen in fit {unseen[:5]}")
    if missing:
        parts.append(f"columns of fit now missing {missing[:5]}")
    if not parts:
        parts.append(f"the same columns in another order (fit: {fitted.tolist()[:8]})")
    raise InvalidInputError(
        f"The feature names should match those that were passed during fit: {name} has {'; '.join(parts)}. "
        f"Select the columns in fit order: {name}[model.feature_names_in_]."
    )


def check_params_keys(name: str, params: dict | None, cls: type) -> None:
    """Refuse keys of a parameter dict (e.g. ``detector_params``) that ``cls`` does not take,
    naming them and the valid ones."""
    if not params:
        return
    import inspect

    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = [str(k) for k in params if k not in valid]
    if unknown:
        raise InvalidInputError(
            f"{name} has unknown keys {unknown}: {cls.__name__} takes {', '.join(valid)}."
        )


def seed_from(random_state) -> int:
    """One int seed in ``[0, 2**31 - 1)`` from a ``random_state`` (None, an int or a RandomState),
    drawn the scikit-learn way: the seed every estimator of the package derives its torch and
    numpy streams from."""
    from sklearn.utils import check_random_state

    return int(check_random_state(random_state).randint(0, 2**31 - 1))
