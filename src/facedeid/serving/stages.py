"""What each Python-backend model in model_repository/ computes, as plain functions over numpy arrays.

The model.py files only move tensors in and out of Triton and call these. Every stage validates its inputs and
raises ValueError with a message meant for the client; the adapter turns that into a per-request error.
"""

from __future__ import annotations

import numpy as np

from .. import compose as composer
from .. import crops, detection

MAX_FACES = 32  # generator batch limit (TensorRT profile max); faces beyond it in one frame are masked
MAX_FRAME_PIXELS = 8192 * 8192  # refuse larger frames instead of exhausting server memory
MAX_DETECTOR_SIDE = 2048  # face_detector IMAGE sides (detect_prep sends <= 640); bounds a direct request's cost
# Limits on what one request may cost (docs/reliability.md "Limits", measured by eval/limits_benchmark.py):
MAX_FRAME_SIDE = 8192  # a side, not only the pixel count: a 1x10000 frame is refused (8K video is 7680x4320)
MAX_BOXES_PER_REQUEST = crops.MAX_BOXES_PER_FRAME  # boxes in one frame, given or sent to compose
# Compose's work grows with the pixels the boxes' windows cover inside the frame (about 30 ms per megapixel on one
# core); their sum may reach this many times the frame's own pixels. Real frames stay near 1: at most 1.11 on the 26
# shared scene photos (CenterFace boxes; a portrait 1.0). 8 still allows 8 full-frame boxes.
MAX_PAINT_FRAMES = 8


def frame_limit(params: dict[str, str]) -> int:
    """The frame size limit of a stage: config parameter `max_frame_pixels` if set, else MAX_FRAME_PIXELS."""
    value = int(params.get("max_frame_pixels", MAX_FRAME_PIXELS))
    if not 0 < value <= MAX_FRAME_PIXELS:
        raise ValueError(f"max_frame_pixels must be in 1..{MAX_FRAME_PIXELS}, got {value}")
    return value


def check_frame(frame: np.ndarray, max_pixels: int = MAX_FRAME_PIXELS) -> np.ndarray:
    crops.validate_frame(frame)
    if frame.shape[0] * frame.shape[1] > max_pixels:
        raise ValueError(
            f"frame {frame.shape[1]}x{frame.shape[0]} exceeds the limit of {max_pixels} pixels; downscale it"
        )
    if max(frame.shape[:2]) > MAX_FRAME_SIDE:
        raise ValueError(f"frame {frame.shape[1]}x{frame.shape[0]} has a side over the limit of {MAX_FRAME_SIDE} "
                         f"pixels; downscale or split it")
    return frame


