"""Small PyTorch helpers shared by the models: device choice and thread count."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from swifthydra.exceptions import InvalidInputError


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is parsed by ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidInputError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}."
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(
            f"device {device!r} requested but CUDA is not available: use device='cpu'."
        )
    return dev


@contextlib.contextmanager
def torch_threads(n_jobs: int) -> Iterator[None]:
    """Run with ``n_jobs`` PyTorch threads (-1: all cores), restoring the caller's setting."""
    before = torch.get_num_threads()
    wanted = (os.cpu_count() or 1) if n_jobs == -1 else int(n_jobs)
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield
    finally:
        if wanted != before:
            torch.set_num_threads(before)
