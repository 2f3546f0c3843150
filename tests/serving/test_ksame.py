"""ksame (donor averages): the bank's guarantees, the generator's behaviour, and the served model through Triton."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from facedeid import ksame
from facedeid.crops import extract_crops, to_tensor
from facedeid.detection import CenterFaceDetector
from facedeid.metrics import FaceRecognizer, match_boxes
from facedeid.models.registry import KSAME_CROP_SIZE

from helpers import ASTRONAUT_FACE, assert_deidentified, deid, face_grid, shared_faces_dir, tensor


@pytest.fixture(scope="module")
def generator():
    return ksame.KSame()


@pytest.fixture(scope="module")
def client(triton):
    return grpcclient.InferenceServerClient(triton.grpc_url)


def astronaut_crop(astronaut) -> np.ndarray:
    return extract_crops(astronaut, ASTRONAUT_FACE[None], ksame.SIZE)[0][0]


# ------------------------------------------------------------------------------------------------ the bank
def test_every_average_has_at_least_k_donors_and_the_record_names_them():
    bank = ksame.Bank()
    record = json.loads(ksame.RECORD_PATH.read_text())
    assert len(bank.faces) == len(record["bank"]) == record["entries"] > 0
    assert int(bank.k.min()) >= ksame.K_MIN and record["min_k"] >= ksame.K_MIN
    sources = [s for entry in record["bank"] for s in entry["sources"]]
    for entry, k in zip(record["bank"], bank.k):
        assert len(set(entry["sources"])) == entry["k"] == k  # k distinct donor photos per average
    assert len(sources) == len(set(sources)), "a donor photo is in two averages"
    assert not any(ksame.held_apart(s) for s in sources), "a held-apart (fid_eff reference) crop is a donor"
    assert "non-commercial" in record["terms"]
    assert ksame.BANK_PATH.stat().st_size < 16_000_000  # the repository is cloned in CI


def test_a_bank_with_fewer_than_k_donors_is_refused(tmp_path):
    with np.load(ksame.BANK_PATH) as data:
        arrays = dict(data)
    arrays["k"] = arrays["k"].copy()
    arrays["k"][0] = ksame.K_MIN - 1
    np.savez(tmp_path / "bank.npz", **arrays)
    with pytest.raises(ValueError, match="fewer than"):
        ksame.Bank(tmp_path / "bank.npz")


def test_similarity_recovers_a_known_transform():
    pts = np.array([[40, 50], [88, 50], [64, 75], [46, 96], [82, 96]], float)
    angle, scale, shift = 0.2, 1.3, np.array([5.0, -7.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = ksame.similarity(pts, pts @ rot.T + shift)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-9)


# --------------------------------------------------------------------------------------------- the generator
def test_landmarks_on_a_crop_fall_on_the_face(astronaut):
    points, score = ksame.Landmarks()(astronaut_crop(astronaut)[None])
    assert score[0] > 0.5
    left_eye, right_eye, nose, left_mouth, right_mouth = points[0]
    assert left_eye[0] < nose[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])


def test_only_the_inner_face_changes_and_in_the_targets_colours(generator, astronaut):
    crop = astronaut_crop(astronaut)
    out = generator.generate(crop[None])[0]
    mask = generator.masks(crop[None])[0]
    diff = np.abs(out.astype(int) - crop.astype(int)).max(axis=2)
    assert (diff[mask == 0] == 0).all(), "pixels outside the inner-face mask changed (donor ghosting)"
    assert diff[mask > 0.99].mean() > 10, "the inner face was not replaced"
    lab_in, lab_out = (cv2.cvtColor(x.astype(np.float32) / 255, cv2.COLOR_RGB2LAB) for x in (crop, out))
    inner = mask > 0.99
    chroma_in = np.hypot(lab_in[..., 1], lab_in[..., 2])[inner].mean()
    chroma_out = np.hypot(lab_out[..., 1], lab_out[..., 2])[inner].mean()
    assert chroma_out < chroma_in * 1.25, f"over-saturated: chroma {chroma_out:.1f} vs {chroma_in:.1f}"
    assert abs(lab_out[..., 0][inner].mean() - lab_in[..., 0][inner].mean()) < 12


def test_the_replacement_is_a_face_and_not_the_same_person(generator, astronaut):
    windows = extract_crops(astronaut, ASTRONAUT_FACE[None], ksame.SIZE)[1]
    from facedeid.compose import compose

    frame = compose(astronaut, generator.generate(astronaut_crop(astronaut)[None]), windows)
    found, _ = CenterFaceDetector()(frame)
    assert match_boxes(ASTRONAUT_FACE[None], found)[0], "CenterFace no longer finds the face"
    recognizer = FaceRecognizer()
    dist = np.linalg.norm(recognizer.descriptors(astronaut, ASTRONAUT_FACE[None])
                          - recognizer.descriptors(frame, ASTRONAUT_FACE[None]))
    assert dist > 0.6, f"dlib still matches the original (distance {dist:.2f})"


def test_a_crop_without_a_findable_face_is_still_replaced(generator):
    noise = np.random.default_rng(0).integers(0, 255, (1, ksame.SIZE, ksame.SIZE, 3), dtype=np.uint8)
    out = generator.generate(noise)
    centre = slice(ksame.SIZE // 3, 2 * ksame.SIZE // 3)
    assert np.abs(out[0, centre, centre].astype(int) - noise[0, centre, centre]).mean() > 10


def test_nan_or_wrong_shapes_are_refused_or_contained(generator):
    with pytest.raises(ValueError, match="shape"):
        generator(np.zeros((1, 3, 64, 64), np.float32))
    out = generator(np.full((1, 3, ksame.SIZE, ksame.SIZE), np.nan, np.float32))
    assert np.isfinite(out).all()


@pytest.mark.shared
def test_build_command_writes_a_bank_and_its_record(tmp_path):
    train = shared_faces_dir() / "train" / "utkface"
    subset = tmp_path / "train"
    subset.mkdir()
    for path in sorted(train.glob("[2-5]?_0_0_*.jpg"))[:200]:  # 200 adult crops of one gender and race
        (subset / path.name).symlink_to(path)
    from facedeid.ksame.build import build

    record = build(subset, tmp_path / "bank.npz", k=12, trim=1, max_per_group=1, log=lambda *_: None)
    bank = ksame.Bank(tmp_path / "bank.npz")
    assert len(bank.faces) == record["entries"] >= 1 and int(bank.k.min()) >= 12 and bank.trim == 1
    assert json.loads((tmp_path / "bank.json").read_text())["bank"][0]["k"] == 12
    assert bank.faces.shape[1:] == (ksame.BANK_SIDE, ksame.BANK_SIDE, 3) and bank.shape.shape == (68, 2)
    assert bank.detail.shape == bank.faces.shape[:3] and bank.detail.any()  # the donors' detail mosaic
    with pytest.raises(ValueError, match=">= 14"):
        build(subset, tmp_path / "bad.npz", k=12, trim=2)  # 8 donors per pixel: under K_MIN


# ----------------------------------------------------------------------------------------- through Triton
def test_served_ksame_equals_the_in_process_generator(client, generator, astronaut):
    side = KSAME_CROP_SIZE  # the served model takes the crops of ksame's own prep models
    face = extract_crops(astronaut, ASTRONAUT_FACE[None], side)[0]
    crops = to_tensor(np.concatenate([face, np.random.default_rng(1).integers(0, 255, (2, side, side, 3), np.uint8)]))
    served = client.infer("ksame", [tensor("INPUT", crops, "FP32")]).as_numpy("OUTPUT")
    assert served.shape == crops.shape
    np.testing.assert_allclose(served, generator(crops), atol=1e-6)


def test_deid_ksame_replaces_the_astronauts_face(client, astronaut):
    result, boxes = deid(client, "deid_ksame", astronaut)
    np.testing.assert_allclose(boxes[0], ASTRONAUT_FACE, atol=1.0)
    assert_deidentified(astronaut, result, boxes)
    assert match_boxes(boxes, CenterFaceDetector()(result)[0])[0], "the replaced face is no longer a face"


def test_deid_ksame_boxes_finds_landmarks_itself(client, astronaut):
    frame, boxes = face_grid(astronaut[40:200, 160:290], rows=2, cols=3)
    result, used = deid(client, "deid_ksame_boxes", frame, boxes)
    np.testing.assert_array_equal(used, boxes)
    assert_deidentified(frame, result, boxes)
    assert match_boxes(boxes, CenterFaceDetector()(result)[0]).mean() >= 5 / 6


# ------------------------------------------------------------- landmarks given by the caller (a video track's)
def shifted_error(moved: np.ndarray, base: np.ndarray, dx: int, region: tuple[slice, slice]) -> float:
    """Mean abs difference over `region` of `base` and `moved` read dx px to the right."""
    ys, xs = region
    return float(np.abs(moved[ys, xs.start + dx : xs.stop + dx].astype(float) - base[ys, xs]).mean())


def test_given_landmarks_take_the_place_of_the_crops_own(generator, astronaut):
    crop = astronaut_crop(astronaut)[None]
    found, _ = generator.landmarks(crop)
    own, donor = generator.generate_with_donors(crop)
    # the crop's own points given back: the face they place (a track's points are not re-placed on the 68 dlib
    # finds per frame, whose jitter they smooth); NaN rows: found on the crop, as without LANDMARKS
    placed_by_five = ksame.KSame(generator.bank, generator.landmarks, place="five").generate(crop)
    np.testing.assert_array_equal(generator.generate(crop, landmarks=found.reshape(1, 10)), placed_by_five)
    np.testing.assert_array_equal(generator.generate(crop, landmarks=np.full((1, 10), np.nan)), own)
    # points given 4 px to the right (same donor): the pasted face follows them there
    moved = generator.generate(crop, donor, landmarks=(found + [4.0, 0.0]).reshape(1, 10))[0]
    inner = (slice(45, 95), slice(40, 84))
    assert shifted_error(moved, own[0], 4, inner) < 0.5 * shifted_error(moved, own[0], 0, inner)
    with pytest.raises(ValueError, match="all finite"):
        generator.generate(crop, landmarks=np.concatenate([found.reshape(10)[:9], [np.nan]])[None])
    with pytest.raises(ValueError, match="10 values"):
        generator.generate(crop, landmarks=np.zeros((1, 8)))


def boxes_request(client, frame, box, landmarks=None, roll=None, donor=5):
    """deid_ksame_boxes with one box, a fixed donor and optional LANDMARKS_IN / ROLL_IN -> DEID_FRAME."""
    inputs = [tensor("FRAME", frame, "UINT8"), tensor("BOXES_IN", np.float32(box).reshape(1, 4), "FP32"),
              tensor("DONOR", np.int32([donor]), "INT32")]
    if landmarks is not None:
        inputs.append(tensor("LANDMARKS_IN", np.float32(landmarks).reshape(1, 10), "FP32"))
    if roll is not None:
        inputs.append(tensor("ROLL_IN", np.float32([roll]), "FP32"))
    return client.infer("deid_ksame_boxes", inputs).as_numpy("DEID_FRAME")


def test_landmarks_in_place_the_served_face_in_frame_pixels_upright_and_rolled(client, astronaut):
    found = CenterFaceDetector().detect(astronaut)
    box, points = found.boxes[0], found.landmarks[0].reshape(5, 2)
    assert np.abs(box - ASTRONAUT_FACE).max() < 3
    without = boxes_request(client, astronaut, box)  # backward compatible: landmarks found on the crop
    given = boxes_request(client, astronaut, box, points)
    assert np.array_equal(boxes_request(client, astronaut, box, points), given)  # same box and points, same face
    face = (slice(90, 160), slice(195, 255))
    moved = boxes_request(client, astronaut, box, points + [6.0, 0.0])  # points 6 frame px to the right
    errors = {"own vs given": shifted_error(without, given, 0, face), "moved": shifted_error(moved, given, 0, face),
              "moved, shifted back": shifted_error(moved, given, 6, face)}
    print(errors)
    # the detector's points and the crop's own put the face at about the same place (closer than a 6 px shift) ...
    assert errors["own vs given"] < errors["moved"], errors
    # ... and the pasted face follows the points given
    assert errors["moved, shifted back"] < 0.5 * errors["moved"], errors
    # the frame turned a quarter counter-clockwise: the face lies on its side, ROLL_IN 270 stands its crop upright
    # and the landmarks go through the same turn: the same face comes out, turned
    w = astronaut.shape[1]
    turned = np.ascontiguousarray(np.rot90(astronaut))
    turned_box = np.float32([box[1], w - box[2], box[3], w - box[0]])
    turned_points = np.stack([points[:, 1], w - 1 - points[:, 0]], axis=1)
    out = boxes_request(client, turned, turned_box, turned_points, roll=270)
    region = (slice(w - 255, w - 195), slice(90, 160))  # `face` after the turn
    assert np.abs(out[region].astype(float) - np.rot90(given)[region]).mean() < 3


def test_bad_landmarks_in_are_refused(client, astronaut):
    box = ASTRONAUT_FACE
    with pytest.raises(Exception, match="LANDMARKS_IN must have shape"):
        inputs = [tensor("FRAME", astronaut, "UINT8"), tensor("BOXES_IN", box.reshape(1, 4), "FP32"),
                  tensor("LANDMARKS_IN", np.zeros((2, 10), np.float32), "FP32")]
        client.infer("deid_ksame_boxes", inputs)
    with pytest.raises(Exception, match="LANDMARKS_IN must lie near"):  # far from their box
        boxes_request(client, astronaut, box, np.full(10, 5000.0))
