"""What every export format shares: its failure, its parity record against PyTorch, the crops it is checked on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ONNX_TOLERANCE = 1e-4
PARITY_BATCHES = (1, 3, 8)


class ExportError(RuntimeError):
    """A real export failure: the message says what failed and what to do."""


@dataclass
class ParityResult:
    model: str
    fmt: str
    batch: int
    max_abs: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.max_abs) and self.max_abs <= self.tolerance)


def random_crops(batch: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)


def torch_reference(model, crops: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(crops)).numpy()
