"""The neural detectors, where they were first published: see :mod:`swifthydra.detectors`.

``from swifthydra.detector import MambaDetector, MoME`` keeps working.
"""

from swifthydra._torch import resolve_device
from swifthydra.detectors import MambaDetector, MoME, NeuralDetector

__all__ = ["MambaDetector", "MoME", "NeuralDetector", "resolve_device"]
