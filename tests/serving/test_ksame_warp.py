"""ksame's dense alignment (facedeid.ksame.warp): dlib's 68 landmarks placed from CenterFace's five points, and the
piecewise-affine warp that puts a real face onto the bank's mean shape and back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facedeid import ksame
from facedeid.crops import extract_crops
from facedeid.ksame import warp

from helpers import ASTRONAUT_FACE

SIDE = ksame.BANK_SIDE


def astronaut_landmarks(astronaut):
    crop = extract_crops(astronaut, ASTRONAUT_FACE[None], SIDE)[0][0]
    bank = ksame.Bank()
    points, score = ksame.Landmarks()(crop[None])
    assert score[0] > 0.5
    to_crop = ksame.similarity(bank.template, points[0])
    dense = warp.dense_landmarks(crop, ksame.dense_rect(to_crop, bank.rect))
    return crop, bank, to_crop, dense, points[0]


def test_dense_landmarks_agree_with_centerface(astronaut):
    _, bank, _, dense, five = astronaut_landmarks(astronaut)
    iod = np.linalg.norm(five[1] - five[0])
    # eye centres, nose tip and mouth corners from dlib's 68 within 0.2 inter-ocular distances of CenterFace's
    assert np.linalg.norm(warp.five_from_68(dense) - five, axis=1).max() < 0.2 * iod


def test_a_face_warped_to_the_mean_shape_and_back_has_its_landmarks_where_they_belong(astronaut):
    crop, bank, to_crop, dense, _ = astronaut_landmarks(astronaut)
    frame = warp.frame_points(SIDE)
    src = np.concatenate([dense, ksame.apply(to_crop, frame)])
    to_mean = warp.warp(crop, src, bank.points, bank.triangles, (SIDE, SIDE))
    # on the warped face dlib finds the mean shape: features sit where every bank average has them
    found = warp.dense_landmarks(to_mean, bank.rect)
    iod = np.linalg.norm(bank.template[1] - bank.template[0])
    error = np.linalg.norm(found - bank.shape, axis=1)
    assert np.median(error) < 0.05 * iod and error.max() < 0.2 * iod, (np.median(error), error.max())
    moved = np.linalg.norm(dense - ksame.apply(to_crop, bank.shape), axis=1)
    assert np.median(moved) > 2 * np.median(error)  # the warp moved the features (not an identity map)
    # and back: the round trip returns the face (same landmarks, same pixels inside the face)
    back = warp.warp(to_mean, bank.points, src, bank.triangles, (SIDE, SIDE))
    again = warp.dense_landmarks(back, ksame.dense_rect(to_crop, bank.rect))
    assert np.median(np.linalg.norm(again - dense, axis=1)) < 0.05 * iod
    inner = warp.face_hull_mask(dense, SIDE) > 0.99
    assert np.abs(back.astype(int) - crop.astype(int))[inner].mean() < 8


def test_the_bank_is_aligned_densely_and_pasted_in_the_chosen_geometry(astronaut):
    crop, bank, to_crop, dense, five = astronaut_landmarks(astronaut)
    mean_geometry = ksame.KSame(bank, geometry="mean")
    target_geometry = ksame.KSame(bank, geometry="target")
    placed = ksame.apply(to_crop, bank.shape)
    np.testing.assert_allclose(mean_geometry.target_shape(crop, five, to_crop), placed)
    np.testing.assert_allclose(target_geometry.target_shape(crop, five, to_crop), dense)
    # the target geometry's output has the target's landmarks; the mean geometry's has the mean's
    for generator, expected in ((target_geometry, dense), (mean_geometry, placed)):
        out = generator.replace(crop, five)
        found = warp.dense_landmarks(out, ksame.dense_rect(to_crop, bank.rect))
        inner = slice(17, 68)  # brows, nose, eyes, mouth: inside the replaced region
        assert np.median(np.linalg.norm(found[inner] - expected[inner], axis=1)) < 0.06 * np.linalg.norm(
            five[1] - five[0])


def test_the_target_mask_covers_the_targets_own_eyes_when_the_mean_is_placed_lower(astronaut):
    """Ghosting: five points placed lower than the face's own eyes (as on close-ups and tilted heads) put the mean
    shape's mask below the target's eyes; `mask="target"` grows it by one drawn on the target's 68 landmarks."""
    crop, bank, _, dense, five = astronaut_landmarks(astronaut)
    iod = np.linalg.norm(five[1] - five[0])
    lowered = five + [0.0, 0.25 * iod]  # further, and dlib's 68 follow the misplaced rectangle
    eyes = np.round(np.concatenate([dense[36:48], dense[17:27]])).astype(int)  # the target's own eyes and brows
    covered = {}
    for mask in ("target", "mean"):
        generator = ksame.KSame(bank, mask=mask)
        to_crop = ksame.similarity(bank.template, lowered)
        found = generator.found_shape(crop, lowered, to_crop)
        map_x, map_y = generator._map(crop, to_crop, found)
        m = generator._paste_mask(map_x, map_y, found, SIDE)
        covered[mask] = m[eyes[:, 1], eyes[:, 0]]
    assert covered["target"].min() > 0.99, covered["target"]
    assert covered["mean"].min() < 0.1, covered["mean"]  # the case the target mask is for exists here
    # and the pasted pixels follow: every eye and brow landmark of the target is replaced
    out = ksame.KSame(bank).replace(crop, lowered)
    diff = np.abs(out.astype(int) - crop.astype(int)).max(axis=2)
    assert (diff[eyes[:, 1], eyes[:, 0]] > 0).all()


