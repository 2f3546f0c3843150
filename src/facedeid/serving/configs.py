"""config.pbtxt text for every model in model_repository/, per serving backend.

`python` is what runs here (the nvidia-pytriton server has only the Python backend; ONNX Runtime runs inside it);
`onnxruntime` and `tensorrt` are the native backends of the NGC image. Tensor names and shapes are identical in all
three, so the ensembles and clients never change. The committed `config.pbtxt` files are these renderings for
`python` (the CPU default). Every model whose GPU configuration differs also has `<model>/configs/gpu.pbtxt` (Triton's
custom model configurations, chosen with `tritonserver --model-config-name=gpu`): generators as TensorRT plans (or
native ONNX Runtime) on `KIND_GPU`, the detector on ONNX Runtime (CUDA), more instances of the Python stages, warmup.
Those are derived from the CPU renderings through Triton's own protobuf schema (`model_config_pb2` + `text_format`),
so a field is never edited as text (serving/gpu_configs.py); export writes them and never touches a committed
`config.pbtxt`. Every value comes from the `cpu` and `gpu` profiles of facedeid.settings; the keyword arguments
(threads, spin, instances, batching) exist for experiments such as the benchmark's overrides.
"""

from __future__ import annotations

from ..models import GENERATORS
from ..models.registry import DONOR_GENERATORS, crop_size  # DONOR_GENERATORS: a choice per face a track fixes
from ..settings import COVER_GENERATORS, CPU, GPU
from ..stages import GENERATOR_MAX_BATCH

BACKENDS = ("python", "onnxruntime", "tensorrt")
DETECTOR = "face_detector"
# The profiles' values (facedeid.settings), under the names the renderers and the benchmark's overrides use.
CPU_THREADS = CPU.threads
CPU_SPIN = int(CPU.spin)
QUEUE_DELAY_US = CPU.queue_delay_us
CPU_STAGE_INSTANCES = CPU.stage_instances
CPU_DETECTOR_INSTANCES = CPU.detector_instances
GENERATE_INSTANCES = CPU.generate_instances
GPU_STAGE_INSTANCES = GPU.stage_instances
GPU_DETECTOR_INSTANCES = GPU.detector_instances
GPU_GENERATOR_INSTANCES = GPU.generator_instances
# Warmup: the first execution of an ONNX Runtime session or a TensorRT engine allocates and tunes; Triton runs these
# samples at load time, before the model reports READY (the Python backend runs them too). Ensembles have no warmup
# (they are no backend model); the Python stages are plain numpy and their inputs must be consistent with each
# other, so they are not warmed.
CPU_WARMUP_BATCHES = CPU.warmup_batches
GPU_WARMUP_BATCHES = GPU.warmup_batches
DETECTOR_WARMUP_SIZE = (480, 640)  # a VGA frame (multiple of 32, as detect_prep pads)
# Stage timeout, the one Triton offers (queue policy of the dynamic batcher): a request that waited this long for a
# stage is rejected (UNAVAILABLE, which clients retry with backoff) instead of being computed for a client that has
# given up; requests may ask for less (the `timeout` request parameter; facedeid's client sends its own deadline).
# Triton has no limit on a running execution: the stages bound their own work (stages.py limits).
STAGE_QUEUE_TIMEOUT_US = 60_000_000


def _queue_policy() -> str:
    return (f"default_queue_policy {{ timeout_action: REJECT default_timeout_microseconds: {STAGE_QUEUE_TIMEOUT_US} "
            f"allow_timeout_override: true }}")


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


def _instances(backend: str, count: int = 1) -> str:
    kind = "KIND_CPU" if backend == "python" else "KIND_GPU"
    return f"instance_group [ {{ kind: {kind} count: {count} }} ]\n"


def _warmup(tensor: str, dims: list[int], batches: tuple[int, ...], batched: bool) -> str:
    """model_warmup samples of zeros (Triton's random_data fills FP32 with random bytes: NaNs, which the stages
    reject); batch_size 1 for a model without batching."""
    samples = [f'  {{ name: "warmup_{b}" batch_size: {b if batched else 1} inputs {{ key: "{tensor}" value: '
               f'{{ data_type: TYPE_FP32 dims: [ {", ".join(map(str, dims))} ] zero_data: true }} }} }}'
               for b in batches]
    return "model_warmup [\n" + ",\n".join(samples) + "\n]\n"


