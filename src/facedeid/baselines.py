"""Blur and mosaic baselines: the same boxes anonymised the way `deface` (PyPI, v1.5.0) does it.

deface's defaults (deface/deface.py `anonymize_frame` / `draw_det`): each box is grown by `--mask-scale 1.3`
(`scale_bb`: every side moves out by 0.3 x the box's width or height), rounded and clipped to the frame; then

* blur (`--replacewith blur`, the default, `ellipse=True`): a box filter (`cv2.blur`) with a kernel of half the
  box's width and height ("blur factor" 2), applied to the box and copied back inside the box's inscribed ellipse;
* mosaic (`--replacewith mosaic --mosaicsize 20`): 20x20-pixel cells, each filled with its top-left pixel.

`blur` and `mosaic` are the baselines of every table. Two other methods with names of their own sweep the strength
in the privacy check (facedeid.train.privacy), over the box itself (not grown):
* gaussian_blur: a Gaussian with sigma = a fraction of the box's longest side;
* cell_mosaic: the box averaged into n x n cells (area resize down, nearest up).

The functions return new frames; the input is not modified. Boxes are pixel x1, y1, x2, y2 (float).
"""

from __future__ import annotations

import cv2
import numpy as np

MASK_SCALE = 1.3  # deface --mask-scale default
BLUR_FACTOR = 2  # deface: kernel = box size // 2
MOSAIC_SIZE = 20  # deface --mosaicsize default
METHODS = ("blur", "mosaic")


def deface_boxes(boxes: np.ndarray, width: int, height: int, mask_scale: float = MASK_SCALE) -> np.ndarray:
    """deface's box handling: int() the detection, grow by mask_scale (scale_bb), round, clip to the frame."""
    out = []
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        x1, y1, x2, y2 = box.astype(int)
        s = mask_scale - 1.0
        h, w = y2 - y1, x2 - x1
        x1, y1, x2, y2 = np.round([x1 - w * s, y1 - h * s, x2 + w * s, y2 + h * s]).astype(int)
        y1, y2 = max(0, y1), min(height - 1, y2)
        x1, x2 = max(0, x1), min(width - 1, x2)
        out.append((x1, y1, x2, y2))
    return np.asarray(out, dtype=np.int64).reshape(-1, 4)


def _ellipse_mask(h: int, w: int) -> np.ndarray:
    """The pixels skimage.draw.ellipse(h//2, w//2, h//2, w//2) sets, inside an h x w box (as deface draws it)."""
    import skimage.draw

    mask = np.zeros((h, w), dtype=bool)
    ey, ex = skimage.draw.ellipse(h // 2, w // 2, h // 2, w // 2, shape=(h, w))
    mask[ey, ex] = True
    return mask


def blur(frame: np.ndarray, boxes: np.ndarray, mask_scale: float = MASK_SCALE, ellipse: bool = True) -> np.ndarray:
    out = frame.copy()
    height, width = frame.shape[:2]
    for x1, y1, x2, y2 in deface_boxes(boxes, width, height, mask_scale):
        if x2 <= x1 or y2 <= y1:
            continue
        roi = out[y1:y2, x1:x2]
        kernel = (max(1, abs(x2 - x1) // BLUR_FACTOR), max(1, abs(y2 - y1) // BLUR_FACTOR))
        blurred = cv2.blur(roi, kernel)
        if ellipse:
            mask = _ellipse_mask(y2 - y1, x2 - x1)
            roi[mask] = blurred[mask]
        else:
            roi[:] = blurred
    return out


def mosaic(frame: np.ndarray, boxes: np.ndarray, mask_scale: float = MASK_SCALE, size: int = MOSAIC_SIZE) -> np.ndarray:
    out = frame.copy()
    height, width = frame.shape[:2]
    for x1, y1, x2, y2 in deface_boxes(boxes, width, height, mask_scale):
        for y in range(y1, y2, size):
            for x in range(x1, x2, size):
                # deface: cv2.rectangle(pt1=(x, y), pt2=(min(x2, x+size-1), min(y2, y+size-1)), filled)
                out[y : min(y2, y + size - 1) + 1, x : min(x2, x + size - 1) + 1] = out[y, x]
    return out


def _replace_boxes(frame: np.ndarray, boxes: np.ndarray, replace) -> np.ndarray:
    """Copy of `frame` with each box's pixels (floor/ceil to whole pixels, clipped) replaced by `replace(region)`."""
    out = frame.copy()
    h, w = frame.shape[:2]
    for box in np.asarray(boxes, np.float64).reshape(-1, 4):
        x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
        x2, y2 = min(int(np.ceil(box[2])), w), min(int(np.ceil(box[3])), h)
        if x2 > x1 and y2 > y1:
            out[y1:y2, x1:x2] = replace(frame[y1:y2, x1:x2])
    return out


def gaussian_blur(frame: np.ndarray, boxes: np.ndarray, sigma_frac: float) -> np.ndarray:
    """Each box blurred with a Gaussian of sigma = sigma_frac x the box's longest side (at least 0.5 px)."""
    def replace(region):
        sigma = max(0.5, sigma_frac * max(region.shape[:2]))
        return cv2.GaussianBlur(region, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)

    return _replace_boxes(frame, boxes, replace)


def cell_mosaic(frame: np.ndarray, boxes: np.ndarray, cells: int) -> np.ndarray:
    """Each box averaged into cells x cells blocks (whatever the box's size)."""
    def replace(region):
        small = cv2.resize(region, (cells, cells), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, region.shape[1::-1], interpolation=cv2.INTER_NEAREST)

    return _replace_boxes(frame, boxes, replace)


def anonymize(method: str, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    if method == "blur":
        return blur(frame, boxes)
    if method == "mosaic":
        return mosaic(frame, boxes)
    raise ValueError(f"unknown baseline '{method}'; choose from {', '.join(METHODS)}")