def test_grain_adds_fine_texture_on_the_skin_only_and_the_same_for_the_same_average(astronaut):
    crop, bank, _, _, five = astronaut_landmarks(astronaut)
    plain = ksame.KSame(bank).replace(crop, five, donor=3)
    grainy = ksame.KSame(bank, texture=1.0)
    out = grainy.replace(crop, five, donor=3)
    np.testing.assert_array_equal(out, grainy.replace(crop, five, donor=3))  # seeded by the average: a track keeps it
    assert not np.array_equal(out, ksame.KSame(bank, texture=1.0).replace(crop, five, donor=4))

    def fine(image):
        grey = image.astype(np.float32).mean(axis=2)
        return np.abs(grey - cv2.GaussianBlur(grey, (0, 0), 1.0))

    to_crop, found = grainy._place(crop, five, ksame.similarity(bank.template, five))  # where it is pasted
    map_x, map_y = grainy._map(crop, to_crop, found)
    skin_weight = cv2.remap(grainy.skin_mask, map_x, map_y, cv2.INTER_LINEAR)
    skin = skin_weight > 0.99
    assert fine(out)[skin].mean() > 1.3 * fine(plain)[skin].mean()
    assert not (out != plain).any(axis=2)[skin_weight == 0].any()  # nothing changes off the skin