def _params(**values) -> str:
    return "".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in values.items())


def generator_config(name: str, backend: str = "python", threads: int = CPU_THREADS, spin: int = CPU_SPIN,
                     instances: int = 1, queue_delay_us: int = QUEUE_DELAY_US,
                     max_batch_size: int = GENERATOR_MAX_BATCH) -> str:
    size = GENERATORS[name].size
    text = f'name: "{name}"\n' + _backend_lines(backend) + f"max_batch_size: {max_batch_size}\n"
    text += _io("input", [_tensor("INPUT", "FP32", [3, size, size])])
    text += _io("output", [_tensor("OUTPUT", "FP32", [3, size, size])])
    # Crops from concurrent frames are merged into one execution; a short wait buys much larger batches.
    text += f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} {_queue_policy()} }}\n"
    text += _instances(backend, instances)
    if backend == "python":
        text += _params(threads=threads, spin=int(spin))
    text += _warmup("INPUT", [3, size, size], CPU_WARMUP_BATCHES if backend == "python" else GPU_WARMUP_BATCHES,
                    batched=True)
    return text


def ksame_config() -> str:
    """The donor-average generator: numpy + CenterFace landmarks in the Python backend on every host (no plan)."""
    from ..ksame import NAME

    size = crop_size(NAME)
    text = f'name: "{NAME}"\nbackend: "python"\nmax_batch_size: {GENERATOR_MAX_BATCH}\n'
    # DONOR: the bank average a video track fixed (-1 or absent: chosen per crop); DONOR_USED: what each crop got.
    # LANDMARKS: five points per crop (crop pixels) a video track smoothed (NaN or absent: found on the crop).
    # COVER: what each crop's replacement covers (COVERS: 0 the inner face, 1 the whole head; absent: the face).
    text += _io("input", [_tensor("INPUT", "FP32", [3, size, size]), _tensor("DONOR", "INT32", [1], optional=True),
                          _tensor("LANDMARKS", "FP32", [10], optional=True),
                          _tensor("COVER", "INT32", [1], optional=True)])
    text += _io("output", [_tensor("OUTPUT", "FP32", [3, size, size]), _tensor("DONOR_USED", "INT32", [1])])
    text += f"dynamic_batching {{ max_queue_delay_microseconds: {QUEUE_DELAY_US} }}\n"
    return text + _instances("python") + _params(threads=CPU_THREADS)


def detector_config(backend: str = "python", threads: int = CPU_THREADS, spin: int = CPU_SPIN,
                    instances: int | None = None) -> str:
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
    if instances is None:
        instances = CPU_DETECTOR_INSTANCES if backend == "python" else GPU_DETECTOR_INSTANCES
    text += _instances(backend, instances)
    text += f"dynamic_batching {{ {_queue_policy()} }}\n"  # no batching (max_batch_size 0): the stage timeout
    if backend == "python":
        text += _params(threads=threads, spin=int(spin))
    text += _warmup("IMAGE", [1, 3, *DETECTOR_WARMUP_SIZE], (1,), batched=False)
    return text


def _python_stage(name: str, inputs: list[str], outputs: list[str], instances: int = CPU_STAGE_INSTANCES,
                  **params) -> str:
    text = f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\n'
    text += _io("input", inputs) + _io("output", outputs)
    text += _instances("python", instances)
    text += f"dynamic_batching {{ {_queue_policy()} }}\n"  # no batching (max_batch_size 0): the stage timeout
    return text + _params(**params)


