"""Your own tables: reading CSV / Parquet into features, and scoring with a model directory.

The layer between the library's estimators and the command line (docs/architecture.md):
:mod:`swifthydra.tabular.table` turns a table into numeric features with one preprocessing that
is fitted once and saved (:class:`TablePreprocessor`, :func:`read_table`: one label vocabulary,
formatted numbers, timestamps, categories), and :mod:`swifthydra.tabular.model` loads a model
directory written by ``swifthydra fit`` and scores raw tables with it (:func:`load_model`,
:class:`TableModel`). ``swifthydra.cli`` and ``swifthydra.distributed`` build on it; nothing here
imports them.
"""

from swifthydra.tabular.table import Table, TablePreprocessor, read_frame, read_table

__all__ = ["Table", "TableModel", "TablePreprocessor", "load_model", "read_frame", "read_table"]


def __getattr__(name: str):
    # the model part imports safetensors and the model readers: only when asked for
    if name in ("TableModel", "load_model"):
        from swifthydra.tabular import model

        return getattr(model, name)
    raise AttributeError(f"module 'swifthydra.tabular' has no attribute {name!r}")