def test_donor_detail_makes_the_pasted_face_crisp_inside_the_face_only(astronaut):
    crop, bank, _, _, five = astronaut_landmarks(astronaut)
    assert bank.detail is not None and bank.detail.shape == bank.faces.shape[:3]
    outside = ksame.warp.face_hull_mask(bank.shape, bank.side, brow_lift=0.2, shrink=1.05) == 0
    assert not bank.detail[:, outside].any()  # the mosaic lies on the inner face: no donor's hair or background
    soft = ksame.KSame(bank, donor_detail=0.0).replace(crop, five, donor=3)
    crisp = ksame.KSame(bank, donor_detail=1.5).replace(crop, five, donor=3)

    def fine(image):
        grey = image.astype(np.float32).mean(axis=2)
        return float(((grey - cv2.GaussianBlur(grey, (0, 0), 1.5)) ** 2).mean())

    middle = slice(SIDE * 3 // 8, SIDE * 5 // 8)  # the crop's middle: the pasted face's eyes, nose and mouth
    assert fine(crisp[middle, middle]) > 1.5 * fine(soft[middle, middle])
    assert np.array_equal(crisp[:8], soft[:8]) and np.array_equal(crisp[-8:], soft[-8:])  # crop edges untouched
    # the served defaults: the head cover with its donors' detail, the face cover without (docs/crisp-faces.md)
    assert ksame.KSame(bank, cover="head").donor_detail == 1.0 and ksame.KSame(bank).donor_detail == 0.0


def test_donor_detail_needs_a_bank_that_has_it(tmp_path):
    with np.load(ksame.BANK_PATH) as data:
        arrays = {k: v for k, v in data.items() if k != "detail"}
    np.savez(tmp_path / "bank.npz", **arrays)
    old = ksame.Bank(tmp_path / "bank.npz")
    assert old.detail is None
    ksame.KSame(old, donor_detail=0.0)  # the average alone works with any bank
    with pytest.raises(ValueError, match="ksame-bank"):
        ksame.KSame(old, donor_detail=1.0)


def test_own_skin_extends_the_averages_fringes_over_and_keeps_their_faces_below_the_brows(astronaut):
    from facedeid.ksame.geometry import average_skin, extend, own_skin

    bank = ksame.Bank()
    p, side = bank.shape, bank.side
    hull = average_skin(p, side) > 0.5
    rows = np.arange(side, dtype=np.float64)[:, None] * np.ones((1, side))
    height = p[8, 1] - p[17:27, 1].min()
    forehead_top = hull & (rows < p[17:27, 1].min() - 0.1 * height)
    cheeks = hull & (rows > p[36:48, 1].max()) & (rows < p[48:60, 1].min())

    def lightness(image):
        return cv2.cvtColor(image, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float64) * 100 / 255

    dark_hull = dark_own = 0
    for face in bank.faces:
        own = own_skin(face, p, side) > 0.5
        assert np.array_equal(own[rows > p[17:27, 1].max()], hull[rows > p[17:27, 1].max()])  # brows, eyes, mouth
        assert not (own & ~hull).any()
        cheek = np.median(lightness(face)[cheeks])
        # a forehead's darkest tenth over 10 L* under the cheeks: a fringe or temple hair pasted as skin
        dark_hull += cheek - np.percentile(lightness(extend(face, hull.astype(np.float32)))[forehead_top], 10) > 10
        dark_own += cheek - np.percentile(lightness(extend(face, own.astype(np.float32)))[forehead_top], 10) > 10
    assert dark_hull >= 20 and dark_own <= 8, (dark_hull, dark_own)  # 30 and 5 of the 72 averages when written
    crop, _, _, _, five = astronaut_landmarks(astronaut)
    assert not np.array_equal(ksame.KSame(bank, fill="own").replace(crop, five, donor=0),
                              ksame.KSame(bank).replace(crop, five, donor=0))


def test_relight_meets_the_targets_lighting_at_the_paste_edge_but_not_its_hair(astronaut):
    from facedeid.ksame.generator import RELIGHT_MAX, boundary_offset

    crop, bank, to_crop, dense, five = astronaut_landmarks(astronaut)
    target = crop.astype(np.float32)
    mask = warp.face_hull_mask(dense, SIDE)
    # the same face under a darker, slanted light: what a pasted average looks like beside a lit forehead
    ramp = np.linspace(-30, 10, SIDE, dtype=np.float32)[:, None, None]
    face = target * 0.85 + ramp
    inside = mask > 0.99
    before = np.abs(face - target)[inside].mean()
    after = np.abs(face + boundary_offset(target, face, mask) - target)[inside].mean()
    assert after < 0.4 * before, (before, after)
    # hair across the edge (far darker than the face) is not taken for lighting
    hair = target.copy()
    hair[: SIDE // 3] = 10.0
    offset = boundary_offset(hair, face, mask)
    assert np.abs(offset[: SIDE // 3][inside[: SIDE // 3]]).mean() < RELIGHT_MAX / 2
    relit = ksame.KSame(bank, relight=True).replace(crop, five, donor=3)
    assert not np.array_equal(relit, ksame.KSame(bank).replace(crop, five, donor=3))
