"""Exception types raised by swifthydra.

Every error a user can cause (bad data, unknown dataset, corrupt file, ...) is raised as a
subclass of :class:`SwiftHydraError` with a one-line message that names the problem and what to
do about it. Subclasses also derive from the matching built-in type (``ValueError``,
``LookupError``, ``OSError``) so ordinary ``except ValueError`` code keeps working.

:class:`NotFittedError` also derives from scikit-learn's ``NotFittedError`` (what scikit-learn's
estimator checks expect). Importing scikit-learn takes about a second, so that class is created
on first use (``from swifthydra.exceptions import NotFittedError`` or attribute access), not when
this module is imported: the command line's start-up and error handling do not pay for it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING


class SwiftHydraError(Exception):
    """Base class of every error raised on purpose by swifthydra."""


class InvalidInputError(SwiftHydraError, ValueError):
    """Input data or arguments are malformed (NaN, wrong shape, non-numeric, ...)."""


class DataWarning(UserWarning):
    """Something in a user's table was handled in a way the user should know about (a column left
    out, a value converted); the message names the columns and what was done."""


class UnknownDatasetError(SwiftHydraError, LookupError):
    """A dataset name is not in the registry."""

    def __str__(self) -> str:  # LookupError would quote the message like a KeyError
        return str(self.args[0]) if self.args else ""


class DatasetNotAvailableError(SwiftHydraError, FileNotFoundError):
    """A known dataset is not on disk and may not (or could not) be downloaded."""


class CorruptFileError(SwiftHydraError, OSError):
    """A file exists but cannot be trusted: wrong checksum, truncated, or not what it claims."""


class DownloadError(SwiftHydraError, OSError):
    """Fetching a file over the network failed."""


class ModelFileError(SwiftHydraError, OSError):
    """A saved model cannot be loaded (missing, truncated, foreign, or a newer format)."""


class TrainingDivergedError(SwiftHydraError, FloatingPointError):
    """Training produced a non-finite loss, gradient or score (the message names where)."""


def _define_not_fitted_error() -> type:
    from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

    class NotFittedError(SwiftHydraError, _SklearnNotFittedError):
        """A model was used before ``fit`` (also scikit-learn's ``NotFittedError``)."""

    NotFittedError.__qualname__ = "NotFittedError"  # pickled by name, found by __getattr__
    return NotFittedError


if TYPE_CHECKING:  # what type checkers see; at run time the class is made by __getattr__
    from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

    class NotFittedError(SwiftHydraError, _SklearnNotFittedError):
        """A model was used before ``fit`` (also scikit-learn's ``NotFittedError``)."""


_lazy_lock = threading.Lock()


def __getattr__(name: str):
    # NotFittedError is created once, on first use (see the module docstring); the lock keeps
    # two threads from creating two different classes.
    if name == "NotFittedError":
        with _lazy_lock:
            cls = globals().get(name)
            if cls is None:
                cls = globals()[name] = _define_not_fitted_error()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"NotFittedError"})
