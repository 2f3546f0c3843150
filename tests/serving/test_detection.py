"""Multi-scale detection, per-request settings and the blur tier, in process and through the real server."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from facedeid import detection, stages

from helpers import ASTRONAUT_FACE, box_region, deid_detect, outside_windows, read_rgb, shared_faces_dir, tensor

PORTRAIT = "identities/paul_rudd/1.jpg"  # 2048x1638, one large face


@pytest.fixture(scope="module")
def client(triton):
    return grpcclient.InferenceServerClient(triton.grpc_url)


def infer(client, frame, model="deid_mobileunet", **settings):
    return deid_detect(client, model, frame, **settings)


def big_canvas(astronaut):
    """A 2600x3400 frame (tiled) with the astronaut's face pasted across tile boundaries and in the middle."""
    frame = np.full((2600, 3400, 3), 90, np.uint8)
    face = astronaut[20:240, 130:330]  # 220x200 around the face
    spots = [(700, 650), (1700, 1000), (2500, 2200), (100, 100)]  # x0=768-68 and y0=768-118: straddles tile edges
    boxes = []
    for x, y in spots:
        frame[y : y + 220, x : x + 200] = face
        boxes.append(ASTRONAUT_FACE + np.float32([x - 130, y - 20, x - 130, y - 20]))
    return frame, np.asarray(boxes, np.float32)


def test_plan_covers_every_pixel_at_full_resolution():
    for h, w in ((480, 640), (2048, 1638), (2600, 3400), (8192, 8192), (5000, 700)):
        p = detection.plan(h, w)
        covered = np.zeros((h, w), bool)
        for x0, y0 in p.origins:
            covered[y0 : y0 + p.tile_h, x0 : x0 + p.tile_w] = True
        assert covered.all(), (h, w)
        assert p.tile_h <= detection.FULL_MAX_SIDE and p.tile_w <= detection.FULL_MAX_SIDE
        assert len(p.origins) <= stages.MAX_DETECTOR_IMAGES
        assert (p.small is None) == (max(h, w) <= detection.DEFAULT_MAX_SIDE)


@pytest.mark.parametrize("settings", [dict(threshold=0.0, det_size=640), dict(threshold=1.5, det_size=640),
                                      dict(threshold=0.005, det_size=640),
                                      dict(threshold=float("nan"), det_size=640), dict(threshold=0.2, det_size=64),
                                      dict(threshold=0.2, det_size=5000), dict(threshold=0.2, det_size=640.5)])
def test_out_of_range_settings_are_refused(settings):
    with pytest.raises(ValueError, match="threshold|det_size"):
        detection.check_settings(**settings)


def test_tiled_frame_finds_faces_across_tile_edges_and_boxes_are_clean(astronaut):
    frame, truth = big_canvas(astronaut)
    assert detection.plan(*frame.shape[:2]).tiled
    found = detection.CenterFaceDetector(threads=2).detect(frame)
    assert len(found) == len(truth), found.boxes
    for box in truth:
        assert max(_iou(box, b) for b in found.boxes) > 0.7
    b = found.boxes
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= frame.shape[1]).all() and (b[:, 3] <= frame.shape[0]).all()
    assert ((b[:, 2] - b[:, 0]) >= 1).all() and ((b[:, 3] - b[:, 1]) >= 1).all()
    assert found.landmarks.shape == (len(b), 10)
    eyes = found.landmarks[:, :4].reshape(-1, 2, 2)  # both eyes inside their face box
    assert ((eyes[..., 0] >= b[:, None, 0]) & (eyes[..., 0] <= b[:, None, 2])).all()


@pytest.mark.shared
def test_a_large_portrait_gives_one_face_not_fragments():
    frame = read_rgb(shared_faces_dir() / PORTRAIT)
    found = detection.CenterFaceDetector(threads=2).detect(frame)
    assert len(found) == 1 and found.scores[0] >= detection.DEFAULT_GENERATE_THRESHOLD
    x1, y1, x2, y2 = found.boxes[0]
    assert (x2 - x1) > 300 and (y2 - y1) > 400  # the whole face, not a part of it


@pytest.mark.parametrize("photo", ["identities/deepface_person_11/4.jpg", "identities/deepface_person_11/5.jpg"])
def test_a_close_up_boxed_in_parts_gives_one_face(photo):
    """CenterFace boxes these close-ups three times, each box on part of the face and overlapping the others too
    little for NMS; every box but the largest has its nose inside another's eyes-and-mouth quadrilateral."""
    frame = read_rgb(shared_faces_dir() / photo)
    found = detection.CenterFaceDetector(threads=2).detect(frame)
    assert len(found) == 1 and (found.boxes[0, 2] - found.boxes[0, 0]) > 450


