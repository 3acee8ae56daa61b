"""ADBench datasets, the evaluation protocol and built-in demo data.

``read_table``, ``read_frame``, ``Table`` and ``TablePreprocessor`` live in :mod:`swifthydra.tabular`;
they stay importable from here as before.
"""

from swifthydra.datasets.builtin import BUILTIN_DATASETS, load_builtin
from swifthydra.datasets.loader import (
    cache_dir,
    download_dataset,
    find_dataset_file,
    load_adbench,
    load_npz,
    local_datasets,
    sha256_file,
)
from swifthydra.datasets.protocol import PROTOCOLS, Split, adbench_split
from swifthydra.datasets.registry import DATASETS, DatasetInfo, get_dataset_info, list_datasets
from swifthydra.tabular.table import Table, TablePreprocessor, read_frame, read_table  # former home

__all__ = [
    "BUILTIN_DATASETS",
    "DATASETS",
    "PROTOCOLS",
    "DatasetInfo",
    "Split",
    "Table",
    "TablePreprocessor",
    "adbench_split",
    "cache_dir",
    "download_dataset",
    "find_dataset_file",
    "get_dataset_info",
    "list_datasets",
    "load_adbench",
    "load_builtin",
    "load_npz",
    "local_datasets",
    "read_frame",
    "read_table",
    "sha256_file",
]
