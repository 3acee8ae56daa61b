"""swifthydra: the Swift Hydra anomaly detector (ICLR 2025) as a library and command-line tool."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("swifthydra")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from swifthydra.exceptions import (  # noqa: E402
    CorruptFileError,
    DatasetNotAvailableError,
    DownloadError,
    InvalidInputError,
    ModelFileError,
    SwiftHydraError,
    TrainingDivergedError,
    UnknownDatasetError,
)

__all__ = [
    "SwiftHydra",
    "TableModel",
    "__version__",
    "CorruptFileError",
    "DatasetNotAvailableError",
    "DownloadError",
    "InvalidInputError",
    "ModelFileError",
    "NotFittedError",
    "SwiftHydraError",
    "TrainingDivergedError",
    "UnknownDatasetError",
    "load_model",
]


def __getattr__(name: str):
    # SwiftHydra pulls in torch and NotFittedError scikit-learn (it is also scikit-learn's
    # NotFittedError): import them on first use so `import swifthydra` and `swifthydra --help`
    # stay fast.
    if name == "SwiftHydra":
        from swifthydra.hydra import SwiftHydra

        return SwiftHydra
    if name in ("load_model", "TableModel"):  # a model directory of `swifthydra fit`, scored from Python
        from swifthydra.tabular import model as table_model

        return getattr(table_model, name)
    if name == "NotFittedError":
        from swifthydra.exceptions import NotFittedError

        return NotFittedError
    raise AttributeError(f"module 'swifthydra' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
