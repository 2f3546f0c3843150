"""A folder of photos as a DNA-format set (detector labels, or hand labels where given)."""

from __future__ import annotations

import cv2
import numpy as np

from facedeid.data import read_labels, scan_dataset
from facedeid.data.photos import main

from helpers import ASTRONAUT_FACE


def test_photos_become_a_labelled_dna_set(tmp_path, astronaut):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    cv2.imwrite(str(photos / "sub" / "astro.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(photos / "hand.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    csv_path = tmp_path / "boxes.csv"
    csv_path.write_text("file,left,top,width,height\nphotos/hand.png,10,20,30,40\n")
    assert main([str(photos), str(tmp_path / "dna"), "--local", "--labels_csv", str(csv_path)]) == 0
    frames = {f.key: f for f in scan_dataset(tmp_path / "dna")}
    assert set(frames) == {"sub/astro", "hand"}
    (xc, yc, w, h), = frames["sub/astro"].boxes_norm
    x1, y1, x2, y2 = ASTRONAUT_FACE / 512
    np.testing.assert_allclose([xc, yc, w, h], [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], atol=2e-3)
    hand = read_labels(tmp_path / "dna" / "labels" / "hand.txt")
    np.testing.assert_allclose(hand[0, 1:] * 512, [25, 40, 30, 40], atol=0.01)
    copied = tmp_path / "dna" / "images" / "sub" / "astro.png"
    assert copied.read_bytes() == (photos / "sub" / "astro.png").read_bytes()


def test_dlib_labeler_is_independent_and_grows_boxes_forehead_to_chin(tmp_path, astronaut):
    """--labeler dlib: dlib's CNN detector (not CenterFace) labels the face; the box is grown upwards and down."""
    from facedeid.data.labelers import GROW_BOTTOM, GROW_TOP, DlibLabeler
    from facedeid.metrics import iou_matrix

    labeler = DlibLabeler()
    raw, scores = labeler.raw(astronaut)
    grown, _ = labeler(astronaut)
    assert len(raw) == len(grown) == 1 and scores[0] > 0
    h = raw[0, 3] - raw[0, 1]
    np.testing.assert_allclose(grown[0], raw[0] + [0, -GROW_TOP * h, 0, GROW_BOTTOM * h], atol=1e-3)
    assert iou_matrix(grown, ASTRONAUT_FACE[None])[0, 0] > 0.5  # the same face CenterFace finds, drawn by dlib
    assert iou_matrix(grown, ASTRONAUT_FACE[None])[0, 0] > iou_matrix(raw, ASTRONAUT_FACE[None])[0, 0]

    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "astro.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    assert main([str(photos), str(tmp_path / "dna"), "--labeler", "dlib"]) == 0
    labels = read_labels(tmp_path / "dna" / "labels" / "astro.txt")
    np.testing.assert_allclose(labels[0, 1:] * 512, [(grown[0, 0] + grown[0, 2]) / 2, (grown[0, 1] + grown[0, 3]) / 2,
                                                     grown[0, 2] - grown[0, 0], grown[0, 3] - grown[0, 1]], atol=0.02)
