"""CenterFace's output maps -> faces in frame pixels: cell decoding, NMS across scales and tiles, each face's roll."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .limits import CONTAINED, DEFAULT_THRESHOLD, MIN_GENERATE_SIDE, NMS_IOU, WHOLE_FACE_SCORE
from .plan import DetectionPlan, unrotate_points


def roll_of(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks [N,10] (eyes, nose, mouth corners) -> quarter turns [N] (0..3) that stand each face upright when
    its crop is turned that many times counter-clockwise (np.rot90), from the direction mouth -> eyes."""
    marks = np.asarray(landmarks, np.float32).reshape(-1, 5, 2)
    up = marks[:, :2].mean(1) - marks[:, 3:].mean(1)  # eyes minus mouth: points to the top of the head
    # Upright: up = (0, -1). Turning the crop k times counter-clockwise maps a direction (x, y) to (y, -x) per turn.
    angle = np.degrees(np.arctan2(up[:, 0], -up[:, 1]))  # 0 upright, 90: head to the right, -90: to the left
    turns = np.round(angle / 90).astype(np.int64) % 4
    return np.where(np.hypot(*up.T) > 0, turns, 0)


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


def merge(boxes: np.ndarray, scores: np.ndarray, cut: np.ndarray, marks: np.ndarray | None = None) -> np.ndarray:
    """Indices of the boxes to keep, best first: greedy NMS (IoU > NMS_IOU) that also drops a box lying mostly
    inside a kept one (suppressing a box inside an anonymised box leaks nothing). Boxes cut by a tile edge are
    considered after every whole box, so a whole box of the same face always wins. With `marks` (five points per
    box), boxes of parts of one face give way to the whole face's box: a box that NMS would drop replaces the kept
    boxes it overlaps when each is a box of part of its face (_part_of; on a close-up the full-resolution pass can
    score part of the face above the downscaled pass's whole face, and a part box replaces only part of the face);
    and a kept box whose nose lies in the middle of a larger kept box's face is dropped too (same_face_parts)."""
    order = np.lexsort((-scores, cut))
    faces = None if marks is None else FacePoints(boxes, marks)
    kept: list[int] = []
    for i in order:
        if kept:
            iou, inside = _iou_and_containment(boxes[i], boxes[kept])
            hits = (iou > NMS_IOU) | (inside > CONTAINED)
            if hits.any():
                # most suppressed boxes are near-duplicates or unsure: the cheap tests first
                if faces is None or cut[i] or scores[i] < WHOLE_FACE_SCORE:
                    continue
                hit = np.asarray(kept)[hits]
                if (faces.area[hit] > CONTAINED * faces.area[i]).any() or not all(
                        _part_of(int(j), i, boxes, faces) for j in hit):
                    continue
                replaced = set(hit.tolist())
                kept = [k for k in kept if k not in replaced]
        kept.append(int(i))
    kept_arr = np.asarray(kept, np.int64)
    if faces is not None and len(kept_arr) > 1:
        kept_arr = kept_arr[~same_face_parts(boxes[kept_arr], marks[kept_arr])]
    return kept_arr[np.argsort(-scores[kept_arr], kind="stable")]


def _part_of(j: int, i: int, boxes: np.ndarray, faces: FacePoints) -> bool:
    """Box j is a box of part of box i's face (merge has checked that j covers at most CONTAINED of i's area and
    that i scores WHOLE_FACE_SCORE or more, a face the product generates): j lies mostly inside i, shares its face,
    and leaves some of i's eyes, nose and mouth outside it (a tighter box that holds the whole face is ordinary NMS:
    the better score wins)."""
    if _iou_and_containment(boxes[j], boxes[i][None])[1][0] < CONTAINED:
        return False
    x1, y1, x2, y2 = boxes[j]
    points = faces.points[i]
    cut = ((points[:, 0] < x1) | (points[:, 0] > x2) | (points[:, 1] < y1) | (points[:, 1] > y2)).any()
    return bool(cut and faces.same_face(i, j))


class FacePoints:
    """Boxes with their five points (eyes, nose, mouth corners): which two are boxes of one face."""

    def __init__(self, boxes: np.ndarray, marks: np.ndarray):
        self.points = np.asarray(marks, np.float32).reshape(-1, 5, 2)
        self.area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        self._quads: dict[int, np.ndarray] = {}

    def quad(self, i: int) -> np.ndarray:
        if i not in self._quads:
            self._quads[i] = cv2.convexHull(self.points[i, [0, 1, 4, 3]])
        return self._quads[i]

    def nose_in(self, j: int, i: int) -> bool:
        """Box j's nose lies inside box i's eyes-and-mouth quadrilateral."""
        return cv2.pointPolygonTest(self.quad(i), (float(self.points[j, 2, 0]), float(self.points[j, 2, 1])), False) > 0

    def same_face(self, i: int, j: int) -> bool:
        """The middle of a seen face shows no other face's nose: either box's nose inside the other's face."""
        return self.nose_in(j, i) or self.nose_in(i, j)


def same_face_parts(boxes: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """[N] bool: boxes smaller than another box (not itself such a part) where one's nose point (marks [N,10]: eyes,
    nose, mouth corners) lies inside the other's eyes-and-mouth quadrilateral. The middle of a seen face shows no
    other face's nose, so such a box is a second detection of part of that face (CenterFace boxes some close-ups two
    or three times, each box on part of the face, overlapping too little for NMS: IoU 0.16, 41 % contained)."""
    faces = FacePoints(boxes, marks)
    areas = faces.area
    # only boxes that overlap can be parts of one face: a crowd's hundreds of boxes stay a vectorised test
    overlap = ((np.minimum(boxes[:, None, 2], boxes[None, :, 2]) > np.maximum(boxes[:, None, 0], boxes[None, :, 0]))
               & (np.minimum(boxes[:, None, 3], boxes[None, :, 3]) > np.maximum(boxes[:, None, 1], boxes[None, :, 1])))
    part = np.zeros(len(boxes), bool)
    for i in np.argsort(-areas, kind="stable"):  # largest first: a part of a part is a part of the whole
        if part[i]:
            continue
        for j in np.flatnonzero((areas < areas[i]) & ~part & overlap[i]):
            part[j] = faces.same_face(i, j)
    return part


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
    keep = merge(boxes, scores, cut, marks) if len(boxes) else np.zeros(0, np.int64)
    marks = marks[keep].astype(np.float32)
    # Without rotations every face is taken as upright (as before): roll from landmarks only when asked for.
    roll = roll_of(marks) if p.roll_side else np.zeros(len(keep), np.int64)
    return Detections(boxes[keep].astype(np.float32), scores[keep].astype(np.float32), marks, roll)
