"""Lay out model_repository/: configs, the thin model.py adapters, and (via export) the ONNX files.

The committed `model_repository/<model>/1/model.py` files are the one copy of each adapter: an export into another
folder copies them from there. Every generator is served by the same adapter (ONNX Runtime over model.onnx), so a
generator without a committed adapter of its own gets the reference generator's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..paths import DEFAULT_REPOSITORY, REPO_ROOT
from .configs import DETECTOR, all_configs
from .gpu_configs import check_config_name, custom_configs

REFERENCE_GENERATOR = "mobileunet"  # whose committed model.py every generator shares


def adapter_source(model: str, is_generator: bool = False) -> Path:
    """The committed model.py that serves `model`."""
    own = DEFAULT_REPOSITORY / model / "1" / "model.py"
    if own.exists() or not is_generator:
        return own
    return DEFAULT_REPOSITORY / REFERENCE_GENERATOR / "1" / "model.py"


def install_adapter(repository: Path, model: str, is_generator: bool = False) -> Path:
    """Copy the committed model.py of `model` into `repository` (nothing to do in the committed repository)."""
    source = adapter_source(model, is_generator)
    target = Path(repository) / model / "1" / "model.py"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not (target.exists() and target.samefile(source)):
        shutil.copyfile(source, target)
    return target


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


__all__ = ["DEFAULT_REPOSITORY", "DETECTOR", "REPO_ROOT", "adapter_source", "check_model_config_name",
           "config_names_in", "install_adapter", "write_configs", "write_custom_config", "write_custom_configs",
           "write_model_config"]
