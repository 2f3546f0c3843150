"""config.pbtxt text for every model in model_repository/, per serving backend.

`python` is what runs here (the nvidia-pytriton server has only the Python backend; ONNX Runtime runs inside it);
`onnxruntime` and `tensorrt` are the native backends of the NGC image. Tensor names and shapes are identical in all
three, so the ensembles and clients never change. The committed configs are these renderings for `python`; export
rewrites the generator and detector configs when it targets a native backend.
"""

from __future__ import annotations

from ..models import GENERATORS
from .. import detection
from .stages import GENERATOR_MAX_BATCH

BACKENDS = ("python", "onnxruntime", "tensorrt")
DETECTOR = "face_detector"
# ONNX Runtime inside the Python backend (CPU serving), measured on a 2-core container (docs/benchmarks.md):
# one intra-op thread per model, because the detector and the generator run at the same time in separate stub
# processes and Triton's pipelining across stages (not intra-op threads) is what fills the cores; and no spinning,
# because an idle pool that busy-waits steals the cores the other stages need (1.6-1.8x more frames/s).
CPU_THREADS = 1
CPU_SPIN = 0
GENERATE_INSTANCES = 4  # generate_<gen> instances: frames whose crops can wait at the generator together


def _tensor(name: str, dtype: str, dims: list[int], optional: bool = False) -> str:
    extra = " optional: true" if optional else ""
    return f'  {{ name: "{name}" data_type: TYPE_{dtype} dims: [ {", ".join(map(str, dims))} ]{extra} }}'


def _io(kind: str, tensors: list[str]) -> str:
    return f"{kind} [\n" + ",\n".join(tensors) + "\n]\n"


def _backend_lines(backend: str) -> str:
    return {
        "python": 'backend: "python"\n',
        "onnxruntime": 'backend: "onnxruntime"\ndefault_model_filename: "model.onnx"\n',
        "tensorrt": 'platform: "tensorrt_plan"\ndefault_model_filename: "model.plan"\n',
    }[backend]


def _instances(backend: str) -> str:
    kind = "KIND_CPU" if backend == "python" else "KIND_GPU"
    return f"instance_group [ {{ kind: {kind} count: 1 }} ]\n"


def _params(**values) -> str:
    return "".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in values.items())


def generator_config(name: str, backend: str = "python") -> str:
    size = GENERATORS[name].size
    text = f'name: "{name}"\n' + _backend_lines(backend) + f"max_batch_size: {GENERATOR_MAX_BATCH}\n"
    text += _io("input", [_tensor("INPUT", "FP32", [3, size, size])])
    text += _io("output", [_tensor("OUTPUT", "FP32", [3, size, size])])
    # Crops from concurrent frames are merged into one execution; a short wait buys much larger batches.
    text += "dynamic_batching { max_queue_delay_microseconds: 4000 }\n"
    text += _instances(backend)
    if backend == "python":
        text += _params(threads=CPU_THREADS, spin=CPU_SPIN)
    return text


def detector_config(backend: str = "python") -> str:
    if backend == "tensorrt":
        backend = "onnxruntime"  # dynamic frame sizes: served by ONNX Runtime (CUDA) on GPUs
    text = f'name: "{DETECTOR}"\n' + _backend_lines(backend) + "max_batch_size: 0\n"
    # IMAGE is a stack of same-sized images: full-resolution tiles of one frame, or its downscaled copy.
    text += _io("input", [_tensor("IMAGE", "FP32", [-1, 3, -1, -1])])
    text += _io("output", [
        _tensor("HEATMAP", "FP32", [-1, 1, -1, -1]),
        _tensor("SCALE", "FP32", [-1, 2, -1, -1]),
        _tensor("OFFSET", "FP32", [-1, 2, -1, -1]),
        _tensor("LANDMARKS", "FP32", [-1, 10, -1, -1]),
    ])
    text += _instances(backend)
    if backend == "python":
        text += _params(threads=CPU_THREADS, spin=CPU_SPIN)
    return text


def generate_config(generator: str, crop_size: int) -> str:
    """`generate_<gen>`: every crop of a frame through the generator, in batches of at most GENERATOR_MAX_BATCH."""
    crops_t = [_tensor("CROPS", "FP32", [-1, 3, crop_size, crop_size])]
    text = _python_stage(f"generate_{generator}", crops_t,
                         [_tensor("GENERATED", "FP32", [-1, 3, crop_size, crop_size])],
                         generator=generator, max_batch=GENERATOR_MAX_BATCH)
    # Each instance waits on its frame's generator requests; several instances keep several frames' crops in the
    # generator's queue at once, so its dynamic batcher can still merge them (one instance: one frame at a time).
    return text.replace("count: 1", f"count: {GENERATE_INSTANCES}")


def _python_stage(name: str, inputs: list[str], outputs: list[str], **params) -> str:
    text = f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\n'
    text += _io("input", inputs) + _io("output", outputs)
    text += "instance_group [ { kind: KIND_CPU count: 1 } ]\n"
    return text + _params(**params)


FRAME = _tensor("FRAME", "UINT8", [-1, -1, 3])
BOXES = _tensor("BOXES", "FP32", [-1, 4])
BLUR_BOXES = _tensor("BLUR_BOXES", "FP32", [-1, 4])
# Optional per-request detection settings (ensemble inputs; absent = the face_prep/detect_prep defaults).
SETTINGS = {
    "THRESHOLD": _tensor("THRESHOLD", "FP32", [1], optional=True),
    "DET_SIZE": _tensor("DET_SIZE", "INT32", [1], optional=True),
    "GENERATE_THRESHOLD": _tensor("GENERATE_THRESHOLD", "FP32", [1], optional=True),
}
MAP_NAMES = ("HEATMAP", "SCALE", "OFFSET", "LANDMARKS")


