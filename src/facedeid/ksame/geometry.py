"""ksame's geometry: the 5-point similarity, pose, where the average is placed and the masks it is pasted through."""

from __future__ import annotations

import cv2
import numpy as np

from . import colour
from .warp import face_hull_mask


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity transform (Umeyama) mapping points src [N,2] onto dst [N,2]."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    var = (s ** 2).sum() / len(src)
    scale = float(np.trace(np.diag(sig) @ sign) / var) if var > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.asarray(pts, np.float64) @ m[:, :2].T + m[:, 2]


def yaw_of(landmarks: np.ndarray) -> float:
    """Pose proxy: nose offset from the eye midpoint along the eye axis, in inter-ocular distances (0 = frontal)."""
    le, re, nose = landmarks[0], landmarks[1], landmarks[2]
    axis = re - le
    iod = float(np.linalg.norm(axis))
    if iod < 1e-6:
        return 0.0
    return float(np.dot(nose - (le + re) / 2, axis / iod) / iod)


def skin_mask(shape: np.ndarray, side: int) -> np.ndarray:
    """Cheeks, forehead and chin: the inner face less the brows, eyes, nose and mouth (grown, feathered), where
    `detail` lays the target's fine texture; the features themselves stay the average's."""
    p = np.asarray(shape, np.float64)
    width = float(p[16, 0] - p[0, 0])
    holes = np.zeros((side, side), np.uint8)
    for part, grow in ((slice(17, 22), 0.06), (slice(22, 27), 0.06), (slice(36, 42), 0.07), (slice(42, 48), 0.07),
                       (slice(27, 36), 0.05), (slice(48, 60), 0.06)):
        hull = cv2.convexHull(p[part].astype(np.float32))[:, 0]
        cv2.fillConvexPoly(holes, np.round(hull).astype(np.int32), 255)
        cv2.polylines(holes, [np.round(hull).astype(np.int32)], True, 255, max(1, round(2 * grow * width)))
    holes = cv2.GaussianBlur(holes.astype(np.float32) / 255, (0, 0), max(1.0, 0.03 * width))
    return face_hull_mask(shape, side) * np.clip(1 - 1.5 * holes, 0, 1)


def head_mask(shape: np.ndarray, side: int) -> np.ndarray:
    """`--cover head`: the face, forehead, hairline, hair and ears (an ellipse from the chin to well above the brows,
    1.4x the jaw's width), feathered; the replacement then carries no hair or ear of the target."""
    p = np.asarray(shape, np.float64)
    width = float(p[16, 0] - p[0, 0])
    chin, brow = float(p[8, 1]), float(p[17:27, 1].min())
    top = brow - 0.75 * (chin - brow)
    centre = (float(p[27:31, 0].mean()), (top + chin) / 2)
    axes = (0.7 * width, (chin - top) / 2)
    canvas = np.zeros((side * 4, side * 4), np.uint8)
    cv2.ellipse(canvas, (round(centre[0] * 4), round(centre[1] * 4)), (round(axes[0] * 4), round(axes[1] * 4)),
                0, 0, 360, 255, -1)
    mask = cv2.resize(canvas, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.06 * width))
    return np.clip((mask - 0.5) * 2.2 + 0.5, 0, 1)



def ring_mask(shape: np.ndarray, side: int) -> np.ndarray:
    """The skin band (hard 0/1) inside the jaw line and across the forehead, straddling the replaced face's edge:
    where the target's colour is measured (inside the face outline, so no background or hair enters it)."""
    outer = face_hull_mask(shape, side, brow_lift=0.3, shrink=1.0, feather=0.0) > 0.5
    inner = face_hull_mask(shape, side, brow_lift=0.0, shrink=0.82, feather=0.0) > 0.5
    return (outer & ~inner).astype(np.float32)


def dense_rect(to_crop: np.ndarray, rect: np.ndarray) -> np.ndarray:
    """The bank's face rectangle placed on a crop by the bank -> crop similarity: a square of the same area."""
    corners = apply(to_crop, [[rect[0], rect[1]], [rect[2], rect[1]], [rect[2], rect[3]], [rect[0], rect[3]]])
    centre = corners.mean(0)
    half = float(np.sqrt(abs(np.linalg.det(to_crop[:, :2])))) * (rect[2] - rect[0]) / 2
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])


