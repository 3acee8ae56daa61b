"""Generative models of Swift Hydra: the conditional β-VAE that proposes anomalies."""

from __future__ import annotations

from swifthydra.generative.cvae import CVAE, CVAENet

__all__ = ["CVAE", "CVAENet"]
