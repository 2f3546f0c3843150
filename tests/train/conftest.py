"""Tiny datasets built from scikit-image's astronaut photo (a real face): one DNA-format frame and one plain folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

# Eileen Collins' face in skimage.data.astronaut() (512x512), pixels x1, y1, x2, y2
ASTRONAUT_FACE = (170, 25, 290, 170)


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def write_dna(root: Path) -> Path:
    img = _astronaut()
    h, w = img.shape[:2]
    x1, y1, x2, y2 = ASTRONAUT_FACE
    for sub, frame in (("clip1", img), ("clip2", img[:, ::-1].copy())):
        (root / "images" / sub).mkdir(parents=True, exist_ok=True)
        (root / "labels" / sub).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / sub / "f0001.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        bx1, bx2 = (x1, x2) if sub == "clip1" else (w - x2, w - x1)
        (root / "labels" / sub / "f0001.txt").write_text(
            f"0 {(bx1 + bx2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(bx2 - bx1) / w:.6f} {(y2 - y1) / h:.6f}\n")
    # a frame without a label file = no faces
    cv2.imwrite(str(root / "images" / "clip1" / "f0002.jpg"), np.full((64, 96, 3), 90, np.uint8))
    return root


def write_plain(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    img = _astronaut()
    cv2.imwrite(str(root / "astronaut.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "astronaut_small.jpg"), cv2.cvtColor(cv2.resize(img, (256, 256)), cv2.COLOR_RGB2BGR))
    return root


@pytest.fixture(scope="session")
def dna_dir(tmp_path_factory) -> Path:
    return write_dna(tmp_path_factory.mktemp("dna"))


@pytest.fixture(scope="session")
def plain_dir(tmp_path_factory) -> Path:
    return write_plain(tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="session")
def astronaut_frame() -> np.ndarray:
    return _astronaut()


@pytest.fixture(scope="session")
def astronaut_face() -> np.ndarray:
    return np.array([ASTRONAUT_FACE], np.float32)
