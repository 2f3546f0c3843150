"""Smoothing over a video track (client/tracking.py): the One-Euro filter of a face's box and of its landmarks, the
landmarks carried along by the face's optical flow."""

from __future__ import annotations

import numpy as np

# One-Euro filter (Casiez, Roussel & Vogel 2012) on the box centre and size, speeds in face sides per second:
# still faces are smoothed at ~0.8 Hz, moving ones follow (cutoff grows by BETA Hz per side/s of speed: a face
# moving 1 side/s lags ~1/(2 pi BETA) = 0.04 of its side).
MIN_CUTOFF_HZ = 0.8
BETA = 4.0
D_CUTOFF_HZ = 1.0
# Privacy bound of the smoothing: a smoothed edge never strays further than this share of the face's side from the
# detector's box, so the generated face always covers the detected one (compose's window adds 1.4x around it).
MAX_SMOOTH_SHIFT = 0.08
# A face's image motion between frames (optical flow, LandmarkFilter): corners tracked, and the fewest that give one
MOTION_CORNERS = 40
MOTION_MIN_POINTS = 6


class OneEuroVector:
    """One-Euro low-pass filter (Casiez et al. 2012) of a vector, adaptive to its speed in face sides/s."""

    def __init__(self, fps: float, min_cutoff: float = MIN_CUTOFF_HZ, beta: float = BETA,
                 d_cutoff: float = D_CUTOFF_HZ):
        self.dt = 1.0 / fps
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.state: np.ndarray | None = None
        self.speed: np.ndarray | float = 0.0

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau / self.dt)

    def __call__(self, raw: np.ndarray, side: float = 1.0) -> np.ndarray:
        """`raw` this frame -> the filtered vector; `side` (pixels per face side) turns its speed into sides/s."""
        raw = np.asarray(raw, np.float64)
        if self.state is None:
            self.state = raw
        else:
            speed = (raw - self.state) / self.dt / max(side, 1.0)
            a = self._alpha(self.d_cutoff)
            self.speed = a * speed + (1 - a) * self.speed
            alpha = self._alpha(self.min_cutoff + self.beta * np.abs(self.speed))
            self.state = alpha * raw + (1 - alpha) * self.state
        return self.state


class OneEuro(OneEuroVector):
    """One-Euro filter of a box (x1, y1, x2, y2) on its centre and size, never straying from the detector's box."""

    def __call__(self, box: np.ndarray) -> np.ndarray:
        x1, y1, x2, y2 = np.asarray(box, np.float64)
        raw = np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
        cx, cy, w, h = super().__call__(raw, float(np.sqrt(raw[2] * raw[3])))
        smooth = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        limit = MAX_SMOOTH_SHIFT * max(x2 - x1, y2 - y1)
        return np.clip(smooth, np.asarray(box) - limit, np.asarray(box) + limit).astype(np.float32)


def box_frame(box: np.ndarray) -> tuple[np.ndarray, float]:
    """A box's frame of reference: its centre (x, y) and side (geometric mean of width and height)."""
    x1, y1, x2, y2 = np.asarray(box, np.float64)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2]), max(float(np.sqrt((x2 - x1) * (y2 - y1))), 1.0)


def face_motion(before: np.ndarray, now: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The image motion of a face between two grey frames: a 2x3 similarity fitted (RANSAC) to corners inside `box`
    (the face in `before`) followed by pyramidal Lucas-Kanade optical flow; None where too few corners are tracked."""
    import cv2

    h, w = before.shape[:2]
    x1, y1, x2, y2 = np.clip(np.round(np.asarray(box, np.float64)), 0, [w, h, w, h]).astype(int)
    if x2 - x1 < 8 or y2 - y1 < 8:
        return None
    mask = np.zeros((h, w), np.uint8)
    mask[y1:y2, x1:x2] = 255
    corners = cv2.goodFeaturesToTrack(before, MOTION_CORNERS, 0.01, 3, mask=mask)
    if corners is None or len(corners) < MOTION_MIN_POINTS:
        return None
    moved, ok, _ = cv2.calcOpticalFlowPyrLK(before, now, corners, None, winSize=(15, 15), maxLevel=3)
    ok = ok.reshape(-1) == 1
    if ok.sum() < MOTION_MIN_POINTS:
        return None
    m, inliers = cv2.estimateAffinePartial2D(corners[ok], moved[ok], method=cv2.RANSAC, ransacReprojThreshold=1.0)
    if m is None or inliers is None or int(inliers.sum()) < MOTION_MIN_POINTS:
        return None
    return m


class LandmarkFilter:
    """A track's five landmarks, smoothed by a One-Euro filter in the face's own moving frame of reference.

    Before each step the filtered points are carried along by the face's image motion since the last frame
    (`face_motion`, optical flow), so what the filter smooths is the detector's jitter around the moving face, not
    the move itself: a camera pan or zoom, or the face walking, is followed without the lag a plain low-pass filter
    has, which would slide the pasted face off the real one. Points are kept in frame pixels, not relative to the
    detector's box, whose edges jitter more than the points. A smoothed point never strays more than
    MAX_SMOOTH_SHIFT of the face's side from the detector's own."""

    def __init__(self, fps: float):
        self.filter = OneEuroVector(fps)  # the boxes' settings, speeds of the residual jitter

    def __call__(self, points: np.ndarray, box: np.ndarray, motion: np.ndarray | None = None) -> np.ndarray:
        points = np.asarray(points, np.float64).reshape(5, 2)
        side = box_frame(box)[1]
        if motion is not None and self.filter.state is not None:
            state = self.filter.state.reshape(5, 2)
            self.filter.state = (state @ motion[:, :2].T + motion[:, 2]).ravel()
        smooth = self.filter(points.ravel(), side).reshape(5, 2)
        limit = MAX_SMOOTH_SHIFT * side
        return np.clip(smooth, points - limit, points + limit).astype(np.float32).ravel()
