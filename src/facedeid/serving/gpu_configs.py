"""Triton's custom model configurations (`<model>/configs/<name>.pbtxt`, chosen with
`tritonserver --model-config-name=<name>`): the `gpu` profile's configurations, derived from the CPU renderings of
serving/configs.py through Triton's own protobuf schema (`model_config_pb2` + `text_format`), so a field is never
edited as text. Export writes them and never touches a committed `config.pbtxt`."""

from __future__ import annotations

from ..model_config import parse_config
from ..models import GENERATORS
from ..settings import GPU
from .configs import DETECTOR, GPU_DETECTOR_INSTANCES, GPU_GENERATOR_INSTANCES, GPU_STAGE_INSTANCES, all_configs

# Custom model configurations (configs/<name>.pbtxt) this repository ships, beside the default config.pbtxt.
CONFIG_NAMES = ("gpu",)
GPU_GENERATOR_BACKENDS = ("tensorrt", "onnxruntime")


def render_config(config) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def _set_instances(config, kind: str, count: int) -> None:
    from tritonclient.grpc import model_config_pb2

    del config.instance_group[:]
    config.instance_group.add(kind=model_config_pb2.ModelInstanceGroup.Kind.Value(kind), count=count)


def gpu_configs(generator_backend: str = "tensorrt") -> dict[str, str]:
    """Model name -> configs/gpu.pbtxt text, for every model whose GPU configuration differs from config.pbtxt.

    Generators: `generator_backend` ("tensorrt": the FP16 plans export builds on the GPU host; "onnxruntime": the
    ONNX files on ONNX Runtime's CUDA provider), KIND_GPU, warmup at batch 1 and 8. Detector: ONNX Runtime on the
    GPU (dynamic frame sizes). Python stages: more CPU instances; detect_prep and face_prep detect at native
    resolution (full_size 0, det_size 640), not the CPU cap. Ensembles are the same on every platform, so they
    have no GPU file and Triton falls back to their config.pbtxt.
    """
    if generator_backend not in GPU_GENERATOR_BACKENDS:
        raise ValueError(f"GPU generator backend must be one of {GPU_GENERATOR_BACKENDS}, got {generator_backend!r}")
    native = all_configs(generator_backend)
    # GPU hosts detect at native resolution (full frame or tiles + the 640 pass): the CPU cap is a CPU trade-off.
    native_detection = dict(det_size=GPU.det_size, full_size=GPU.full_size)
    out = {}
    for name, text in all_configs("python", **native_detection).items():
        config = parse_config(text)
        if config.platform == "ensemble":
            continue
        if name == DETECTOR or name in GENERATORS:
            config = parse_config(native[name])
            count = GPU_DETECTOR_INSTANCES if name == DETECTOR else GPU_GENERATOR_INSTANCES
            _set_instances(config, "KIND_GPU", count)
        else:
            _set_instances(config, "KIND_CPU", GPU_STAGE_INSTANCES)
        out[name] = render_config(config)
    return out


def custom_configs(name: str, generator_backend: str = "tensorrt") -> dict[str, str]:
    """Model name -> text of configs/<name>.pbtxt for one of CONFIG_NAMES; anything else is a clear error."""
    check_config_name(name)
    return gpu_configs(generator_backend)


def check_config_name(name: str) -> str:
    if name not in CONFIG_NAMES:
        raise ValueError(f"unknown model configuration {name!r}: this repository ships "
                         f"{', '.join(CONFIG_NAMES)} (configs/<name>.pbtxt) beside the default config.pbtxt")
    return name
