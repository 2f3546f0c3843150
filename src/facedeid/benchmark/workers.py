"""The benchmark's workers: each mode de-identifies the same frames in its own process and times it.

A worker runs as ``python -m facedeid.benchmark --worker MODE --setup setup.json --worker-out out.json`` (started
by facedeid.benchmark.run), so its client peak memory (ru_maxrss) and thread pools are its own.
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from ..metrics import percentile
from ..paths import SCENES
from ..settings import CPU

DEFAULT_MODES = ("eager", "onnxruntime", "triton", "blur", "blur640")
# torch: the served steps in-process on PyTorch (facedeid.runtime_torch) on setup["device"]; `--in-process` runs it
MODES = (*DEFAULT_MODES, "torch")
DEFAULT_CONCURRENCY = (1, 4, 16)
EAGER_BATCH_FRAMES = 16
WARMUP_FRAMES = 2
MATMUL_N = 2048
# In-process ONNX Runtime sessions (onnxruntime, blur640 and eager's detector): the cpu profile's threads and spin,
# as served (docs/benchmarks.md, "Changes made", item 2); --inproc-threads / --inproc-spin change it.
INPROC_THREADS = CPU.threads
INPROC_SPIN = CPU.spin


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


def _timed_run(label: str, frames: int, faces: int, wall: float, latencies: list[float], **extra) -> dict:
    return {
        "label": label, "frames": frames, "faces": faces, "wall_s": wall,
        "fps": frames / wall if wall > 0 else float("nan"),
        "faces_per_s": faces / wall if wall > 0 else float("nan"),
        "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
        "latencies_ms": [round(v, 3) for v in latencies], **extra,
    }


def _detector(setup: dict):
    """In-process CenterFace with the in-process thread settings."""
    from ..detection import CenterFaceDetector

    return CenterFaceDetector(threshold=setup["threshold"], threads=setup["inproc_threads"],
                              spin=setup["inproc_spin"])


def work_onnxruntime(setup: dict, frames: list[np.ndarray]) -> list[dict]:
    """The served steps in-process (facedeid.pipeline over the exported repository's ONNX files), frame by frame."""
    from ..pipeline import Deidentifier

    deidentify = Deidentifier.from_repository(Path(setup["repository"]), setup["generator"],
                                              threads=setup["inproc_threads"], spin=setup["inproc_spin"])
    return [_inprocess_run("onnxruntime", deidentify, setup, frames)]


def work_torch(setup: dict, frames: list[np.ndarray]) -> list[dict]:
    """The served steps in-process on PyTorch (facedeid.runtime_torch: fp16 + CUDA graphs on cuda, fp32 on cpu)."""
    import torch

    from ..pipeline import Deidentifier

    device = setup.get("device") or None
    # the in-process thread setting, as the onnxruntime mode: on the shared 2-core machine two torch threads made a
    # network's forward pass up to 40x slower than one (evaluation/measure.py CLIENT_THREADS)
    torch.set_num_threads(setup["inproc_threads"])
    deidentify = Deidentifier.local(setup["generator"], device)
    run = _inprocess_run("torch", deidentify, setup, frames, sync=torch.cuda.synchronize
                         if torch.cuda.is_available() and device != "cpu" else None)
    run["device"] = deidentify.detector.device
    return [run]


def _inprocess_run(label: str, deidentify, setup: dict, frames: list[np.ndarray], sync=None) -> dict:
    """Frame by frame through a pipeline.Deidentifier, with its per-step times."""
    for frame in frames[:WARMUP_FRAMES]:
        deidentify(frame)
    deidentify.reset_timers()
    latencies, faces = [], 0
    start = time.perf_counter()
    for frame in frames:
        t0 = time.perf_counter()
        _, boxes, blurred = deidentify.deidentify(frame)
        if sync is not None:
            sync()
        latencies.append((time.perf_counter() - t0) * 1e3)
        faces += len(boxes) + len(blurred)  # every anonymised face: generated and blurred, as in the other modes
    wall = time.perf_counter() - start
    # steps named as the served models, so the in-process rows line up with Triton's statistics
    steps = {(setup["generator"] if step == "generator" else step): ms / len(frames)
             for step, ms in deidentify.step_ms.items()}
    return _timed_run(label, len(frames), faces, wall, latencies, step_ms_per_frame=steps)


def work_eager(setup: dict, frames: list[np.ndarray]) -> list[dict]:
    """Research-style evaluation: PyTorch eager, per-face Python crop/convert/resize, 16 frames per batch."""
    import torch
    import torch.nn.functional as F

    from .. import compose as composer
    from .. import crops as crop_ops
    from ..models import get_spec

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
    from ..baselines import blur

    detector = _detector(setup)

    def one(frame):
        boxes, _ = detector(frame)
        blur(frame, boxes)
        return len(boxes)

    return [_time_per_frame("blur640", one, frames)]


def work_triton(setup: dict, frames: list[np.ndarray]) -> list[dict]:
    """The detect ensemble over gRPC (facedeid.client) at each concurrency level, with per-model server statistics."""
    from ..client.triton_models import TritonModels
    from ..serving.local_server import memory_mb

    url, generator = setup["url"], setup["generator"]
    from ..models.registry import crop_size
    from ..serving.configs import prep_model

    model = f"deid_{generator}"
    stage_models = [model, "detect_prep", "face_detector", prep_model("face_prep", crop_size(generator)),
                    f"generate_{generator}", generator, "compose"]
    server = TritonModels(url)
    _triton_level(url, model, frames[:WARMUP_FRAMES], 1)
    runs = []
    for concurrency in setup["concurrency"]:
        before = server.statistics(stage_models)
        cpu0 = _cpu_seconds()
        wall, latencies, faces = _triton_level(url, model, frames, concurrency)
        client_cpu = _cpu_seconds() - cpu0
        stats = _stats_delta(server.statistics(stage_models), before)
        memory = memory_mb(setup["server_pid"]) if setup.get("server_pid") else {}
        runs.append(_timed_run(f"triton c={concurrency}", len(frames), faces, wall, latencies,
                               concurrency=concurrency, server_stats=stats, server_memory=memory,
                               client_cpu_share=client_cpu / wall))
    server.close()
    return runs


def _triton_level(url: str, model: str, frames: list[np.ndarray], concurrency: int) -> tuple[float, list, int]:
    """Every frame through the project's asynchronous client, `concurrency` requests in flight, no retries."""
    from ..client.triton import DeidClient

    with DeidClient(url, concurrency=concurrency, timeout_s=600.0, retries=0) as client:
        start = time.perf_counter()
        results = [future.result() for future in [client.submit(model, frame) for frame in frames]]
        wall = time.perf_counter() - start
    # faces = every anonymised face: generated (BOXES) and blurred (BLUR_BOXES), as in the other modes
    return wall, [r.latency_s * 1e3 for r in results], sum(len(r.boxes) + len(r.blurred) for r in results)


def _stats_delta(after: dict, before: dict) -> dict:
    return {m: {k: v - before.get(m, {}).get(k, 0) for k, v in d.items()} for m, d in after.items()}


def work_hardware(setup: dict, frames: list[np.ndarray]) -> list[dict]:
    """Machine peak (float32 matmul) and, per generator, FLOPs per face and achieved FLOP/s (PyTorch, ORT)."""
    import io
    import warnings

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..models import GENERATORS

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
            eager = min(_time(lambda model=model, x=x: model(x)) for _ in range(2)) / batch
        onnx_file = cache / f"flops-{name}.onnx"  # exported once per run, reused by later repeats
        if not onnx_file.exists():
            buffer = io.BytesIO()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x[:1],), buffer, input_names=["INPUT"], output_names=["OUTPUT"],
                                  dynamic_axes={"INPUT": {0: "batch"}, "OUTPUT": {0: "batch"}}, opset_version=17,
                                  dynamo=False)
            onnx_file.write_bytes(buffer.getvalue())
        from ..onnx_runtime import cpu_session

        session = cpu_session(onnx_file, setup["inproc_threads"], setup["inproc_spin"])
        feed = {"INPUT": x.numpy()}
        session.run(None, feed)
        onnx_time = min(_time(lambda session=session, feed=feed: session.run(None, feed)) for _ in range(2)) / batch
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


WORKERS = {"eager": work_eager, "onnxruntime": work_onnxruntime, "torch": work_torch, "triton": work_triton,
           "blur": work_blur, "blur640": work_blur640, "hardware": work_hardware}


def worker_main(mode: str, setup_path: Path, out_path: Path) -> None:
    setup = json.loads(Path(setup_path).read_text())
    frames = load_frames(setup["frames"], setup.get("frame_limit")) if mode != "hardware" else []
    runs = WORKERS[mode](setup, frames)
    peak = client_peak_mb()
    for run in runs:
        run["client_peak_mb"] = peak
    Path(out_path).write_text(json.dumps({"mode": mode, "runs": runs}))


