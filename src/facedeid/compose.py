"""Put generated faces back into the frame with a feathered blend; mask what could not be generated.

Only pixels inside each crop window can change. The blend weight is 1 over the central part of the window (which
contains the whole face box, since the window is EXPAND times the box) and falls smoothly to 0 at the window edge,
so no hard rectangle is visible.

Cost is bounded by the frame, not by the window: only the part of a window inside the frame is ever computed (a
box far larger than the frame makes no window-sized array), in row bands of at most BAND_PIXELS, and the cache of
blend weights is bounded in bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import cv2
import numpy as np

from .crops import EXPAND

MASK_RGB = (128, 128, 128)  # fail-closed fill for faces that could not be generated
BAND_PIXELS = 1 << 20  # blend at most this many pixels at once (12 MB of float32 RGB temporaries)
WEIGHT_CACHE_BYTES = 64 << 20  # blend weights kept for reuse, in bytes (one 2048 px window weighs 16 MB)
WHOLE_WINDOW_SIDE = 2048  # up to this side a window's weights (cached) and resized face are made whole, as before
# Patches of this side or more (ksame's 256 px crops) shrunk to under half their side are area-averaged: bilinear
# sampling would alias the sharp features of a 256 px face pasted into a small window. The 128 px generators' crops
# keep the bilinear resize they were always pasted with.
AREA_FROM_SIDE = 256


class _WeightCache:
    """Least-recently-used float32 weights by window side, at most `limit` bytes in all."""

    def __init__(self, limit: int):
        self.limit = limit
        self.nbytes = 0
        self._items: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, side: int) -> np.ndarray:
        with self._lock:
            if side in self._items:
                self._items.move_to_end(side)
                return self._items[side]
        weight = _square_weight(side)
        if weight.nbytes <= self.limit:
            with self._lock:
                if side not in self._items:
                    self._items[side] = weight
                    self.nbytes += weight.nbytes
                while self.nbytes > self.limit:
                    _, old = self._items.popitem(last=False)
                    self.nbytes -= old.nbytes
        return weight

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0


def _smoothstep_of_radius(dist: np.ndarray) -> np.ndarray:
    full = 1.0 / EXPAND  # the face box reaches this radius
    weight = np.clip((1.0 - dist) / (1.0 - full), 0.0, 1.0)
    return weight * weight * (3 - 2 * weight)  # smoothstep: no visible seam


def _coords(side: int) -> np.ndarray:
    return np.abs((np.arange(side, dtype=np.float32) + 0.5) / side * 2 - 1)


def _square_weight(side: int) -> np.ndarray:
    coords = _coords(side)
    return _smoothstep_of_radius(np.maximum(coords[None, :], coords[:, None]))[:, :, None]  # square "radius"


def _profile(side: int) -> np.ndarray:
    """[side] float32: the weight along one axis; the weight at (y, x) is min(profile[y], profile[x]) (to 1 ulp)."""
    return _smoothstep_of_radius(_coords(side))


WEIGHTS = _WeightCache(WEIGHT_CACHE_BYTES)


def blend_weight(side: int) -> np.ndarray:
    """[side, side, 1] float32 weights: 1 where the face box is, fading to 0 at the border of the window.

    Cached, the cache bounded in bytes (WEIGHT_CACHE_BYTES); paste uses it for windows up to WHOLE_WINDOW_SIDE.
    """
    return WEIGHTS.get(side)


def _weight_part(side: int, rows: slice, cols: slice) -> np.ndarray:
    """The weights of rows x cols of a side x side window, without making the whole window above WHOLE_WINDOW_SIDE."""
    if side <= WHOLE_WINDOW_SIDE:
        return blend_weight(side)[rows, cols]
    profile = _profile(side)
    return np.minimum(profile[rows][:, None], profile[cols][None, :])[:, :, None]


def _patch_part(patch: np.ndarray, side: int, top: int, left: int, height: int, width: int) -> np.ndarray:
    """Rows top.. and columns left.. of `patch` (square) resized to side x side (bilinear)."""
    if patch.shape[0] == side:
        return patch[top : top + height, left : left + width]
    # Only the requested part of the resized patch, with cv2.resize's pixel-centre mapping: a window far larger
    # than the frame never becomes a side x side array.
    k = patch.shape[0] / side
    matrix = np.array([[k, 0, (left + 0.5) * k - 0.5], [0, k, (top + 0.5) * k - 0.5]], np.float64)
    return cv2.warpAffine(patch, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def paste(frame: np.ndarray, patch: np.ndarray, window: np.ndarray) -> None:
    """Blend `patch` (uint8, square: window-sized, or any size and resized to the window) into `frame` in place,
    over the in-frame part of `window` only."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in window)
    side = x2 - x1
    fx1, fy1, fx2, fy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if fx1 >= fx2 or fy1 >= fy2:
        return
    band = max(1, BAND_PIXELS // (fx2 - fx1))
    cols = slice(fx1 - x1, fx2 - x1)
    if patch.shape[0] != side and side <= WHOLE_WINDOW_SIDE:  # resized whole, as always (cheap at this size)
        area = patch.shape[0] >= AREA_FROM_SIDE and 2 * side < patch.shape[0]
        patch = cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)
    for by1 in range(fy1, fy2, band):
        by2 = min(by1 + band, fy2)
        weight = _weight_part(side, slice(by1 - y1, by2 - y1), cols)
        target = frame[by1:by2, fx1:fx2]
        region = target.astype(np.float32)
        # region + (src - region) * weight + 0.5, clipped, in place on one float32 buffer (no temporaries)
        blended = _patch_part(patch, side, by1 - y1, fx1 - x1, by2 - by1, fx2 - fx1).astype(np.float32)
        blended -= region
        blended *= weight
        blended += region
        blended += 0.5
        np.clip(blended, 0, 255, out=blended)
        target[...] = blended  # float32 -> uint8 truncates, exactly like astype(np.uint8)


def compose(frame: np.ndarray, faces: np.ndarray, windows: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """New frame with each generated face [N,S,S,3] uint8 blended into its window; the input is not modified.

    A face that is missing (fewer crops than windows) or flagged invalid is masked instead: fail closed.
    """
    out = frame.copy()
    mask = np.empty((2, 2, 3), dtype=np.uint8)
    mask[:] = MASK_RGB
    for i, window in enumerate(windows):
        usable = i < len(faces) and (valid is None or valid[i])
        paste(out, faces[i] if usable else mask, window)  # resized to the window inside paste
    return out


def finite_faces(generated: np.ndarray) -> np.ndarray:
    """Per-face flag: True where the generator's output is usable (all finite)."""
    return np.isfinite(generated).all(axis=tuple(range(1, generated.ndim)))
