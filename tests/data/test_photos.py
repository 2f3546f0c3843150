"""A folder of photos as a DNA-format set (detector labels, or hand labels where given)."""

from __future__ import annotations

import cv2
import numpy as np

from facedeid.data import read_labels, scan_dataset
from facedeid.data.photos import main
from facedeid.testing import ASTRONAUT_FACE


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
    assert (tmp_path / "dna" / "images" / "sub" / "astro.png").read_bytes() == (photos / "sub" / "astro.png").read_bytes()