def test_faces_side_by_side_and_overlapping_are_kept():
    """The rule drops only a box whose nose lies in another face's middle: faces that touch or overlap (a crowd, a
    head in front of another) are all kept, and so is every hand-labelled face of the shared scenes."""
    def face(x, y, side):  # a frontal face's box and five points
        box = np.float32([x, y, x + side, y + side])
        marks = np.float32([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.78], [0.65, 0.78]]) * side + [x, y]
        return box, marks.ravel()

    boxes, marks = zip(*[face(0, 0, 100), face(70, 10, 80), face(60, 50, 60)])
    assert not detection.decode.same_face_parts(np.stack(boxes), np.stack(marks)).any()
    boxes, marks = zip(face(0, 0, 100), face(30, 30, 50))  # the second's nose (55, 60) lies in the first's middle
    assert detection.decode.same_face_parts(np.stack(boxes), np.stack(marks)).tolist() == [False, True]
    labels = {}  # the hand-labelled faces of the shared scenes (dlib's training.xml): every one still found
    for row in csv.DictReader((shared_faces_dir() / "scenes" / "face_boxes.csv").open()):
        x, y, w, h = (float(row[k]) for k in ("left", "top", "width", "height"))
        labels.setdefault(row["file"], []).append([x, y, x + w, y + h])
    detector = detection.CenterFaceDetector(threads=2)
    for name, truth in labels.items():
        found = detector.detect(read_rgb(shared_faces_dir() / name))
        assert all(max(_iou(np.float32(t), b) for b in found.boxes) > 0.4 for t in truth), name


def test_server_detects_a_tiled_frame_end_to_end(client, astronaut):
    frame, truth = big_canvas(astronaut)
    result, boxes, blurred = infer(client, frame)
    assert len(boxes) + len(blurred) == len(truth), (boxes, blurred)
    for box in truth:
        assert max(_iou(box, b) for b in np.concatenate([boxes, blurred])) > 0.7
        assert np.abs(box_region(result, box) - box_region(frame, box)).mean() > 12
    untouched = outside_windows(frame.shape, boxes, blurred)
    assert np.array_equal(result[untouched], frame[untouched])


def test_per_request_threshold_and_det_size(client, astronaut):
    _, boxes, blurred = infer(client, astronaut)
    assert len(boxes) == 1 and len(blurred) == 0
    _, boxes, blurred = infer(client, astronaut, THRESHOLD=0.99, DET_SIZE=256)
    assert len(boxes) + len(blurred) == 0  # nothing is that sure
    _, boxes, _ = infer(client, astronaut, DET_SIZE=256)  # the face, found by the 256 px pass as well
    assert len(boxes) == 1


@pytest.mark.parametrize("name, value, dtype", [("THRESHOLD", 0.0, "FP32"), ("THRESHOLD", 2.0, "FP32"),
                                                ("DET_SIZE", 16, "INT32"), ("DET_SIZE", 99999, "INT32"),
                                                ("GENERATE_THRESHOLD", -1.0, "FP32")])
def test_out_of_range_settings_are_a_clear_error_through_the_server(client, astronaut, name, value, dtype):
    array = np.asarray([value], np.float32 if dtype == "FP32" else np.int32)
    with pytest.raises(InferenceServerException, match="(?i)threshold|det_size"):
        client.infer("deid_mobileunet", [tensor("FRAME", astronaut, "UINT8"), tensor(name, array, dtype)])
    assert len(infer(client, astronaut)[1]) == 1  # and the server keeps serving


def test_low_confidence_faces_are_blurred_not_generated(client, astronaut):
    generated, _, _ = infer(client, astronaut)
    result, boxes, blurred = infer(client, astronaut, GENERATE_THRESHOLD=1.0)  # no detection is that sure
    assert len(boxes) == 0 and len(blurred) == 1
    np.testing.assert_allclose(blurred[0], ASTRONAUT_FACE, atol=1.0)
    face = box_region(result, blurred[0])
    original = box_region(astronaut, blurred[0])
    assert np.abs(face - original).mean() > 12  # anonymised ...
    assert not np.array_equal(result, generated)  # ... by blurring, not by the generator
    # a box blur leaves little high-frequency detail inside the face
    assert np.abs(np.diff(face, axis=1)).mean() < 0.5 * np.abs(np.diff(original, axis=1)).mean()


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_split_sends_small_and_unsure_faces_to_the_blur_tier():
    boxes = np.float32([[0, 0, 100, 120], [0, 0, 20, 40], [0, 0, 60, 31.5], [0, 0, 80, 80]])
    found = detection.Detections(boxes, np.float32([0.9, 0.9, 0.9, 0.3]), np.zeros((4, 10), np.float32))
    generate, blur = found.split(0.5)  # MIN_GENERATE_SIDE = 32: the 20 px and 31.5 px faces are blurred
    assert detection.MIN_GENERATE_SIDE == 32
    np.testing.assert_array_equal(generate.boxes, boxes[:1])
    np.testing.assert_array_equal(blur.boxes, boxes[1:])
    generate, blur = found.split(0.5, min_side=0)  # 0: every confident face is generated
    assert len(generate) == 3 and len(blur) == 1
    with pytest.raises(ValueError, match="min_generate_side"):
        stages.min_generate_side({"min_generate_side": "-1"})


