"""Exception types raised by swifthydra.

Every error a user can cause (bad data, unknown dataset, corrupt file, ...) is raised as a
subclass of :class:`SwiftHydraError` with a one-line message that names the problem and what to
do about it. Subclasses also derive from the matching built-in type (``ValueError``,
``LookupError``, ``OSError``) so ordinary ``except ValueError`` code keeps working.
"""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError


class SwiftHydraError(Exception):
    """Base class of every error raised on purpose by swifthydra."""


class InvalidInputError(SwiftHydraError, ValueError):
    """Input data or arguments are malformed (NaN, wrong shape, non-numeric, ...)."""


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


class NotFittedError(SwiftHydraError, _SklearnNotFittedError):
    """A model was used before ``fit`` (also scikit-learn's ``NotFittedError``)."""


class TrainingDivergedError(SwiftHydraError, FloatingPointError):
    """Training produced a non-finite loss, gradient or score (the message names where)."""