def generate_config(generator: str, crop_size: int, instances: int = GENERATE_INSTANCES) -> str:
    """`generate_<gen>`: every crop of a frame through the generator, in batches of at most GENERATOR_MAX_BATCH.

    Each instance waits on its frame's generator requests; several instances keep several frames' crops in the
    generator's queue at once, so its dynamic batcher can still merge them (one instance: one frame at a time).
    A generator with a per-face choice (DONOR_GENERATORS) also passes DONOR and LANDMARKS in and DONOR_USED out,
    and the request's COVER to every crop."""
    inputs = [_tensor("CROPS", "FP32", [-1, 3, crop_size, crop_size])]
    outputs = [_tensor("GENERATED", "FP32", [-1, 3, crop_size, crop_size])]
    params = dict(generator=generator, max_batch=GENERATOR_MAX_BATCH)
    if generator in DONOR_GENERATORS:
        inputs += [DONOR, _tensor("LANDMARKS", "FP32", [-1, 10], optional=True), COVER]
        outputs.append(DONOR_USED)
        params["donor"] = 1
    return _python_stage(f"generate_{generator}", inputs, outputs, instances, **params)


# The optional ensemble input COVER (settings.COVERS), on the ensembles of settings.COVER_GENERATORS.
COVER = _tensor("COVER", "INT32", [1], optional=True)
# The prep models' crop side when none is named (the trained generators'); other sides get prep models of their own.
STANDARD_CROP = 128
DETECT_ENSEMBLE = "detect_faces"  # detection only: what the tracked video path asks before it fixes its boxes
DONOR = _tensor("DONOR", "INT32", [-1], optional=True)
DONOR_USED = _tensor("DONOR_USED", "INT32", [-1])
FRAME = _tensor("FRAME", "UINT8", [-1, -1, 3])
BOXES = _tensor("BOXES", "FP32", [-1, 4])
BLUR_BOXES = _tensor("BLUR_BOXES", "FP32", [-1, 4])
# Optional per-request detection settings (ensemble inputs; absent = the face_prep/detect_prep defaults).
SETTINGS = {
    "THRESHOLD": _tensor("THRESHOLD", "FP32", [1], optional=True),
    "DET_SIZE": _tensor("DET_SIZE", "INT32", [1], optional=True),
    "GENERATE_THRESHOLD": _tensor("GENERATE_THRESHOLD", "FP32", [1], optional=True),
}
# Optional ensemble input: 1 also detects on the frame turned 90/180/270 degrees (absent: the prep stages' default).
ROTATIONS = _tensor("ROTATIONS", "INT32", [1], optional=True)
ROLL = _tensor("ROLL", "FP32", [-1])  # per box: degrees its crop was turned to stand the face upright
ROLL_IN = _tensor("ROLL_IN", "FP32", [-1], optional=True)  # per caller box, the same (absent: all upright)
# Per caller box: its five landmarks in frame pixels (a video track's smoothed ones; absent: found on each crop)
LANDMARKS_IN = _tensor("LANDMARKS_IN", "FP32", [-1, 10], optional=True)
MAP_NAMES = ("HEATMAP", "SCALE", "OFFSET", "LANDMARKS")


def prep_model(stage: str, size: int) -> str:
    """The model that cuts `size` px crops: `face_prep`/`box_prep` at the standard side, else `<stage>_<size>`."""
    return stage if size == STANDARD_CROP else f"{stage}_{size}"


def _maps(suffix: str = "") -> list[str]:
    return [_tensor(f"{n}{suffix}", "FP32", [-1, c, -1, -1]) for n, c in zip(MAP_NAMES, (1, 2, 2, 10))]


