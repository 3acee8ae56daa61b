"""Neural building blocks: Mamba blocks and scans, row tokenisers, the mixture of Mamba experts."""

from __future__ import annotations

from swifthydra.nn.mamba import (
    SCAN_MODES,
    Mamba,
    MambaConfig,
    MambaMixer,
    MambaScorer,
    ResidualBlock,
    RMSNorm,
    SelectiveSSM,
    selective_scan,
)
from swifthydra.nn.moe import MoMENet, choose_num_experts, load_balancing_loss
from swifthydra.nn.tokenize import (
    TOKENIZERS,
    FeatureTokenizer,
    PatchTokenizer,
    RowTokenizer,
    Standardize,
    make_tokenizer,
)

__all__ = [
    "SCAN_MODES",
    "TOKENIZERS",
    "FeatureTokenizer",
    "Mamba",
    "MambaConfig",
    "MambaMixer",
    "MambaScorer",
    "MoMENet",
    "PatchTokenizer",
    "RMSNorm",
    "ResidualBlock",
    "RowTokenizer",
    "SelectiveSSM",
    "Standardize",
    "choose_num_experts",
    "load_balancing_loss",
    "make_tokenizer",
    "selective_scan",
]
