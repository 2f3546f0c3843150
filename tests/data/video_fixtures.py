"""Short test videos made from real photos: a camera pan across the astronaut photo (a real face) into the coffee
photo (no face), both shipped by scikit-image. Every sampled frame's content is known, so are its face boxes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import skimage.data

# CenterFace's box of the astronaut's face in the 512x512 photo (see tests/serving/test_pipeline.py)
ASTRONAUT_FACE = np.array([181.5, 58.2, 269.9, 177.8], np.float32)
WINDOW = (320, 240)  # width, height of the video
TOP = 20  # the window's top row in the strip
STEP = 16  # pan, pixels per video frame


def strip() -> np.ndarray:
    """512 x 1280: the astronaut photo, then the coffee photo scaled to the same height."""
    astronaut = skimage.data.astronaut()[:, :, :3]
    coffee = skimage.data.coffee()
    coffee = cv2.resize(coffee, (768, 512), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(np.concatenate([astronaut, coffee], axis=1))


def pan_frames(n: int, step: int = STEP) -> list[np.ndarray]:
    s = strip()
    w, h = WINDOW
    return [np.ascontiguousarray(s[TOP : TOP + h, i * step : i * step + w]) for i in range(n)]


def expected_face(index: int, step: int = STEP) -> np.ndarray | None:
    """The face box (pixels x1y1x2y2) in frame `index`, or None when the face is not wholly in view."""
    x1, y1, x2, y2 = ASTRONAUT_FACE
    dx = index * step
    if x1 - dx < 0:
        return None
    return np.array([x1 - dx, y1 - TOP, x2 - dx, y2 - TOP], np.float32)


def write_video_opencv(path: Path, frames: list[np.ndarray], fps: float, fourcc: str = "MJPG") -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()
    return path


def write_video_ffmpeg(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """H.264 MP4 through the ffmpeg binary of imageio-ffmpeg."""
    from facedeid.data.ffmpeg import encode_video

    return encode_video(path, frames, fps)


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
