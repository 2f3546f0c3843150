"""The ksame bank: donor averages in the mean-shape frame, what a target is matched on, and the donors' labels."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from ..paths import WEIGHTS_DIR
from .geometry import ring_mask
from .warp import face_hull_mask, frame_points

K_MIN = 10  # the guarantee: no average of fewer donors is ever built or served
DEFAULT_K = 14
DEFAULT_TRIM = 2  # trimmed-mean averages: every pixel the mean of DEFAULT_K - 2 * DEFAULT_TRIM donors
BANK_PATH = WEIGHTS_DIR / "ksame_bank.npz"
RECORD_PATH = WEIGHTS_DIR / "ksame_bank.json"
UTKFACE_TERMS = ("UTKFace (Zhang, Song and Qi, CVPR 2017): non-commercial research use only; image copyright stays "
                 "with the original owners. The averages in this bank are derived from UTKFace crops and carry the "
                 "same terms.")



class Bank:
    """Donor averages in the mean-shape frame (BANK_SIDE px), with what a target is matched on and placed by."""

    def __init__(self, path: Path | str = BANK_PATH):
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"k-Same bank {path} is missing: build it with `facedeid train ksame-bank`")
        with np.load(path) as data:
            if "shape" not in data:
                raise ValueError(f"k-Same bank {path} predates dense alignment: rebuild it with "
                                 "`facedeid train ksame-bank`")
            self.faces = data["faces"]  # [G,R,R,3] uint8 averages, every donor warped onto `shape`
            # [G,R,R] int8 grey fine detail per average, a mosaic of its donors' (build.detail_mosaic); None: none
            self.detail = data["detail"] if "detail" in data else None
            self.template = data["template"].astype(np.float64)  # [5,2] CenterFace's points, mean over donors
            self.shape = data["shape"].astype(np.float64)  # [68,2] dlib's points, mean over donors
            self.rect = data["rect"].astype(np.float64)  # dlib's face rectangle (x1, y1, x2, y2) for the predictor
            self.triangles = data["triangles"].astype(np.int32)  # Delaunay of shape + warp.frame_points
            self.yaw = data["yaw"].astype(np.float64)
            self.tone = data["tone"].astype(np.float64)
            self.thumbs = data["thumbs"].astype(np.float32)
            self.k = data["k"].astype(np.int64)
            self.trim = int(data["trim"])  # per pixel, the trim lowest and highest donor values were dropped
        if len(self.faces) == 0 or int(self.k.min()) - 2 * self.trim < K_MIN:
            raise ValueError(f"k-Same bank {path} has an average of fewer than {K_MIN} donors")
        self.side = int(self.faces.shape[1])
        self.points = np.concatenate([self.shape, frame_points(self.side)])
        self.inner = face_hull_mask(self.shape, self.side)
        self.ring = ring_mask(self.shape, self.side)
        # half resolution for crops where the face is small: remap reads a level near the output's scale
        self.half = np.stack([cv2.resize(f, (self.side // 2, self.side // 2), interpolation=cv2.INTER_AREA)
                              for f in self.faces])

    def choose(self, yaw: float, tone: float, thumb: np.ndarray) -> int:
        """Nearest average in pose, skin tone and coarse appearance (weights: 0.1 yaw ~ 8 L* ~ 0.3 cosine)."""
        cost = ((self.yaw - yaw) / 0.1) ** 2 + ((self.tone - tone) / 8.0) ** 2 + ((1 - self.thumbs @ thumb) / 0.3) ** 2
        return int(np.argmin(cost))



def utkface_labels(name: str) -> dict | None:
    """age, gender (0 male, 1 female), race (0 White, 1 Black, 2 Asian, 3 Indian, 4 Others) from the file name."""
    parts = name.split("_")
    try:
        return {"age": int(parts[0]), "gender": int(parts[1]), "race": int(parts[2])}
    except (IndexError, ValueError):
        return None


def held_apart(name: str, share: int = 5) -> bool:
    """Crops kept out of every bank (1 in `share`, by a hash of the name): the real reference set of fid_eff."""
    return int(hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest(), 16) % share == 0
