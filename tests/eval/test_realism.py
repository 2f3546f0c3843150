"""fid_eff's definition (facedeid.evaluation.realism): which faces enter it, that a set of faces is at distance 0
from itself and further from its blurred copy, and that its reference ships with the package."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facedeid import metrics as M
from facedeid.crops import extract_crops
from facedeid.detection import MIN_GENERATE_SIDE
from facedeid.evaluation import realism


def test_only_faces_the_product_generates_enter_fid_eff():
    side = MIN_GENERATE_SIDE
    boxes = np.array([[0, 0, side, side], [0, 0, side - 1, 200], [10, 10, 10 + 200, 10 + side]], np.float32)
    assert realism.generated(boxes).tolist() == [True, False, True]
    assert realism.generated(np.zeros((0, 4))).tolist() == []


def test_faces_against_themselves_are_at_distance_zero(astronaut):
    boxes = np.array([[175, 20, 255, 120], [160, 15, 270, 135], [190, 35, 240, 100], [150, 0, 290, 150]], np.float32)
    crops, _ = extract_crops(astronaut, boxes, 128)
    features = M.face_features(M.ImageSimilarity(threads=1), crops)
    assert realism.fid_eff(features, features) == pytest.approx(0.0, abs=1e-3)
    blurred = np.stack([cv2.GaussianBlur(c, (0, 0), 8) for c in crops])
    assert realism.fid_eff(M.face_features(M.ImageSimilarity(threads=1), blurred), features) > 1.0
    assert realism.fid_eff(features[:1], features) is None  # one face has no covariance


def test_the_reference_ships_with_the_package():
    """An evaluation on a machine without the shared face collection still has fid_eff's reference."""
    features = realism.reference_features()
    assert features.shape == (realism.N_REFERENCE, 1280) and features.dtype == np.float32
    assert np.isfinite(features).all() and np.linalg.norm(features, axis=1).min() > 0


@pytest.mark.shared
def test_the_shipped_reference_is_what_the_collection_gives_today():
    """The shipped features come from today's held-apart photos and feature network (first face recomputed)."""
    from facedeid.data.dna import read_image
    from facedeid.detection import CenterFaceDetector
    from facedeid.paths import WEIGHTS_DIR

    with np.load(WEIGHTS_DIR / realism.SHIPPED_REFERENCE) as shipped:
        assert [str(f) for f in shipped["files"]] == [p.name for p in realism.reference_files()]
        first = shipped["features"][0]
    detector = CenterFaceDetector(threads=1)
    for path in realism.reference_files():
        image = read_image(path)
        boxes, _ = detector(image)
        if len(boxes) == 1:
            crop = extract_crops(image, boxes, 128)[0]
            break
    recomputed = M.face_features(M.ImageSimilarity(threads=1), crop)[0]
    np.testing.assert_allclose(recomputed, first, rtol=1e-3, atol=1e-3)
