"""Put generated faces back into the frame with a feathered blend; mask what could not be generated.

Only pixels inside each crop window can change. The blend weight is 1 over the central part of the window (which
contains the whole face box, since the window is EXPAND times the box) and falls smoothly to 0 at the window edge,
so no hard rectangle is visible.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .crops import EXPAND

MASK_RGB = (128, 128, 128)  # fail-closed fill for faces that could not be generated


@lru_cache(maxsize=64)
def blend_weight(side: int) -> np.ndarray:
    """[side, side, 1] float32 weights: 1 where the face box is, fading to 0 at the border of the window."""
    coords = (np.arange(side, dtype=np.float32) + 0.5) / side * 2 - 1
    dist = np.maximum(np.abs(coords)[None, :], np.abs(coords)[:, None])  # square "radius"
    full = 1.0 / EXPAND  # the face box reaches this radius
    weight = np.clip((1.0 - dist) / (1.0 - full), 0.0, 1.0)
    weight = weight * weight * (3 - 2 * weight)  # smoothstep: no visible seam
    return weight[:, :, None]


def paste(frame: np.ndarray, patch: np.ndarray, window: np.ndarray) -> None:
    """Blend `patch` (window-sized, uint8) into `frame` in place over the in-frame part of `window`."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in window)
    fx1, fy1, fx2, fy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if fx1 >= fx2 or fy1 >= fy2:
        return
    weight = blend_weight(x2 - x1)[fy1 - y1 : fy2 - y1, fx1 - x1 : fx2 - x1]
    target = frame[fy1:fy2, fx1:fx2]
    region = target.astype(np.float32)
    # region + (src - region) * weight + 0.5, clipped, in place on one float32 buffer (no temporaries)
    blended = patch[fy1 - y1 : fy2 - y1, fx1 - x1 : fx2 - x1].astype(np.float32)
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
    for i, window in enumerate(windows):
        side = int(window[2] - window[0])
        if i < len(faces) and (valid is None or valid[i]):
            patch = cv2.resize(faces[i], (side, side), interpolation=cv2.INTER_LINEAR)
        else:
            patch = np.empty((side, side, 3), dtype=np.uint8)
            patch[:] = MASK_RGB
        paste(out, patch, window)
    return out


def finite_faces(generated: np.ndarray) -> np.ndarray:
    """Per-face flag: True where the generator's output is usable (all finite)."""
    return np.isfinite(generated.reshape(len(generated), -1)).all(axis=1)
