"""Neural anomaly detectors: the large :class:`MambaDetector` and the fast :class:`MoME`.

Both follow scikit-learn and PyOD conventions: parameters are stored untouched in ``__init__``
and validated in ``fit``; learned state lives in attributes with a trailing underscore;
``decision_function`` is higher for more anomalous rows; ``predict`` thresholds it at the
``contamination`` quantile of the training scores (``threshold_``); ``predict_proba`` returns
``[P(normal), P(anomaly)]`` per row.

Labels are *weak*: 1 = known anomaly, 0 = unlabeled (mostly normal, possibly contaminated).
Training minimises class-balanced binary cross-entropy (each class carries half of the loss)
on class-balanced mini-batches (half known anomalies, cycled, half unlabeled rows), with early
stopping on the validation AUC-ROC (ties broken by the balanced validation loss) of a stratified
split carved from the training rows, or of ``eval_set`` (docs/design.md §4.2-§4.3). While fitting
and scoring on CPU, denormal floats are flushed to zero (the previous mode is restored afterwards):
decaying SSM states otherwise enter the denormal range, where x86 arithmetic is several times
slower (docs/design.md §4.4). A fitted detector exposes its torch module as ``model_`` and can be
rebuilt from ``get_config()`` (JSON-serialisable) and ``state_dict()`` (tensors) with
``from_config``, which is what :mod:`swifthydra.io` stores with safetensors.

Layout: :mod:`~swifthydra.detectors.base` (the shared training loop, threshold and scoring),
:mod:`~swifthydra.detectors.mamba`, :mod:`~swifthydra.detectors.mome` (one model each),
``_training`` (torch global state, batching, the stratified split), ``_persistence`` and
``_params``.
"""

from swifthydra.detectors._training import sample_rows, stratified_split
from swifthydra.detectors.base import NeuralDetector
from swifthydra.detectors.mamba import MambaDetector
from swifthydra.detectors.mome import MoME

__all__ = ["MambaDetector", "MoME", "NeuralDetector", "sample_rows", "stratified_split"]
