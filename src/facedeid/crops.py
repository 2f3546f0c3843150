"""Face boxes to generator crops and back: the one place that defines what a "face crop" is.

Served pipeline, training and evaluation all call these functions, so what is trained is what is served.
Boxes are pixel `x1, y1, x2, y2` (float, exclusive right/bottom edge). Crops are square, expanded around the box
so the generator sees hair and background around the face, and padded by edge replication at frame borders.
"""

from __future__ import annotations

import cv2
import numpy as np

EXPAND = 1.4  # square crop side = EXPAND * longest box side
BOX_CONVENTION = "x1, y1, x2, y2 in pixels"
# Most boxes one frame may carry (caller boxes, label files, compose). The DNA frames carry 1.2 faces on average
# and dense crowd photos a few hundred; each box costs the compose stage work (docs/reliability.md, "Limits").
MAX_BOXES_PER_FRAME = 1024
# Largest crop window ever materialised (50 MB of RGB): a larger window (a face over 2925 px) is cropped from the
# frame shrunk first, so a box far larger than the frame (a 1x8192 frame, box [0, 0, 8192, 1]: an 11469 px window)
# never makes the server allocate side^2 pixels. Windows up to this side are cropped exactly as in training.
MAX_WINDOW_SIDE = 4096


def validate_frame(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise ValueError(f"frame must be a uint8 array, got {getattr(frame, 'dtype', type(frame))}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must have shape [H, W, 3] (RGB), got {list(frame.shape)}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"frame is empty: shape {list(frame.shape)}")
    return frame


def _box_array(boxes) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4] ({BOX_CONVENTION}), got {list(boxes.shape)}")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes contain NaN or infinite values")
    return boxes


def _clip(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """A copy of boxes [N,4] clipped to the width x height frame."""
    clipped = boxes.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, width)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, height)
    return clipped


