"""The detector's fixed values and the ranges its settings must lie in (defaults come from facedeid.settings'
profiles, and tests/test_settings.py keeps these equal to them)."""

from __future__ import annotations

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
# A box of a whole face replaces a kept box of part of it (decode._part_of) only when it scores at least this: a
# face the product generates (DEFAULT_GENERATE_THRESHOLD), not a loose, unsure head-and-shoulders box.
WHOLE_FACE_SCORE = DEFAULT_GENERATE_THRESHOLD
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
