"""Lay out model_repository/: configs, the thin model.py adapters, and (via export) the ONNX files."""

from __future__ import annotations

from pathlib import Path

from .configs import all_configs, check_config_name, custom_configs

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_REPOSITORY = REPO_ROOT / "model_repository"

GENERATOR_MODEL_PY = '''"""Generator served by the Python backend: ONNX Runtime over model.onnx next to this file (CPU serving)."""

import triton_python_backend_utils as pb_utils

from facedeid.serving.python_backend import OnnxModel


class TritonPythonModel(OnnxModel):
    def initialize(self, args):
        self.setup(pb_utils, args, batched=True)
'''

DETECTOR_MODEL_PY = '''"""CenterFace detector served by the Python backend: ONNX Runtime over model.onnx next to this file (CPU serving)."""

import triton_python_backend_utils as pb_utils

from facedeid.serving.python_backend import OnnxModel
from facedeid.serving.stages import check_detector_image


class TritonPythonModel(OnnxModel):
    def initialize(self, args):
        self.setup(pb_utils, args, batched=False, validate=check_detector_image)
'''


def write_configs(repository: Path = DEFAULT_REPOSITORY, backend: str = "python") -> list[Path]:
    """Write every model's config.pbtxt (generators and detector for `backend`, the rest always Python)."""
    return [write_model_config(repository, name, text) for name, text in all_configs(backend).items()]


def write_model_config(repository: Path, name: str, text: str) -> Path:
    path = repository / name / "config.pbtxt"
    (path.parent / "1").mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_custom_configs(repository: Path = DEFAULT_REPOSITORY, name: str = "gpu", generator_backend: str = "tensorrt",
                         models: list[str] | None = None) -> list[Path]:
    """Write `<model>/configs/<name>.pbtxt` for every model that has one (or only `models`); config.pbtxt untouched."""
    texts = custom_configs(name, generator_backend)
    return [write_custom_config(repository, model, name, text) for model, text in texts.items()
            if models is None or model in models]


def write_custom_config(repository: Path, model: str, name: str, text: str) -> Path:
    path = repository / model / "configs" / f"{check_config_name(name)}.pbtxt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def config_names_in(repository: Path) -> set[str]:
    """Custom configuration names present in a repository (the `--model-config-name` values it can serve)."""
    return {p.stem for p in Path(repository).glob("*/configs/*.pbtxt")}


def check_model_config_name(repository: Path, name: str) -> None:
    """Triton silently falls back to config.pbtxt for a name no model has: refuse that instead (a typo would
    otherwise serve the CPU configuration on a GPU host)."""
    present = config_names_in(repository)
    if name not in present:
        have = ", ".join(sorted(present)) or "none"
        raise ValueError(f"--model-config-name={name}: no model in {repository} has configs/{name}.pbtxt "
                         f"(available: {have})")