def clean_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Detector boxes ([N,4] pixels): validate, clip to the frame, drop boxes with no area inside it.

    For boxes a caller gives, use `check_boxes`: it refuses what this drops.
    """
    clipped = _clip(_box_array(boxes), width, height)
    keep = (clipped[:, 2] - clipped[:, 0] >= 1) & (clipped[:, 3] - clipped[:, 1] >= 1)
    return clipped[keep]


def _fmt_box(box) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in box) + "]"


def check_boxes(boxes, width: int, height: int, max_boxes: int = MAX_BOXES_PER_FRAME) -> np.ndarray:
    """Caller boxes [N,4] (x1, y1, x2, y2 in pixels) -> the boxes clipped to the frame; never drops one.

    A box that cannot be anonymised as given is refused with a ValueError naming it (and the convention): inverted
    (x2 < x1 or y2 < y1, e.g. `x, y, w, h` sent by mistake), outside the frame, or empty / under 1 px wide or high
    once clipped to the frame. More than `max_boxes` boxes are refused with the limit in the message.
    """
    boxes = _box_array(boxes)
    if len(boxes) > max_boxes:
        raise ValueError(f"{len(boxes)} boxes in one frame; the limit is {max_boxes} boxes per frame")
    clipped = _clip(boxes, width, height)
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    outside = ~inverted & ((boxes[:, 2] <= 0) | (boxes[:, 3] <= 0) | (boxes[:, 0] >= width)
                           | (boxes[:, 1] >= height))
    thin = ~inverted & ~outside & ((clipped[:, 2] - clipped[:, 0] < 1) | (clipped[:, 3] - clipped[:, 1] < 1))
    bad = inverted | outside | thin
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        if inverted[i]:
            reason = "is inverted (x2 < x1 or y2 < y1; x, y, w, h sent instead?)"
        elif outside[i]:
            reason = f"lies outside the {width}x{height} frame"
        else:
            clipped_note = "" if np.array_equal(clipped[i], boxes[i]) else f" (clipped: {_fmt_box(clipped[i])})"
            reason = f"is empty or under 1 px wide or high inside the {width}x{height} frame{clipped_note}"
        more = int(bad.sum()) - 1
        raise ValueError(f"box {i} {_fmt_box(boxes[i])} {reason}; boxes are {BOX_CONVENTION}"
                         + (f" ({more} more bad boxes)" if more else ""))
    return clipped


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


def window_crop(frame: np.ndarray, window: np.ndarray, size: int) -> np.ndarray:
    """One window resized to a size x size crop (area-averaged); never allocates more than MAX_WINDOW_SIDE^2."""
    side = int(window[2] - window[0])
    if side <= MAX_WINDOW_SIDE:
        return cv2.resize(crop_window(frame, window), (size, size), interpolation=cv2.INTER_AREA)
    # Shrink the in-frame part by k first, then edge-pad it to a square of `shrunk` pixels: the same picture as the
    # padded full window at 1/k of its side, still 8x the crop's side (so the last resize still averages).
    shrunk = 8 * size
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in window)
    fx1, fy1, fx2, fy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    k = shrunk / side
    left, top = min(int((fx1 - x1) * k), shrunk - 1), min(int((fy1 - y1) * k), shrunk - 1)
    inner_w = min(max(1, round((fx2 - fx1) * k)), shrunk - left)
    inner_h = min(max(1, round((fy2 - fy1) * k)), shrunk - top)
    part = frame[fy1:fy2, fx1:fx2]
    padded = np.empty((shrunk, shrunk, 3), np.uint8)
    bottom, right = top + inner_h, left + inner_w
    padded[top:bottom, left:right] = cv2.resize(part, (inner_w, inner_h), interpolation=cv2.INTER_AREA)
    # The replicated margins repeat the frame's own edge rows and columns (shrunk along them only), as the full
    # window's do; replicating the shrunk part's edge instead would blur them into their neighbours.
    padded[:top, left:right] = cv2.resize(part[:1], (inner_w, 1), interpolation=cv2.INTER_AREA)
    padded[bottom:, left:right] = cv2.resize(part[-1:], (inner_w, 1), interpolation=cv2.INTER_AREA)
    padded[:, :left] = padded[:, left : left + 1]
    padded[:, right:] = padded[:, right - 1 : right]
    padded[top:bottom, :left] = cv2.resize(part[:, :1], (1, inner_h), interpolation=cv2.INTER_AREA)
    padded[top:bottom, right:] = cv2.resize(part[:, -1:], (1, inner_h), interpolation=cv2.INTER_AREA)
    padded[:top, :left], padded[:top, right:] = part[0, 0], part[0, -1]
    padded[bottom:, :left], padded[bottom:, right:] = part[-1, 0], part[-1, -1]
    return cv2.resize(padded, (size, size), interpolation=cv2.INTER_AREA)


def turn(faces: np.ndarray, turns: np.ndarray) -> np.ndarray:
    """Square crops [N,S,S,3] each turned turns[i] quarter turns counter-clockwise (np.rot90; negative: clockwise),
    so a rolled face is generated upright and its generated face turned back to the roll it was found at."""
    turns = np.asarray(turns, np.int64) % 4
    if not turns.any():
        return faces
    out = faces.copy()
    for i in np.flatnonzero(turns):
        out[i] = np.rot90(faces[i], int(turns[i]))
    return out


def points_in_crops(points: np.ndarray, windows: np.ndarray, size: int, turns: np.ndarray | None = None) -> np.ndarray:
    """Frame pixels [N,K,2] -> the same points in each window's size x size crop [N,K,2], after the crop's
    `turns` quarter turns counter-clockwise (as `turn`); pixel centres map to pixel centres."""
    points = np.asarray(points, np.float64).reshape(len(windows), -1, 2)
    windows = np.asarray(windows, np.float64).reshape(-1, 4)
    k = size / (windows[:, 2] - windows[:, 0])
    out = (points + 0.5 - windows[:, None, :2]) * k[:, None, None] - 0.5
    for i, quarter in enumerate(np.zeros(len(windows), np.int64) if turns is None else np.asarray(turns) % 4):
        for _ in range(int(quarter)):  # np.rot90 once: (x, y) -> (y, size - 1 - x)
            out[i] = np.stack([out[i, :, 1], size - 1 - out[i, :, 0]], axis=1)
    return out


def extract_crops(frame: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Face crops [N,S,S,3] uint8 and their windows [N,4] for boxes [N,4] in one frame."""
    windows = expand_boxes(boxes)
    crops = np.empty((len(windows), size, size, 3), dtype=np.uint8)
    for i, window in enumerate(windows):
        crops[i] = window_crop(frame, window, size)
    return crops, windows
