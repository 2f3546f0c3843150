"""Lay out model_repository/: configs, the thin model.py adapters, and (via export) the ONNX files."""

from __future__ import annotations

from pathlib import Path

from .configs import all_configs

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

KSAME_MODEL_PY = '''"""k-Same donor averages served by the Python backend (facedeid.ksame; bank.npz and centerface.onnx next to this)."""

import triton_python_backend_utils as pb_utils

from facedeid.serving.ksame_backend import KSameModel


class TritonPythonModel(KSameModel):
    def initialize(self, args):
        self.setup(pb_utils, args)
'''


def write_configs(repository: Path = DEFAULT_REPOSITORY, backend: str = "python") -> list[Path]:
    """Write every model's config.pbtxt (generators and detector for `backend`, the rest always Python)."""
    return [write_model_config(repository, name, text) for name, text in all_configs(backend).items()]


def write_model_config(repository: Path, name: str, text: str) -> Path:
    path = repository / name / "config.pbtxt"
    (path.parent / "1").mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
