"""Dense landmarks and the piecewise-affine (Delaunay) warp that aligns ksame's donors and pastes its averages.

A 5-point similarity transform leaves the eyelids, nostrils, lips and jaw of different donors at different places,
so their average shows each feature twice (ghosted doubles). Warping every donor triangle by triangle onto one mean
shape of dlib's 68 landmarks puts each feature of every donor at the same pixel: the average stays sharp.
The same warp, run the other way, gives the pasted face a target's geometry.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

N_POINTS = 68
# dlib's 68-point scheme: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67
JAW, BROWS, LEFT_EYE, RIGHT_EYE = slice(0, 17), slice(17, 27), slice(36, 42), slice(42, 48)
NOSE_TIP, MOUTH_LEFT, MOUTH_RIGHT = 30, 48, 54
LANDMARK_SIDE = 256  # crops are resized to this for the shape predictor: its regression trees were fit on large faces


def five_from_68(points: np.ndarray) -> np.ndarray:
    """CenterFace's five points (eye centres, nose tip, mouth corners) from dlib's 68, for comparisons."""
    p = np.asarray(points, np.float64)
    return np.stack([p[LEFT_EYE].mean(0), p[RIGHT_EYE].mean(0), p[NOSE_TIP], p[MOUTH_LEFT], p[MOUTH_RIGHT]])


@lru_cache(maxsize=1)
def _predictor():
    import dlib
    import face_recognition_models

    return dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())


def dense_landmarks(image: np.ndarray, rect: np.ndarray) -> np.ndarray:
    """dlib's 68 landmarks [68,2] (image pixels) of the face in `rect` (x1, y1, x2, y2) of an RGB or grey image.

    dlib's shape predictor needs the face rectangle its detector would give; ksame derives it from the five
    CenterFace landmarks (Bank.rect), so no second detector runs. The image is resized so the rectangle is about
    LANDMARK_SIDE / 2 wide: the predictor is most precise on faces of that size.
    """
    import dlib

    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    rect = np.asarray(rect, np.float64)
    k = (LANDMARK_SIDE / 2) / max(float(rect[2] - rect[0]), 1.0)
    if abs(k - 1) > 0.05:
        grey = cv2.resize(grey, None, fx=k, fy=k, interpolation=cv2.INTER_LINEAR if k > 1 else cv2.INTER_AREA)
    else:
        k = 1.0
    r = np.round(rect * k).astype(int)
    shape = _predictor()(np.ascontiguousarray(grey), dlib.rectangle(int(r[0]), int(r[1]), int(r[2]), int(r[3])))
    return np.array([[p.x, p.y] for p in shape.parts()], np.float64) / k


def frame_points(side: float) -> np.ndarray:
    """16 anchor points around a side x side frame (its border and a ring half a side outside it), added to the
    landmarks so the triangulation covers the whole crop and the warp fades to the similarity transform there."""
    out = []
    for lo, hi in ((0.0, side - 1.0), (-side / 2, 1.5 * side)):
        mid = (lo + hi) / 2
        out += [(lo, lo), (mid, lo), (hi, lo), (hi, mid), (hi, hi), (mid, hi), (lo, hi), (lo, mid)]
    return np.array(out, np.float64)


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles [T,3] (indices into points)."""
    from scipy.spatial import Delaunay

    return Delaunay(np.asarray(points, np.float64)).simplices.astype(np.int32)


def piecewise_map(src: np.ndarray, dst: np.ndarray, triangles: np.ndarray, shape: tuple[int, int],
                  fallback: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps (x, y) so that remap(source image) puts each triangle of `src` points onto the same triangle
    of `dst` points, in an output of `shape` (h, w). Pixels in no triangle follow `fallback` (a 2x3 dst->src affine
    transform) or, without one, map outside the source (remap's border value)."""
    h, w = shape
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    index = np.full((h, w), -1, np.int32)
    affines = np.empty((len(triangles) + 1, 2, 3), np.float64)
    affines[-1] = fallback if fallback is not None else [[0, 0, -1e4], [0, 0, -1e4]]
    for t, tri in enumerate(triangles):
        d = dst[tri]
        affines[t] = cv2.getAffineTransform(d.astype(np.float32), src[tri].astype(np.float32))
        cv2.fillConvexPoly(index, np.round(d * 16).astype(np.int32), int(t), lineType=cv2.LINE_8, shift=4)
    m = affines[index]  # index -1 -> the fallback row
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    map_x = m[..., 0, 0] * xs + m[..., 0, 1] * ys + m[..., 0, 2]
    map_y = m[..., 1, 0] * xs + m[..., 1, 1] * ys + m[..., 1, 2]
    return map_x.astype(np.float32), map_y.astype(np.float32)


def warp(image: np.ndarray, src: np.ndarray, dst: np.ndarray, triangles: np.ndarray, shape: tuple[int, int],
         fallback: np.ndarray | None = None, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """`image` (whose landmarks are `src`) warped piecewise-affinely so they land on `dst`, in an output of `shape`."""
    map_x, map_y = piecewise_map(src, dst, triangles, shape, fallback)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=border)


def face_hull_mask(points: np.ndarray, side: int, brow_lift: float = 0.12, shrink: float = 0.94,
                   feather: float = 0.05) -> np.ndarray:
    """Float [side,side] mask of the inner face from its 68 landmarks: the jaw line and the brows lifted by
    `brow_lift` of the face height (the forehead just above them), shrunk towards the centre by `shrink` so the
    target's own outline stays, feathered by `feather` of the face width."""
    p = np.asarray(points, np.float64)
    height = float(p[8, 1] - p[BROWS, 1].min())
    brows = p[BROWS][::-1] - [0.0, brow_lift * height]
    outline = np.concatenate([p[JAW], brows])
    centre = outline.mean(0)
    outline = centre + shrink * (outline - centre)
    canvas = np.zeros((side * 4, side * 4), np.uint8)  # 4x supersampled, then area-averaged: smooth edge
    cv2.fillConvexPoly(canvas, np.round(cv2.convexHull(outline.astype(np.float32))[:, 0] * 4 * 16).astype(np.int32),
                       255, lineType=cv2.LINE_AA, shift=4)
    mask = cv2.resize(canvas, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    width = float(p[16, 0] - p[0, 0])
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, feather * width))
    return np.clip((mask - 0.5) * 2.2 + 0.5, 0, 1)  # flat 1 inside, feathered at the edge only