def _maps(suffix: str = "") -> list[str]:
    return [_tensor(f"{n}{suffix}", "FP32", [-1, c, -1, -1]) for n, c in zip(MAP_NAMES, (1, 2, 2, 10))]


def stage_configs(crop_size: int) -> dict[str, str]:
    crops_t = _tensor("CROPS", "FP32", [-1, 3, crop_size, crop_size])
    return {
        "detect_prep": _python_stage(
            "detect_prep", [FRAME, SETTINGS["DET_SIZE"]],
            [_tensor("IMAGE", "FP32", [-1, 3, -1, -1]), _tensor("IMAGE_SMALL", "FP32", [1, 3, -1, -1])],
            det_size=detection.CPU_DET_SIZE, full_size=detection.CPU_FULL_SIZE),
        "face_prep": _python_stage(
            "face_prep", [FRAME, *_maps(), *_maps("_SMALL"), *SETTINGS.values()],
            [crops_t, BOXES, BLUR_BOXES, _tensor("LANDMARKS", "FP32", [-1, 10])], crop_size=crop_size,
            threshold=detection.DEFAULT_THRESHOLD, det_size=detection.CPU_DET_SIZE,
            generate_threshold=detection.DEFAULT_GENERATE_THRESHOLD, min_generate_side=detection.MIN_GENERATE_SIDE,
            full_size=detection.CPU_FULL_SIZE),
        "box_prep": _python_stage("box_prep", [FRAME, _tensor("BOXES_IN", "FP32", [-1, 4])], [crops_t, BOXES],
                                  crop_size=crop_size),
        "compose": _python_stage(
            "compose", [FRAME, _tensor("GENERATED", "FP32", [-1, 3, crop_size, crop_size]), BOXES,
                        _tensor("BLUR_BOXES", "FP32", [-1, 4], optional=True)],
            [_tensor("DEID_FRAME", "UINT8", [-1, -1, 3])]),
    }


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    ins = "".join(f'      input_map {{ key: "{k}" value: "{v}" }}\n' for k, v in inputs.items())
    outs = "".join(f'      output_map {{ key: "{k}" value: "{v}" }}\n' for k, v in outputs.items())
    return f'    {{\n      model_name: "{model}"\n      model_version: -1\n{ins}{outs}    }}'


def ensemble_config(generator: str, boxes_given: bool) -> str:
    name = f"deid_{generator}" + ("_boxes" if boxes_given else "")
    outputs = [_tensor("DEID_FRAME", "UINT8", [-1, -1, 3]), BOXES]
    compose_inputs = {"FRAME": "FRAME", "GENERATED": "generated", "BOXES": "BOXES"}
    if boxes_given:
        inputs = [FRAME, _tensor("BOXES_IN", "FP32", [-1, 4])]
        steps = [_step("box_prep", {"FRAME": "FRAME", "BOXES_IN": "BOXES_IN"}, {"CROPS": "crops", "BOXES": "BOXES"})]
    else:
        inputs = [FRAME, *SETTINGS.values()]
        outputs += [BLUR_BOXES, _tensor("LANDMARKS", "FP32", [-1, 10])]
        compose_inputs["BLUR_BOXES"] = "BLUR_BOXES"
        full = {n: f"det_{n.lower()}" for n in MAP_NAMES}
        small = {n: f"det_{n.lower()}_small" for n in MAP_NAMES}
        steps = [
            _step("detect_prep", {"FRAME": "FRAME", "DET_SIZE": "DET_SIZE"},
                  {"IMAGE": "det_image", "IMAGE_SMALL": "det_image_small"}),
            _step(DETECTOR, {"IMAGE": "det_image"}, full),
            _step(DETECTOR, {"IMAGE": "det_image_small"}, small),
            _step("face_prep", {"FRAME": "FRAME", **{n: v for n, v in full.items()},
                                **{f"{n}_SMALL": v for n, v in small.items()}, **{k: k for k in SETTINGS}},
                  {"CROPS": "crops", "BOXES": "BOXES", "BLUR_BOXES": "BLUR_BOXES", "LANDMARKS": "LANDMARKS"}),
        ]
    steps += [
        _step(f"generate_{generator}", {"CROPS": "crops"}, {"GENERATED": "generated"}),
        _step("compose", compose_inputs, {"DEID_FRAME": "DEID_FRAME"}),
    ]
    text = f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: 0\n'
    text += _io("input", inputs)
    text += _io("output", outputs)
    text += "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}\n"
    return text


def all_configs(backend: str = "python") -> dict[str, str]:
    """Every model directory name -> its config.pbtxt text."""
    sizes = {spec.size for spec in GENERATORS.values()}
    if len(sizes) != 1:
        raise ValueError(f"all generators must share one crop size for the shared prep models, got {sizes}")
    configs = {DETECTOR: detector_config(backend), **stage_configs(sizes.pop())}
    for name in GENERATORS:
        configs[name] = generator_config(name, backend)
        configs[f"generate_{name}"] = generate_config(name, GENERATORS[name].size)
        configs[f"deid_{name}"] = ensemble_config(name, boxes_given=False)
        configs[f"deid_{name}_boxes"] = ensemble_config(name, boxes_given=True)
    return configs