def check_paint_cost(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Refuse over MAX_BOXES_PER_REQUEST boxes, or boxes whose paint windows cover, inside the frame, over
    MAX_PAINT_FRAMES times its pixels: what compose would spend on them."""
    if len(boxes) > MAX_BOXES_PER_REQUEST:
        raise ValueError(f"{len(boxes)} boxes in one frame; the limit is {MAX_BOXES_PER_REQUEST} boxes per frame")
    windows = crops.expand_boxes(boxes)
    inside_w = np.clip(windows[:, 2], 0, width) - np.clip(windows[:, 0], 0, width)
    inside_h = np.clip(windows[:, 3], 0, height) - np.clip(windows[:, 1], 0, height)
    painted = int((np.maximum(inside_w, 0) * np.maximum(inside_h, 0)).sum())
    if painted > MAX_PAINT_FRAMES * width * height:
        raise ValueError(f"the {len(boxes)} boxes' paint windows cover {painted / (width * height):.1f} times the "
                         f"{width}x{height} frame; the limit is {MAX_PAINT_FRAMES} times (send fewer or smaller "
                         f"boxes)")
    return boxes


def check_detector_image(image: np.ndarray) -> np.ndarray:
    """face_detector IMAGE: float32 [1,3,h,w], h and w multiples of 32 in 32..MAX_DETECTOR_SIDE, all finite."""
    if image.dtype != np.float32 or image.ndim != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"IMAGE must be float32 [1, 3, h, w], got {image.dtype} {list(image.shape)}")
    h, w = image.shape[2:]
    if not (32 <= h <= MAX_DETECTOR_SIDE and 32 <= w <= MAX_DETECTOR_SIDE and h % 32 == 0 and w % 32 == 0):
        raise ValueError(f"IMAGE height and width must be multiples of 32 in 32..{MAX_DETECTOR_SIDE}, got {h}x{w}")
    if not np.isfinite(image).all():
        raise ValueError("IMAGE contains NaN or infinite values")
    return image


def detector_input(frame: np.ndarray, max_side: int = detection.DEFAULT_MAX_SIDE,
                   max_pixels: int = MAX_FRAME_PIXELS) -> np.ndarray:
    """FRAME [H,W,3] uint8 -> detector IMAGE [1,3,h,w] float32."""
    return detection.preprocess(check_frame(frame, max_pixels), max_side)[0]


def crop_batch(frame: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Generator input for one frame: [M,3,S,S] float32, M = min(N, MAX_FACES) but at least 1.

    Triton rejects an empty batch at the generator, so a frame without faces sends one blank crop that compose
    ignores (compose only uses as many crops as there are boxes).
    """
    if len(boxes) == 0:
        return np.zeros((1, 3, size, size), np.float32)
    faces, _ = crops.extract_crops(frame, boxes[:MAX_FACES], size)
    return crops.to_tensor(faces)


def prep_detected(frame: np.ndarray, heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, size: int,
                  threshold: float = detection.DEFAULT_THRESHOLD,
                  max_side: int = detection.DEFAULT_MAX_SIDE,
                  max_pixels: int = MAX_FRAME_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """Decode CenterFace outputs for FRAME -> (CROPS [M,3,S,S], BOXES [N,4] pixels)."""
    check_frame(frame, max_pixels)
    for name, tensor, channels in (("HEATMAP", heatmap, 1), ("SCALE", scale, 2), ("OFFSET", offset, 2)):
        if tensor.ndim != 4 or tensor.shape[:2] != (1, channels):
            raise ValueError(f"{name} must have shape [1, {channels}, h, w], got {list(tensor.shape)}")
    if not heatmap.shape[2:] == scale.shape[2:] == offset.shape[2:]:
        raise ValueError(f"HEATMAP, SCALE and OFFSET must have the same h, w, got {list(heatmap.shape)}, "
                         f"{list(scale.shape)}, {list(offset.shape)}")
    letterbox = detection.plan_input(frame.shape[0], frame.shape[1], max_side)
    boxes, _ = detection.decode(heatmap, scale, offset, letterbox, threshold)
    boxes = crops.clean_boxes(boxes, frame.shape[1], frame.shape[0])
    return crop_batch(frame, boxes, size), boxes


def prep_given(frame: np.ndarray, boxes: np.ndarray, size: int,
               max_pixels: int = MAX_FRAME_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """Caller-supplied BOXES [N,4] pixels -> (CROPS [M,3,S,S], BOXES [N,4] clipped to the frame).

    A box that cannot be anonymised as given is refused, never dropped (crops.check_boxes), and so is a request
    over the cost limits (check_paint_cost). N = 0 is a frame without faces.
    """
    check_frame(frame, max_pixels)
    boxes = crops.check_boxes(boxes, frame.shape[1], frame.shape[0], MAX_BOXES_PER_REQUEST)
    check_paint_cost(boxes, frame.shape[1], frame.shape[0])
    return crop_batch(frame, boxes, size), boxes


def compose_frame(frame: np.ndarray, generated: np.ndarray, boxes: np.ndarray,
                  max_pixels: int = MAX_FRAME_PIXELS) -> np.ndarray:
    """FRAME + GENERATED [M,3,S,S] + BOXES [N,4] -> DEID_FRAME. Non-finite or missing crops are masked."""
    check_frame(frame, max_pixels)
    if generated.ndim != 4 or generated.shape[1] != 3:
        raise ValueError(f"GENERATED must have shape [M, 3, S, S], got {list(generated.shape)}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"BOXES must have shape [N, 4], got {list(boxes.shape)}")
    # The prep stages send boxes clipped to the frame; anything else (NaN, a box far outside the frame) would make
    # compose allocate a window of unbounded size, so it is refused.
    h, w = frame.shape[:2]
    if not np.isfinite(boxes).all():
        raise ValueError("BOXES contain NaN or infinite values")
    if len(boxes) and not ((boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all() and (boxes[:, 2] <= w).all()
                           and (boxes[:, 3] <= h).all() and (boxes[:, 2] > boxes[:, 0]).all()
                           and (boxes[:, 3] > boxes[:, 1]).all()):
        raise ValueError(f"BOXES must be x1 < x2, y1 < y2 inside the {w}x{h} frame")
    if len(boxes) == 0:
        return frame
    if len(generated) == 0:  # the prep stages always send at least one crop per frame
        raise ValueError(f"GENERATED has 0 crops for {len(boxes)} BOXES; compose needs the generator's crops "
                         f"for the boxes (a face without its crop is masked, but none at all is a broken request)")
    check_paint_cost(boxes, w, h)
    generated = generated[: len(boxes)]
    valid = composer.finite_faces(generated)
    faces = crops.from_tensor(np.nan_to_num(generated))
    return composer.compose(frame, faces, crops.expand_boxes(boxes), valid)
