"""Scoring a saved model on Ray and Spark: the same scores as ``swifthydra score``, row for row.

- :mod:`swifthydra.distributed.ray`: :func:`~swifthydra.distributed.ray.score_dataset` for a
  ``ray.data.Dataset`` and :func:`~swifthydra.distributed.ray.score_files` (``swifthydra score
  --engine ray``): Parquet files in, one scored Parquet file per input file out.
- :mod:`swifthydra.distributed.spark`: :func:`~swifthydra.distributed.spark.score_dataframe` and
  :func:`~swifthydra.distributed.spark.scoring_function`, a function for ``DataFrame.mapInPandas``.

Both load the model once per worker process (:func:`model_scorer`, cached) and score each batch
with :class:`FrameScorer`, which applies the model's saved preprocessing and estimator through the
library functions the command line uses too (:mod:`swifthydra.tabular.model`), so a row gets the same
score, flag and probability as with the local ``swifthydra score``.
"""

from swifthydra.distributed._core import OUTPUT_COLUMNS, FrameScorer, model_scorer

__all__ = ["OUTPUT_COLUMNS", "FrameScorer", "model_scorer"]
