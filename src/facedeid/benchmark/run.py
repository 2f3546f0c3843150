"""Orchestration: an exported repository with the experiment's configs, a local server, the workers repeat by repeat.

Modes are interleaved repeat by repeat so that background load hits them alike; a failing mode is recorded and the
others' numbers are kept.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..detection import DEFAULT_THRESHOLD
from .summary import summarize
from .workers import DEFAULT_CONCURRENCY, DEFAULT_MODES, INPROC_SPIN, INPROC_THREADS, MATMUL_N, frame_paths

OVERRIDES = ("gen_threads", "det_threads", "queue_delay_us", "gen_instances", "det_instances", "stage_instances",
             "spin", "gen_max_batch", "min_generate_side", "full_size", "det_size")


def run_worker(mode: str, setup_path: Path, workdir: Path, timeout: float = 1800,
               admin_key: str | None = None) -> list[dict]:
    out = workdir / f"{mode}-{time.monotonic_ns()}.json"
    cmd = [sys.executable, "-m", "facedeid.benchmark", "--worker", mode, "--setup", str(setup_path),
           "--worker-out", str(out)]
    env = os.environ | ({"TRITON_ADMIN_KEY": admin_key} if admin_key else {})  # never written to setup.json
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker '{mode}' failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text())["runs"]


def prepare_repository(target: Path, generator: str, allow_untrained: bool, overrides: dict | None = None) -> Path:
    """A model repository holding only the detector, the prep/compose stages and `generator` (exported to ONNX).

    `overrides` (keys in OVERRIDES) become keyword arguments of the config renderers (facedeid.serving.configs).
    """
    from ..export import export
    from ..models.registry import SERVED_GENERATORS, crop_size
    from ..paths import DEFAULT_REPOSITORY
    from ..serving.configs import STANDARD_CROP, prep_model
    from ..serving.repository import write_model_config

    # every other served generator stays out (ksame too: its bank is only there after its own export), and so do
    # the prep models of crop sides it does not use (ksame's face_prep_256 / box_prep_256)
    others = [n for n in SERVED_GENERATORS if n != generator]
    skip = {*others, *(f"deid_{n}" for n in others), *(f"deid_{n}_boxes" for n in others),
            *(prep_model(stage, crop_size(n)) for n in others for stage in ("face_prep", "box_prep")
              if crop_size(n) not in (STANDARD_CROP, crop_size(generator)))}
    shutil.copytree(DEFAULT_REPOSITORY, target,
                    ignore=lambda d, names: [n for n in names if n in skip or n.endswith((".onnx", ".plan"))
                                             or n == "__pycache__"])
    export([generator], "python", target, allow_untrained=allow_untrained, log=lambda *_: None)
    for name, text in override_configs(generator, overrides or {}).items():
        write_model_config(target, name, text)
    return target


def override_configs(generator: str, overrides: dict) -> dict[str, str]:
    """config.pbtxt texts of the models an experiment changes, rendered with the overrides as arguments."""
    from ..models.registry import crop_size
    from ..serving.configs import DETECTOR, STANDARD_CROP, detector_config, generator_config, prep_model, stage_configs

    unknown = set(overrides) - set(OVERRIDES)
    if unknown:
        raise ValueError(f"unknown overrides {sorted(unknown)}; known: {', '.join(OVERRIDES)}")

    def given(**names):
        return {arg: overrides[key] for arg, key in names.items() if overrides.get(key) is not None}

    out = {}
    gen = given(threads="gen_threads", spin="spin", instances="gen_instances", queue_delay_us="queue_delay_us",
                max_batch_size="gen_max_batch")
    if gen:
        out[generator] = generator_config(generator, "python", **gen)
    det = given(threads="det_threads", spin="spin", instances="det_instances")
    if det:
        out[DETECTOR] = detector_config("python", **det)
    stage = given(instances="stage_instances", min_generate_side="min_generate_side", full_size="full_size",
                  det_size="det_size")
    if stage:
        size = crop_size(generator)
        stages = stage_configs(STANDARD_CROP, extra_crop_sizes=() if size == STANDARD_CROP else (size,), **stage)
        out.update({name: stages[name] for name in ("detect_prep", prep_model("face_prep", size), "compose")})
    return out


def run(generator: str = "mobileunet", modes=DEFAULT_MODES, repeats: int = 3, frames: int | None = None,
        concurrency=DEFAULT_CONCURRENCY, url: str | None = None, repository: Path | None = None,
        server_pid: int | None = None, overrides: dict | None = None, flops_generators=None,
        workdir: Path | None = None, frame_files: list[str] | None = None, matmul_n: int = MATMUL_N,
        flops_batch: int = 2, inproc_threads: int | None = None, inproc_spin: bool = INPROC_SPIN,
        torch_threads: int | None = None, admin_key: str | None = None, device: str | None = None,
        temporal_frames: int = 0, log=print) -> dict:
    """Run the benchmark; returns the full result (config, machine, every run, summary).

    `admin_key` unlocks the statistics API of a server given by `url` (default $TRITON_ADMIN_KEY).
    `temporal_frames` > 0 also measures face stability in video (evaluation/temporal.py) for the generator and blur
    through the same server, on camera-move clips of that many frames: `result["temporal"]`."""
    from ..model_config import read_parameters
    from ..models import GENERATORS
    from ..onnx_runtime import spin_enabled
    from ..serving import local_server
    from ..serving.configs import CPU_THREADS

    spec = GENERATORS[generator]
    allow_untrained = not spec.has_checkpoint()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="facedeid-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    paths = [str(p) for p in frame_files] if frame_files is not None else frame_paths(frames)
    if repository is None:
        log(f"exporting {generator} ({'UNTRAINED random weights' if allow_untrained else 'trained weights'}) "
            f"into {workdir / 'model_repository'}")
        repository = prepare_repository(workdir / "model_repository", generator, allow_untrained, overrides)
    gen_params = read_parameters(Path(repository) / generator / "config.pbtxt")
    det_params = read_parameters(Path(repository) / "face_detector" / "config.pbtxt")
    setup = {
        "generator": generator, "size": spec.size, "allow_untrained": allow_untrained,
        "repository": str(repository), "frames": paths, "frame_limit": frames, "threshold": DEFAULT_THRESHOLD,
        "gen_threads": int(gen_params.get("threads", CPU_THREADS)),
        "det_threads": int(det_params.get("threads", CPU_THREADS)),
        "spin": spin_enabled(gen_params.get("spin")),
        "inproc_threads": inproc_threads or INPROC_THREADS, "workdir": str(workdir), "inproc_spin": inproc_spin,
        "torch_threads": torch_threads or os.cpu_count() or 1, "concurrency": list(concurrency), "matmul_n": matmul_n,
        "flops_batch": flops_batch, "device": device,
        "generators": list(flops_generators if flops_generators is not None else GENERATORS),
    }
    server = None
    admin_key = admin_key or os.environ.get("TRITON_ADMIN_KEY")  # a server given by url: its statistics key
    if "triton" in modes and url is None:
        log("starting tritonserver")
        server = local_server.start(Path(repository), workdir / "tritonserver.log")
        url, server_pid, admin_key = server.grpc_url, server.process.pid, server.admin_key
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
                    results = run_worker(mode, later_path if repeat and mode == "hardware" else setup_path, workdir,
                                         admin_key=admin_key)
                except (RuntimeError, subprocess.TimeoutExpired) as error:  # keep the other modes' numbers
                    log(f"repeat {repeat + 1}/{repeats} {mode}: FAILED\n{error}")
                    errors.append({"mode": mode, "repeat": repeat, "error": str(error)[-2000:]})
                    continue
                for result in results:
                    result.update(mode=mode, repeat=repeat)
                    runs.append(result)
                log(f"repeat {repeat + 1}/{repeats} {mode}: {time.perf_counter() - t0:.1f}s")
        server_mem = local_server.memory_mb(server_pid) if server_pid else {}
        temporal = _temporal(generator, url, workdir, temporal_frames, log) if temporal_frames else None
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
    if temporal is not None:
        result["temporal"] = temporal
    result["summary"] = summarize(result)
    return result


def _temporal(generator: str, url: str | None, workdir: Path, frames: int, log) -> dict:
    """The video-stability measurement of `generator` and blur, as `facedeid eval temporal` makes it."""
    from ..evaluation.temporal import run as temporal_run

    if url is None:
        raise ValueError("the temporal measurement needs a server: include the triton mode or give --url")
    log(f"temporal: {generator} and blur on camera-move clips of {frames} frames through `facedeid run`")
    measured = temporal_run([generator, "blur"], workdir / "temporal", url, frames)
    return {**measured, "models": {m: {k: v for k, v in s.items() if k != "per_face"}
                                   for m, s in measured["models"].items()}}


def _gpu_name() -> str:
    """The NVIDIA GPU's name, or a note that there is none (this benchmark then measures the CPU only)."""
    smi = shutil.which("nvidia-smi")
    if smi:
        proc = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
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


