"""TensorRT plans for GPU hosts: built from the exported ONNX file, checked against PyTorch, recorded with the GPU
they were built on (`model.plan.json`, the Kubernetes `nvidia.com/gpu.product` label)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..models import get_spec
from ..paths import DEFAULT_REPOSITORY
from ..stages import GENERATOR_MAX_BATCH
from .parity import ONNX_TOLERANCE, PARITY_BATCHES, ExportError, ParityResult, random_crops, torch_reference

TRT_FP16_TOLERANCE = 5e-2
TRT_PROFILE = (1, 8, GENERATOR_MAX_BATCH)  # min / opt / max crops per generator execution


def tensorrt_status() -> str | None:
    """None when a TensorRT plan can be built here, else the reason it cannot."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed"
    try:
        import torch

        if not torch.cuda.is_available():
            return "no NVIDIA GPU is visible to PyTorch/CUDA"
    except ImportError:
        return "PyTorch with CUDA is not installed"
    return None


def build_tensorrt(name: str, onnx_path: Path, repository: Path = DEFAULT_REPOSITORY, fp16: bool = True,
                   allow_untrained: bool = False, checkpoint: Path | None = None) -> tuple[Path, list[ParityResult]]:
    """Build `<name>/1/model.plan` from the ONNX file (profile 1/8/32 crops) and check it against PyTorch."""
    import tensorrt as trt
    import torch

    spec = get_spec(name)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{name}: TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 4 << 30)
    if fp16 and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    shape = (3, spec.size, spec.size)
    profile.set_shape("INPUT", *[(n, *shape) for n in TRT_PROFILE])
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"{name}: TensorRT engine build failed (see the TensorRT log above)")
    plan = repository / name / "1" / "model.plan"
    plan.write_bytes(bytes(serialized))
    record = {"gpu": torch.cuda.get_device_name(), "gpu_product_label": gpu_product_label(torch.cuda.get_device_name()),
              "tensorrt": trt.__version__, "profile": list(TRT_PROFILE), "fp16": fp16}
    plan.with_name("model.plan.json").write_text(json.dumps(record, indent=2) + "\n")

    engine = trt.Runtime(logger).deserialize_cuda_engine(bytes(serialized))
    context = engine.create_execution_context()
    model = spec.load(checkpoint=checkpoint, allow_untrained=allow_untrained)
    tolerance = TRT_FP16_TOLERANCE if fp16 else ONNX_TOLERANCE
    results = []
    for i, batch in enumerate(PARITY_BATCHES):
        crops = random_crops(batch, spec.size, 100 + i)
        x = torch.from_numpy(crops).cuda()
        y = torch.empty_like(x)
        context.set_input_shape("INPUT", tuple(x.shape))
        context.set_tensor_address("INPUT", x.data_ptr())
        context.set_tensor_address("OUTPUT", y.data_ptr())
        stream = torch.cuda.Stream()
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        diff = float(np.abs(y.cpu().numpy() - torch_reference(model, crops)).max())
        results.append(ParityResult(name, "tensorrt-fp16" if fp16 else "tensorrt", batch, diff, tolerance))
    if not all(r.ok for r in results):
        plan.unlink()
        raise ExportError(f"{name}: TensorRT output differs from PyTorch beyond {tolerance}")
    return plan, results


def gpu_product_label(device_name: str) -> str:
    """NVIDIA GPU feature discovery's `nvidia.com/gpu.product` value for a CUDA device name
    ("NVIDIA H100 80GB HBM3" -> "NVIDIA-H100-80GB-HBM3"): spaces become dashes, as GFD writes it."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", device_name.strip()).strip("-")


def plans_gpu_product(repository: Path = DEFAULT_REPOSITORY) -> str:
    """The one GPU product every TensorRT plan in the repository was built on (from the model.plan.json records)."""
    records = sorted(Path(repository).glob("*/1/model.plan.json"))
    if not records:
        raise ExportError(f"no TensorRT plan records (*/1/model.plan.json) in {repository}: run the GPU export first")
    labels = {json.loads(p.read_text())["gpu_product_label"] for p in records}
    if len(labels) != 1:
        raise ExportError(f"plans in {repository} were built on different GPUs ({', '.join(sorted(labels))}); "
                          "rebuild them on one GPU model")
    return labels.pop()
