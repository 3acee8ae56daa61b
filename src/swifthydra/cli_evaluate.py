"""Deprecated location: the ``evaluate`` command now lives in :mod:`swifthydra.cli.evaluate`.

This module only re-exports it, kept so that code importing it keeps working; import from
:mod:`swifthydra.cli.evaluate` instead.
"""

from swifthydra.cli.evaluate import (
    PLOT_FILES,
    TRUE_ANOMALY,
    TRUE_NORMAL,
    evaluate,
    evaluation_metrics,
    truth_labels,
)

__all__ = ["PLOT_FILES", "TRUE_ANOMALY", "TRUE_NORMAL", "evaluate", "evaluation_metrics", "truth_labels"]