def average_skin(shape: np.ndarray, side: int) -> np.ndarray:
    """Where every average shows skin (hard 0/1): inside its jaw line and up the forehead, a little in from the edge
    where its donors' outlines blend with their hair and background."""
    return (face_hull_mask(shape, side, brow_lift=0.25, shrink=0.96, feather=0.0) > 0.5).astype(np.float32)


# Above its brows, an average's pixel is taken for hair (a fringe, temple hair its donors' outlines left inside the
# region average_skin gives) when it is this much darker (L*) than its cheeks, or this far from their colour (Lab,
# and not lighter). Chosen by looking at every average of the bank (docs/crisp-faces.md, "Forehead bands"): lighter
# foreheads are skin (lit, bald), and lower values (6 L*, 10 Lab, lighter pixels included) took them.
HAIR_DARKER = 8.0
HAIR_COLOUR = 12.0


def own_skin(face: np.ndarray, shape: np.ndarray, side: int) -> np.ndarray:
    """Hard 0/1 [side,side]: `average_skin` less the hair of this average (`face`, RGB uint8 on `shape`) that
    reaches into it from above the brows, so extending its skin does not carry a fringe or dark temples."""
    p = np.asarray(shape, np.float64)
    base = average_skin(shape, side) > 0.5
    lab = colour.lab(face)
    ys = np.arange(side, dtype=np.float64)[:, None]
    cheeks = base & (ys > p[36:48, 1].max()) & (ys < p[48:60, 1].min())
    reference = np.median(lab[cheeks], axis=0)
    brow_line = np.interp(np.arange(side), p[17:27, 0], p[17:27, 1]) - 0.02 * (p[8, 1] - p[17:27, 1].min())
    above = ys < brow_line[None, :]
    darker = reference[0] - lab[..., 0]
    hair = above & base & ((darker > HAIR_DARKER) | ((np.linalg.norm(lab - reference, axis=2) > HAIR_COLOUR)
                                                     & (darker > 0)))
    # only hair that reaches in from the region's edge: a dark patch inside the forehead is the average's own
    _, labels = cv2.connectedComponents((hair | ~base).astype(np.uint8), connectivity=8)
    hair &= np.isin(labels, np.unique(labels[~base]))
    hair = cv2.dilate(hair.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return (base & ~(hair & above)).astype(np.float32)


def brows_and_eyes(shape: np.ndarray, side: int) -> np.ndarray:
    """Float [side,side] mask over the brows (and the forehead just above them) and the eyes, grown by a quarter from
    their centre and feathered: what the target's mask must cover whatever its outline does."""
    p = np.asarray(shape, np.float64)
    height = float(p[8, 1] - p[17:27, 1].min())
    points = np.concatenate([p[17:27] - [0.0, 0.12 * height], p[17:27], p[36:48]])
    centre = points.mean(0)
    hull = cv2.convexHull((centre + 1.25 * (points - centre)).astype(np.float32))[:, 0]
    canvas = np.zeros((side * 4, side * 4), np.uint8)  # 4x supersampled, as face_hull_mask
    cv2.fillConvexPoly(canvas, np.round(hull * 4 * 16).astype(np.int32), 255, lineType=cv2.LINE_AA, shift=4)
    mask = cv2.resize(canvas, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.05 * float(p[16, 0] - p[0, 0])))
    return np.clip((mask - 0.5) * 2.2 + 0.5, 0, 1)


def extend(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """`image` [H,W,C] with the pixels outside `known` (0/1) filled outward from the known ones (push-pull: the
    known pixels averaged down a pyramid, the holes filled from the coarsest level up), so a colour keeps going
    smoothly past the known region's edge instead of whatever the image holds there."""
    img = image.astype(np.float32)
    w = known.astype(np.float32)[..., None]
    levels = [(img * w, w)]
    while min(levels[-1][1].shape[:2]) > 4:
        v, k = levels[-1]
        levels.append((cv2.pyrDown(v), cv2.pyrDown(k)[..., None]))
    v, k = levels[-1]
    filled = v / np.maximum(k, 1e-6)
    for v, k in reversed(levels[:-1]):
        up = cv2.resize(filled, (v.shape[1], v.shape[0]), interpolation=cv2.INTER_LINEAR)
        share = np.clip(k * 4, 0, 1)  # a pixel of a quarter known weight or more is taken as known at this level
        filled = share * v / np.maximum(k, 1e-6) + (1 - share) * up.reshape(v.shape)
    out = np.where(w > 0.5, img, filled)
    return out if image.dtype == np.float32 else np.clip(out + 0.5, 0, 255).astype(image.dtype)
