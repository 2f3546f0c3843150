"""Clips with a known camera move: a real photo panned and zoomed by a known affine per frame, encoded as H.264.

No own footage is needed to measure temporal stability: every frame is `photo -> frame` under a known 2x3 affine,
so any frame can be warped exactly onto the next (evaluation/temporal.py), and each face box of the photo is known
in every frame. The record (`<clip>.json`) holds the affine per frame and the face boxes per frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .ffmpeg import encode_video

FPS = 25.0


@dataclass
class Move:
    frames: int = 40
    size: tuple[int, int] = (480, 360)  # width, height of the clip
    pan: tuple[float, float] = (1.5, 0.5)  # photo pixels per frame the camera moves (x, y)
    zoom: float = 0.15  # the scale grows by this share over the clip


def affines(photo_shape: tuple[int, int], move: Move, boxes: np.ndarray | None = None) -> np.ndarray:
    """[T,3,3] photo -> frame transforms: the frame shows the photo scaled to cover it, zooming in about a centre
    (the faces' centre, else the photo's) that pans across the photo; the view never leaves the photo."""
    h, w = photo_shape[:2]
    fw, fh = move.size
    span = max(0.0, move.frames - 1)
    base = max(fw / w, fh / h) * (1 + move.zoom)
    boxes = None if boxes is None or not len(boxes) else np.asarray(boxes, np.float64).reshape(-1, 4)
    if boxes is None:
        centre = np.array([w / 2, h / 2])
    else:
        centre = np.array([(boxes[:, 0].min() + boxes[:, 2].max()) / 2, (boxes[:, 1].min() + boxes[:, 3].max()) / 2])
    out = []
    for t in range(move.frames):
        scale = base * (1 + move.zoom * t / max(span, 1))
        half_w, half_h = fw / 2 / scale, fh / 2 / scale
        cx = float(np.clip(centre[0] + move.pan[0] * (t - span / 2), half_w, w - half_w))
        cy = float(np.clip(centre[1] + move.pan[1] * (t - span / 2), half_h, h - half_h))
        out.append(np.array([[scale, 0, fw / 2 - scale * cx], [0, scale, fh / 2 - scale * cy], [0, 0, 1]]))
    return np.stack(out)


def boxes_in_frame(boxes: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Photo boxes [N,4] -> the same boxes in a frame (scale and translation only: exact)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    pts = np.stack([boxes[:, :2], boxes[:, 2:]], 1) @ m[:2, :2].T + m[:2, 2]
    return pts.reshape(-1, 4).astype(np.float32)


def make_clip(photo: np.ndarray, boxes: np.ndarray, path: Path, move: Move | None = None, fps: float = FPS) -> dict:
    """Write the clip (H.264, yuv420p) and its record; returns the record."""
    import cv2

    move = move or Move()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ms = affines(photo.shape, move, boxes)
    fw, fh = move.size
    encode_video(path, (cv2.warpAffine(photo, m[:2], (fw, fh), borderMode=cv2.BORDER_REFLECT,
                                       flags=cv2.INTER_AREA if m[0, 0] < 1 else cv2.INTER_LINEAR) for m in ms), fps)
    record = {"clip": path.name, "fps": fps, "size": [fw, fh], "frames": move.frames,
              "move": {"pan_px_per_frame": list(move.pan), "zoom": move.zoom},
              "affines": [m[:2].tolist() for m in ms],
              "faces": [boxes_in_frame(boxes, m).round(2).tolist() for m in ms]}
    path.with_suffix(".json").write_text(json.dumps(record) + "\n")
    return record
