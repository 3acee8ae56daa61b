"""Deprecated location: the ``fit`` / ``score`` / ``explain`` / ``info`` / ``export-onnx`` commands
and their model-directory and streaming helpers now live in the :mod:`swifthydra.cli` package
(one module per command; the shared helpers in :mod:`swifthydra.cli._table`).

This module only re-exports them, kept so that code importing it keeps working
(``from swifthydra.cli_model import load_table_model, PREPROCESSING_FILE``); import from
:mod:`swifthydra.cli._table` instead.
"""

from swifthydra.cli._table import (
    _MODEL_KIND,
    PREPROCESSING_FILE,
    PREPROCESSING_FORMAT,
    _Prefetch,
    _probability,
    _resolve_id_column,
    _scored_chunks,
    _ScoreWriter,
    _StartupGC,
    _table_chunks,
    _threads,
    load_table_estimator,
    load_table_model,
    read_table_state,
)
from swifthydra.cli.explain import explain
from swifthydra.cli.export import export_onnx
from swifthydra.cli.fit import fit
from swifthydra.cli.info import info
from swifthydra.cli.score import score

__all__ = [
    "PREPROCESSING_FILE", "PREPROCESSING_FORMAT", "_MODEL_KIND", "_Prefetch", "_ScoreWriter", "_StartupGC",
    "_probability", "_resolve_id_column", "_scored_chunks", "_table_chunks", "_threads", "explain", "export_onnx",
    "fit", "info", "load_table_estimator", "load_table_model", "read_table_state", "score",
]