def stage_configs(crop_size: int, instances: int = CPU_STAGE_INSTANCES, det_size: int = CPU.det_size,
                  full_size: int = CPU.full_size, min_generate_side: float = CPU.min_generate_side,
                  min_face: int = CPU.min_face, extra_crop_sizes: tuple[int, ...] = ()) -> dict[str, str]:
    """The Python stages. `det_size`/`full_size` are the detection defaults of detect_prep and face_prep: the CPU
    cap by default; GPU hosts detect natively (`full_size` 0, `det_size` 640: gpu_configs). `min_face`: the
    smallest face the capped pass keeps findable. Rotations are off unless a request sends ROTATIONS.
    `extra_crop_sizes`: a face_prep and a box_prep (`prep_model`) for each further crop side some generator's
    ensembles use; compose takes square crops of any side."""
    detect = dict(det_size=det_size, full_size=full_size, min_face=min_face, rotations=int(CPU.rotations))
    out = {
        "detect_prep": _python_stage(
            "detect_prep", [FRAME, SETTINGS["DET_SIZE"], ROTATIONS],
            [_tensor("IMAGE", "FP32", [-1, 3, -1, -1]), _tensor("IMAGE_SMALL", "FP32", [-1, 3, -1, -1])],
            instances, **detect),
    }
    for size in (crop_size, *extra_crop_sizes):
        crops_t = _tensor("CROPS", "FP32", [-1, 3, size, size])
        face_prep, box_prep = prep_model("face_prep", size), prep_model("box_prep", size)
        out[face_prep] = _python_stage(
            face_prep, [FRAME, *_maps(), *_maps("_SMALL"), *SETTINGS.values(), ROTATIONS],
            [crops_t, BOXES, BLUR_BOXES, _tensor("LANDMARKS", "FP32", [-1, 10]), ROLL], instances,
            crop_size=size, threshold=CPU.threshold,
            generate_threshold=CPU.generate_threshold, min_generate_side=min_generate_side, **detect)
        out[box_prep] = _python_stage(box_prep, [FRAME, _tensor("BOXES_IN", "FP32", [-1, 4]), ROLL_IN, LANDMARKS_IN],
                                      [crops_t, BOXES, ROLL, _tensor("CROP_LANDMARKS", "FP32", [-1, 10])], instances,
                                      crop_size=size)
    out["compose"] = _python_stage(
        "compose", [FRAME, _tensor("GENERATED", "FP32", [-1, 3, -1, -1]), BOXES,
                    _tensor("BLUR_BOXES", "FP32", [-1, 4], optional=True),
                    _tensor("ROLL", "FP32", [-1], optional=True)],
        [_tensor("DEID_FRAME", "UINT8", [-1, -1, 3])], instances)
    return out


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    ins = "".join(f'      input_map {{ key: "{k}" value: "{v}" }}\n' for k, v in inputs.items())
    outs = "".join(f'      output_map {{ key: "{k}" value: "{v}" }}\n' for k, v in outputs.items())
    return f'    {{\n      model_name: "{model}"\n      model_version: -1\n{ins}{outs}    }}'


def _detect_steps(crops: bool = True, face_prep: str = "face_prep") -> list[str]:
    full = {n: f"det_{n.lower()}" for n in MAP_NAMES}
    small = {n: f"det_{n.lower()}_small" for n in MAP_NAMES}
    return [
        _step("detect_prep", {"FRAME": "FRAME", "DET_SIZE": "DET_SIZE", "ROTATIONS": "ROTATIONS"},
              {"IMAGE": "det_image", "IMAGE_SMALL": "det_image_small"}),
        _step(DETECTOR, {"IMAGE": "det_image"}, full),
        _step(DETECTOR, {"IMAGE": "det_image_small"}, small),
        _step(face_prep, {"FRAME": "FRAME", **{n: v for n, v in full.items()},
                            **{f"{n}_SMALL": v for n, v in small.items()}, **{k: k for k in SETTINGS},
                            "ROTATIONS": "ROTATIONS"},
              {**({"CROPS": "crops"} if crops else {}), "BOXES": "BOXES", "BLUR_BOXES": "BLUR_BOXES",
               "LANDMARKS": "LANDMARKS", "ROLL": "ROLL"}),
    ]


def _ensemble(name: str, inputs: list[str], outputs: list[str], steps: list[str]) -> str:
    text = f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: 0\n'
    text += _io("input", inputs)
    text += _io("output", outputs)
    text += "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}\n"
    return text


def detect_ensemble_config() -> str:
    """`detect_faces`: the detect ensembles' detection without generation (BOXES: generate tier, BLUR_BOXES: blur
    tier). The tracked video path detects here, fixes each track's boxes and choices, then calls a `_boxes`
    ensemble: no frame is generated twice."""
    outputs = [BOXES, BLUR_BOXES, _tensor("LANDMARKS", "FP32", [-1, 10]), ROLL]
    # face_prep's CROPS stay unmapped: Triton refuses an ensemble tensor nothing consumes
    return _ensemble(DETECT_ENSEMBLE, [FRAME, *SETTINGS.values(), ROTATIONS], outputs, _detect_steps(crops=False))


