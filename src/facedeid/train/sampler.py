"""Training batches from a CropSet (random, flipped; fixed validation batches) and the sample grids of a run."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from ..crops import from_tensor
from .data import CropSet

Batch = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # crops, or (crops, targets) when the set has targets


class Sampler:
    """Random training batches (with horizontal flips) and fixed validation batches from a CropSet.

    A batch is the crops [B,3,S,S] in [-1, 1], or (crops, targets) when the set has targets (`CropSet.targets`),
    flipped together. Crops marked in `exclude` are in neither split.
    """

    def __init__(self, data: CropSet, batch_size: int, seed: int, exclude: np.ndarray | None = None):
        self.data = data
        self.batch_size = batch_size
        self.train_idx = data.indices(False)
        self.val_idx = data.indices(True)
        if exclude is not None:
            self.train_idx = self.train_idx[~exclude[self.train_idx]]
            self.val_idx = self.val_idx[~exclude[self.val_idx]]
        if len(self.train_idx) == 0:
            raise ValueError("no training crops")
        self.rng = np.random.default_rng(seed)

    @staticmethod
    def to_batch(crops: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)

    def batch(self, idx: np.ndarray, flip: np.ndarray | None = None) -> Batch:
        arrays = [self.data.crops] if self.data.targets is None else [self.data.crops, self.data.targets]
        out = []
        for array in arrays:
            crops = np.asarray(array[idx])
            if flip is not None:
                crops[flip] = crops[flip, :, ::-1]
            out.append(self.to_batch(crops))
        return out[0] if len(out) == 1 else tuple(out)

    def train_batch(self) -> Batch:
        idx = np.sort(self.rng.choice(self.train_idx, self.batch_size, replace=len(self.train_idx) < self.batch_size))
        return self.batch(idx, self.rng.random(len(idx)) < 0.5)

    def val_batches(self, n: int) -> list[Batch]:
        idx = self.val_idx[: n * self.batch_size]
        return [self.batch(idx[i:i + self.batch_size]) for i in range(0, len(idx), self.batch_size)]


def inputs_of(batch: Batch) -> torch.Tensor:
    return batch[0] if isinstance(batch, tuple) else batch


def batch_to(batch: Batch, device: torch.device) -> Batch:
    return tuple(b.to(device) for b in batch) if isinstance(batch, tuple) else batch.to(device)


def save_grid(path: Path, inputs: torch.Tensor, bottleneck_view: torch.Tensor, outputs: torch.Tensor,
              targets: torch.Tensor | None = None) -> None:
    """PNG with one row per face: input | what the generator sees (bottleneck) | output [| target]."""
    columns = [inputs, bottleneck_view, outputs] + ([] if targets is None else [targets])
    rows = [np.concatenate(faces, axis=1) for faces in zip(*(from_tensor(c.numpy()) for c in columns))]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
