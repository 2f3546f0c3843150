"""Faces of 24 px at any frame size and faces at any roll: in process and through the real server.

Independent labels: dlib's HOG face detector (facedeid.benchmark.large_frames.hog_faces), never CenterFace.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from facedeid import detection, stages
from facedeid.benchmark.large_frames import small_face_frame

from helpers import outside_windows, read_rgb, shared_faces_dir, tensor

needs_shared = pytest.mark.shared  # real scenes and portraits of the developers' face collection
ROLLED = "identities/bradley_cooper/1.png"  # turned 90 degrees, CenterFace alone misses this face


@pytest.fixture(scope="module")
def client(triton):
    return grpcclient.InferenceServerClient(triton.grpc_url)


def rolled_portrait(k: int = 1) -> np.ndarray:
    image = read_rgb(shared_faces_dir() / ROLLED)
    f = 640 / max(image.shape[:2])
    image = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(np.rot90(image, k))


def infer(client, model, frame, **inputs):
    tensors = [tensor("FRAME", frame, "UINT8")]
    kinds = {"ROTATIONS": ("INT32", np.int32), "BOXES_IN": ("FP32", np.float32), "ROLL_IN": ("FP32", np.float32)}
    for name, value in inputs.items():
        kind, dtype = kinds[name]
        tensors.append(tensor(name, np.asarray(value, dtype), kind))
    result = client.infer(model, tensors)
    return {o.name: result.as_numpy(o.name) for o in result.get_response().outputs}


@pytest.mark.parametrize("h, w", [(1080, 1920), (2160, 3840), (4320, 7680), (8192, 8192), (480, 640)])
def test_a_capped_full_pass_still_keeps_24px_faces(h, w):
    p = detection.plan(h, w, detection.CPU_DET_SIZE, detection.CPU_FULL_SIZE)
    assert p.smallest_face() <= detection.MIN_FACE
    assert p.tile_h <= detection.FULL_MAX_SIDE and p.tile_w <= detection.FULL_MAX_SIDE
    assert len(p.origins) <= stages.MAX_DETECTOR_IMAGES
    covered = np.zeros((p.full_h, p.full_w), bool)  # the tiles cover the (resized) frame
    for x0, y0 in p.origins:
        covered[y0 : y0 + p.tile_h, x0 : x0 + p.tile_w] = True
    assert covered.all()
    # A server that trades its small faces for speed says how small it still goes; 128 px lets the 768 cap win.
    loose = detection.plan(h, w, detection.CPU_DET_SIZE, detection.CPU_FULL_SIZE, min_face=128)
    assert loose.smallest_face() <= 128
    assert max(loose.full_h, loose.full_w) <= max(h, w, detection.CPU_FULL_SIZE + 32)
    for bad in (4, 15, 300, 24.5, float("nan")):
        with pytest.raises(ValueError, match="min_face"):
            detection.check_min_face(bad)


def test_turned_points_map_back_and_landmarks_give_the_roll():
    side = 64
    image = np.zeros((side, side), np.float32)
    image[10, 50] = 1  # pixel centre (50.5, 10.5)
    for k in range(4):
        y, x = np.argwhere(np.rot90(image, k) > 0)[0]
        back = detection.unrotate_points(np.float32([[x + 0.5, y + 0.5]]), k, side)
        np.testing.assert_allclose(back, [[50.5, 10.5]], atol=1e-4)
    upright = np.float32([[10, 10, 30, 10, 20, 20, 12, 30, 28, 30]])  # eyes above the mouth
    for k in range(4):  # the face turned k times: turning its crop back by (4 - k) stands it upright
        turned = np.stack([detection.unrotate_points(upright.reshape(5, 2), (4 - k) % 4, 40)]).reshape(1, 10)
        assert detection.roll_of(turned).tolist() == [(4 - k) % 4], k


@needs_shared
def test_rotations_find_a_face_rolled_90_degrees_in_process():
    frame = rolled_portrait(1)
    assert len(detection.CenterFaceDetector(threads=1).detect(frame)) == 0  # why the option exists
    found = detection.CenterFaceDetector(threads=1, rotations=True).detect(frame)
    assert len(found) == 1 and found.scores[0] >= detection.DEFAULT_GENERATE_THRESHOLD
    assert found.roll.tolist() == [3]  # turned 90 counter-clockwise: three more quarter turns stand it upright


@needs_shared
def test_4k_frame_of_small_real_faces_leaves_no_24px_face_unchanged(client):
    frame, raw = small_face_frame(shared_faces_dir() / "scenes", 3840, 2160, 0.4)
    sides = np.minimum(raw[:, 2] - raw[:, 0], raw[:, 3] - raw[:, 1])
    faces = raw[sides >= 24]
    assert len(faces) > 100  # dlib found many faces of 24-66 px
    out = infer(client, "deid_mobileunet", frame)  # the CPU config: full pass capped at 768 px
    result = out["DEID_FRAME"]
    unchanged = []
    for box in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        change = np.abs(result[y1:y2, x1:x2].astype(np.float32) - frame[y1:y2, x1:x2]).mean()
        if change < 2.0:
            unchanged.append((box.tolist(), round(float(change), 2)))
    assert not unchanged, f"{len(unchanged)} of {len(faces)} faces of >= 24 px left (nearly) unchanged: {unchanged}"
    untouched = outside_windows(frame.shape, out["BOXES"], out["BLUR_BOXES"])
    assert np.array_equal(result[untouched], frame[untouched])


@needs_shared
def test_a_face_rolled_90_degrees_is_found_and_replaced_upright_through_the_server(client):
    frame = rolled_portrait(1)
    plain = infer(client, "deid_mobileunet", frame)
    assert len(plain["BOXES"]) + len(plain["BLUR_BOXES"]) == 0  # missed without rotations
    out = infer(client, "deid_mobileunet", frame, ROTATIONS=[1])
    boxes, roll, result = out["BOXES"], out["ROLL"], out["DEID_FRAME"]
    assert len(boxes) == 1 and roll.tolist() == [270.0]
    x1, y1, x2, y2 = (int(v) for v in boxes[0])
    assert np.abs(result[y1:y2, x1:x2].astype(np.float32) - frame[y1:y2, x1:x2]).mean() > 12
    untouched = outside_windows(frame.shape, boxes, out["BLUR_BOXES"])
    assert np.array_equal(result[untouched], frame[untouched])
    # The generated face was pasted at the face's roll: turned back upright, the plain detector finds an upright face
    upright = detection.CenterFaceDetector(threads=1).detect(np.ascontiguousarray(np.rot90(result, -1)))
    assert len(upright) >= 1 and detection.roll_of(upright.landmarks[:1]).tolist() == [0]
    # The boxes ensemble takes the roll back (tracking re-sends it) and paints the same frame; without ROLL_IN the
    # face is taken as upright, as before this input existed.
    given = infer(client, "deid_mobileunet_boxes", frame, BOXES_IN=boxes, ROLL_IN=roll)
    assert np.array_equal(given["DEID_FRAME"], result) and given["ROLL"].tolist() == [270.0]
    assert not np.array_equal(infer(client, "deid_mobileunet_boxes", frame, BOXES_IN=boxes)["DEID_FRAME"], result)


def test_bad_roll_and_rotations_are_clear_errors_through_the_server(client, astronaut):
    from tritonclient.utils import InferenceServerException

    box = np.float32([[182, 58, 270, 178]])
    with pytest.raises(InferenceServerException, match="ROLL_IN must be multiples of 90"):
        infer(client, "deid_mobileunet_boxes", astronaut, BOXES_IN=box, ROLL_IN=[45])
    with pytest.raises(InferenceServerException, match=r"ROLL_IN must have shape \[1\]"):
        infer(client, "deid_mobileunet_boxes", astronaut, BOXES_IN=box, ROLL_IN=[90, 90])
    with pytest.raises(InferenceServerException, match="ROTATIONS must be 0 or 1"):
        infer(client, "deid_mobileunet", astronaut, ROTATIONS=[2])
    out = infer(client, "deid_mobileunet", astronaut, ROTATIONS=[1])  # an upright face stays upright
    assert len(out["BOXES"]) == 1 and out["ROLL"].tolist() == [0.0]


def test_the_run_names_the_smallest_face_a_server_guarantees(triton):
    from facedeid.client.detection_settings import face_prep_parameters, smallest_face_note

    params = face_prep_parameters(triton.grpc_url, headers=triton.admin_headers)
    assert params is not None and params["min_face"] == str(detection.MIN_FACE) and params["rotations"] == "0"
    assert smallest_face_note(params) is None  # the committed configs keep 24 px faces: nothing to say
    note = smallest_face_note({**params, "min_face": "48"})
    assert "48 px" in note and "smaller faces may be left unchanged" in note
    assert face_prep_parameters(triton.grpc_url, headers={"triton-grpc-protocol-admin-key": "wrong"}) is None


@needs_shared
def test_facedeid_run_finds_a_rolled_face_in_an_image_by_default(triton, tmp_path):
    """`facedeid run` on a still: --rotations auto is on for images, so the sideways face is replaced; off, the
    detector alone misses it and the file comes back as it was."""
    from PIL import Image

    from facedeid.client import cli as run_cli

    frame = rolled_portrait(1)
    src = tmp_path / "sideways.png"
    Image.fromarray(frame).save(src)
    assert run_cli.main([str(src), str(tmp_path / "auto.png"), "--url", triton.grpc_url, "--no-progress"]) == 0
    assert run_cli.main([str(src), str(tmp_path / "off.png"), "--url", triton.grpc_url, "--no-progress",
                         "--rotations", "off"]) == 0
    auto = np.asarray(Image.open(tmp_path / "auto.png").convert("RGB"))
    off = np.asarray(Image.open(tmp_path / "off.png").convert("RGB"))
    assert np.array_equal(off, frame)
    assert np.abs(auto.astype(np.float32) - frame).mean() > 2
