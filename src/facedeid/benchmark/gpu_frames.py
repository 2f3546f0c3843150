"""The GPU check's inputs: real pixels (docs/astronaut.jpg, which travels with the repository) as frames with faces
at several sizes and as generator crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ASTRONAUT = Path(__file__).resolve().parents[3] / "docs" / "astronaut.jpg"
ASTRONAUT_FACE = (182, 58, 270, 178)  # facedeid.data.sample.ASTRONAUT_BOX (not imported: skimage may be absent)


def astronaut() -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(ASTRONAUT), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"gpu-check: cannot read {ASTRONAUT} (it travels with the repository)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def frame_with_faces(width: int, height: int, faces: int = 6) -> np.ndarray:
    """The astronaut's head pasted `faces` times at several sizes on a grey frame (faces about 5 % .. 18 % of the
    frame height)."""
    import cv2

    photo = astronaut()[0:260, 100:350]  # head and shoulders around ASTRONAUT_FACE
    frame = np.full((height, width, 3), 96, np.uint8)
    cols = max(1, (faces + 1) // 2)
    for i in range(faces):
        side = int(height * (0.12 + 0.28 * (i % 3) / 2))
        tile = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
        x = int((i % cols + 0.1) * width / cols)
        y = int((i // cols) * height / 2 + 0.05 * height)
        x, y = min(x, width - side), min(y, height - side)
        frame[y : y + side, x : x + side] = tile
    return frame


def face_crops(n: int, size: int = 128) -> np.ndarray:
    """[n,3,S,S] generator inputs: the astronaut's face box shifted and scaled a little (real pixels)."""
    from ..crops import extract_crops, to_tensor

    photo = astronaut()
    rng = np.random.default_rng(0)
    x1, y1, x2, y2 = ASTRONAUT_FACE
    w, h = x2 - x1, y2 - y1
    boxes = []
    for _ in range(n):
        dx, dy, k = rng.uniform(-0.1, 0.1) * w, rng.uniform(-0.1, 0.1) * h, rng.uniform(0.9, 1.1)
        cx, cy = (x1 + x2) / 2 + dx, (y1 + y2) / 2 + dy
        boxes.append([cx - k * w / 2, cy - k * h / 2, cx + k * w / 2, cy + k * h / 2])
    return to_tensor(extract_crops(photo, np.asarray(boxes, np.float32), size)[0])
