"""The two formulas every scorer shares: the probability of a logit and the contamination
threshold. One copy, used by the detectors, SwiftHydra, the generators, the CLI and (in torch,
with the same constants) the ONNX graph."""

from __future__ import annotations

import numpy as np

#: logits are clipped to +-this before the logistic function: exp stays finite in float64 and
#: the probability is already 1 - 1e-26 there
LOGIT_CLIP = 60.0


def sigmoid(scores) -> np.ndarray:
    """``1 / (1 + exp(-clip(score, -60, 60)))`` in float64: the anomaly probability of logits."""
    s = np.clip(np.asarray(scores, dtype=np.float64), -LOGIT_CLIP, LOGIT_CLIP)
    return 1.0 / (1.0 + np.exp(-s))


def contamination_threshold(scores: np.ndarray, contamination: float) -> float:
    """The score above which the top ``contamination`` share of ``scores`` lies (PyOD's rule)."""
    return float(np.percentile(scores, 100.0 * (1.0 - float(contamination))))
