"""One table from CLI name to generator class, crop size and shipped checkpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..paths import WEIGHTS_DIR  # a module global here, so tests can point it elsewhere
from .d2gan import ResnetGenerator
from .mobileunet import MobileUNet
from .resnet50unet import ResNet50UNet


class UntrainedModelError(RuntimeError):
    """Raised when a trained checkpoint is required but none is shipped for the model."""


@dataclass(frozen=True)
class GeneratorSpec:
    name: str
    build: Callable[[], nn.Module]
    size: int  # square crop side the generator consumes and produces

    @property
    def checkpoint(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.pt"

    @property
    def card(self) -> Path:
        """Training record (command, data, steps, wall time, losses) kept next to the checkpoint."""
        return WEIGHTS_DIR / f"{self.name}.json"

    def has_checkpoint(self) -> bool:
        return self.checkpoint.exists()

    def load(self, checkpoint: Path | None = None, allow_untrained: bool = False) -> nn.Module:
        """Build the network in eval mode with its trained weights (strict), or untrained if explicitly allowed."""
        model = self.build()
        path = Path(checkpoint) if checkpoint else self.checkpoint
        if path.exists():
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("models", state)  # a training run's last.pt holds every network under "models"
            state = state.get("generator", state)
            model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
        elif checkpoint is not None:
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        elif not allow_untrained:
            raise UntrainedModelError(
                f"no trained checkpoint for '{self.name}' at {path}; train it (see README 'Training') "
                "or pass --allow-untrained to export random weights on purpose"
            )
        return model.eval()

    def training_record(self) -> dict:
        return json.loads(self.card.read_text()) if self.card.exists() else {}


GENERATORS: dict[str, GeneratorSpec] = {
    spec.name: spec
    for spec in (
        GeneratorSpec("mobileunet", lambda: MobileUNet(size=128), 128),
        GeneratorSpec("resnet50unet", lambda: ResNet50UNet(size=128), 128),
        GeneratorSpec("d2gan", lambda: ResnetGenerator(size=128), 128),
    )
}

# Served generators without a trained network (facedeid.ksame: donor averages from a bank): no checkpoint, no ONNX.
DONOR_GENERATORS = ("ksame",)
SERVED_GENERATORS = (*GENERATORS, *DONOR_GENERATORS)
# Crop side of ksame's served ensembles (own prep models face_prep_256/box_prep_256): its averages are 256 px, so a
# large face is no longer pasted from a 128 px crop; the per-face cost measured in docs/crisp-faces.md.
KSAME_CROP_SIZE = 256


def crop_size(name: str) -> int:
    """The crop side the served ensembles of generator `name` cut faces at."""
    return KSAME_CROP_SIZE if name in DONOR_GENERATORS else get_spec(name).size


def get_spec(name: str) -> GeneratorSpec:
    try:
        return GENERATORS[name]
    except KeyError:
        raise ValueError(f"unknown generator '{name}'; choose from {', '.join(GENERATORS)}") from None