def ensemble_config(generator: str, boxes_given: bool) -> str:
    name = f"deid_{generator}" + ("_boxes" if boxes_given else "")
    size = crop_size(generator)
    box_prep = prep_model("box_prep", size)
    outputs = [_tensor("DEID_FRAME", "UINT8", [-1, -1, 3]), BOXES]
    compose_inputs = {"FRAME": "FRAME", "GENERATED": "generated", "BOXES": "BOXES", "ROLL": "ROLL"}
    generate_inputs, generate_outputs = {"CROPS": "crops"}, {"GENERATED": "generated"}
    if boxes_given:
        # BLUR_BOXES_IN: boxes the caller wants in the blur tier (a tracked video's low-confidence or lost faces).
        inputs = [FRAME, _tensor("BOXES_IN", "FP32", [-1, 4]), ROLL_IN,
                  _tensor("BLUR_BOXES_IN", "FP32", [-1, 4], optional=True)]
        outputs.append(ROLL)
        compose_inputs["BLUR_BOXES"] = "BLUR_BOXES_IN"
        steps = [_step(box_prep, {"FRAME": "FRAME", "BOXES_IN": "BOXES_IN", "ROLL_IN": "ROLL_IN"},
                       {"CROPS": "crops", "BOXES": "BOXES", "ROLL": "ROLL"})]
        if generator in DONOR_GENERATORS:
            inputs += [DONOR, LANDMARKS_IN]
            outputs.append(DONOR_USED)
            steps = [_step(box_prep, {"FRAME": "FRAME", "BOXES_IN": "BOXES_IN", "ROLL_IN": "ROLL_IN",
                                        "LANDMARKS_IN": "LANDMARKS_IN"},
                           {"CROPS": "crops", "BOXES": "BOXES", "ROLL": "ROLL", "CROP_LANDMARKS": "crop_landmarks"})]
            generate_inputs.update(DONOR="DONOR", LANDMARKS="crop_landmarks")
            generate_outputs["DONOR_USED"] = "DONOR_USED"
    else:
        inputs = [FRAME, *SETTINGS.values(), ROTATIONS]
        outputs += [BLUR_BOXES, _tensor("LANDMARKS", "FP32", [-1, 10]), ROLL]
        compose_inputs["BLUR_BOXES"] = "BLUR_BOXES"
        steps = _detect_steps(face_prep=prep_model("face_prep", size))
    if generator in COVER_GENERATORS:
        inputs.append(COVER)
        generate_inputs["COVER"] = "COVER"
    steps += [
        _step(f"generate_{generator}", generate_inputs, generate_outputs),
        _step("compose", compose_inputs, {"DEID_FRAME": "DEID_FRAME"}),
    ]
    return _ensemble(name, inputs, outputs, steps)


def all_configs(backend: str = "python", det_size: int = CPU.det_size,
                full_size: int = CPU.full_size) -> dict[str, str]:
    """Every model directory name -> its config.pbtxt text (`det_size`/`full_size`: detection defaults of the
    prep stages, the CPU cap unless given)."""
    from ..ksame import NAME as KSAME

    extra = tuple(sorted({crop_size(n) for n in (*GENERATORS, KSAME)} - {STANDARD_CROP}))
    configs = {DETECTOR: detector_config(backend),
               **stage_configs(STANDARD_CROP, det_size=det_size, full_size=full_size, extra_crop_sizes=extra),
               DETECT_ENSEMBLE: detect_ensemble_config()}
    for name in GENERATORS:
        configs[name] = generator_config(name, backend)
        configs[f"generate_{name}"] = generate_config(name, crop_size(name))
        configs[f"deid_{name}"] = ensemble_config(name, boxes_given=False)
        configs[f"deid_{name}_boxes"] = ensemble_config(name, boxes_given=True)
    configs[KSAME] = ksame_config()
    configs[f"generate_{KSAME}"] = generate_config(KSAME, crop_size(KSAME))
    configs[f"deid_{KSAME}"] = ensemble_config(KSAME, boxes_given=False)
    configs[f"deid_{KSAME}_boxes"] = ensemble_config(KSAME, boxes_given=True)
    return configs
