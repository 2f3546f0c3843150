"""Face boxes to generator crops and back: the one place that defines what a "face crop" is.

Served pipeline, training and evaluation all call these functions, so what is trained is what is served.
Boxes are pixel `x1, y1, x2, y2` (float, exclusive right/bottom edge). Crops are square, expanded around the box
so the generator sees hair and background around the face, and padded by edge replication at frame borders.
"""

from __future__ import annotations

import cv2
import numpy as np

EXPAND = 1.4  # square crop side = EXPAND * longest box side


def validate_frame(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise ValueError(f"frame must be a uint8 array, got {getattr(frame, 'dtype', type(frame))}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must have shape [H, W, 3] (RGB), got {list(frame.shape)}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"frame is empty: shape {list(frame.shape)}")
    return frame


def clean_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Validate caller boxes ([N,4] pixels), clip to the frame, drop boxes with no area inside it."""
    boxes = np.asarray(boxes, dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4] (x1, y1, x2, y2 in pixels), got {list(boxes.shape)}")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes contain NaN or infinite values")
    clipped = boxes.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, width)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, height)
    keep = (clipped[:, 2] - clipped[:, 0] >= 1) & (clipped[:, 3] - clipped[:, 1] >= 1)
    return clipped[keep]


def expand_boxes(boxes: np.ndarray, expand: float = EXPAND) -> np.ndarray:
    """Square integer crop windows [N,4] (may extend past the frame) centred on each box."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    side = np.maximum(np.ceil(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * expand), 2)
    x1 = np.floor(cx - side / 2)
    y1 = np.floor(cy - side / 2)
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1).astype(np.int64)


def crop_window(frame: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Pixels of one square window, replicating the frame's edge where the window leaves the frame."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in window)
    inner = frame[max(y1, 0) : min(y2, h), max(x1, 0) : min(x2, w)]
    pads = (max(-y1, 0), max(y2 - h, 0), max(-x1, 0), max(x2 - w, 0))
    if any(pads):
        inner = cv2.copyMakeBorder(inner, *pads, cv2.BORDER_REPLICATE)
    return inner


def to_tensor(crops_uint8: np.ndarray) -> np.ndarray:
    """[N,S,S,3] uint8 RGB -> [N,3,S,S] float32 in [-1, 1] (the generators' input convention)."""
    out = np.empty((crops_uint8.shape[0], 3, *crops_uint8.shape[1:3]), np.float32)
    out[...] = crops_uint8.transpose(0, 3, 1, 2)  # contiguous NCHW in one pass (Triton would copy otherwise)
    out /= 127.5
    out -= 1.0
    return out


def from_tensor(tensor: np.ndarray) -> np.ndarray:
    """[N,3,S,S] float in [-1, 1] -> [N,S,S,3] uint8 RGB."""
    tensor = np.asarray(tensor)
    dtype = tensor.dtype if np.issubdtype(tensor.dtype, np.floating) else np.float64
    out = tensor.transpose(0, 2, 3, 1).astype(dtype, order="C")  # a contiguous NHWC copy, so cv2.resize need not copy
    out += 1.0
    out *= 127.5
    out += 0.5
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def extract_crops(frame: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Face crops [N,S,S,3] uint8 and their windows [N,4] for boxes [N,4] in one frame."""
    windows = expand_boxes(boxes)
    crops = np.empty((len(windows), size, size, 3), dtype=np.uint8)
    for i, window in enumerate(windows):
        crops[i] = cv2.resize(crop_window(frame, window), (size, size), interpolation=cv2.INTER_AREA)
    return crops, windows