def test_a_face_too_small_to_generate_is_blurred_and_counted(client, astronaut):
    small = cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)  # face about 28x35 px
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[200:328, 300:428] = small
    result, boxes, blurred = infer(client, frame)
    assert len(boxes) == 0 and len(blurred) == 1, (boxes, blurred)
    assert min(blurred[0][2] - blurred[0][0], blurred[0][3] - blurred[0][1]) < detection.MIN_GENERATE_SIDE
    assert np.abs(box_region(result, blurred[0]) - box_region(frame, blurred[0])).mean() > 5
    untouched = outside_windows(frame.shape, boxes, blurred)
    assert np.array_equal(result[untouched], frame[untouched])


def test_full_size_caps_the_full_resolution_pass_and_boxes_stay_in_frame_pixels(astronaut):
    frame, truth = big_canvas(astronaut)  # 2600x3400: tiled at native resolution
    # The cap yields to min_face: 24 px faces need two thirds of the frame's size (2267 px: two tiles), 128 px faces
    # do not.
    image, small = stages.detector_inputs(frame, 384, full_size=768)
    assert image.shape == (2, 3, 1760, 1280) and small.shape == (1, 3, 320, 384)
    image, small = stages.detector_inputs(frame, 384, full_size=768, min_face=128)
    assert image.shape == (1, 3, 608, 768) and small.shape == (1, 3, 320, 384)
    detector = detection.CenterFaceDetector(threads=2)
    maps = tuple(detector.run(image)), tuple(detector.run(small))
    _, boxes, blurred, _, _ = stages.prep_detected(frame, *maps, 128, det_size=384, full_size=768, min_face=128)
    found = np.concatenate([boxes, blurred])
    assert len(found) == len(truth)
    for box in truth:
        assert max(_iou(box, b) for b in found) > 0.6
    with pytest.raises(ValueError, match="HEATMAP|maps"):  # face_prep and detect_prep must agree on full_size
        stages.prep_detected(frame, *maps, 128, det_size=384, full_size=768)
    for bad in (100, 4096, 512.5):
        with pytest.raises(ValueError, match="full_size"):
            detection.check_full_size(bad)
    assert stages.full_size({}) == 0 and stages.full_size({"full_size": "768"}) == 768


@pytest.mark.shared
def test_a_close_up_whose_part_outscores_its_whole_gets_the_whole_face_box():
    """A selection photo zoomed into a close-up (face box about 900 px): the full-resolution pass scores a box on the
    middle of the face above the downscaled pass's box of the whole face, and NMS used to keep the part (IoU 0.41
    with the face, its cheeks and outline left out of what is replaced). The whole face's box must win: the box
    found at half the size, scaled up, is the reference."""
    frame = read_rgb(shared_faces_dir() / "identities" / "amy_adams" / "1.jpg")
    detector = detection.CenterFaceDetector(threads=2)
    box = detector.detect(frame).boxes[0]
    side = max(box[2] - box[0], box[3] - box[1])
    cx, cy, half = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 1.1 * side
    window = frame[int(max(0, cy - half)):int(cy + half), int(max(0, cx - half)):int(cx + half)]
    close_up = cv2.resize(window, None, fx=900 / side, fy=900 / side, interpolation=cv2.INTER_CUBIC)
    reference = detector.detect(cv2.resize(close_up, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)).boxes[0] * 2
    found = detector.detect(close_up)
    assert len(found) == 1 and _iou(reference, found.boxes[0]) > 0.8, (found.boxes, reference)


def test_a_part_box_gives_way_to_its_whole_face_and_a_tight_whole_face_box_does_not():
    def face(x, y, w, h):  # a frontal face's box and five points
        marks = np.float32([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.78], [0.65, 0.78]]) * [w, h] + [x, y]
        return np.float32([x, y, x + w, y + h]), marks.ravel()

    whole, part = face(0, 0, 200, 240), face(35, 40, 130, 140)  # the part leaves the whole face's mouth outside it
    boxes, marks = (np.stack(v) for v in zip(whole, part))
    keep = detection.decode.merge(boxes, np.float32([0.88, 0.9]), np.zeros(2, bool), marks)
    assert keep.tolist() == [0]  # the part scored higher, the whole face is kept
    assert detection.decode.merge(boxes, np.float32([0.4, 0.9]), np.zeros(2, bool), marks).tolist() == [1]  # unsure
    tight = face(25, 30, 150, 180)  # holds all of the loose box's eyes, nose and mouth: ordinary NMS
    boxes, marks = (np.stack(v) for v in zip(whole, tight))
    assert detection.decode.merge(boxes, np.float32([0.88, 0.9]), np.zeros(2, bool), marks).tolist() == [1]
