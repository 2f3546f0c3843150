"""The ensembles through a real Triton server over gRPC, on real photos."""

from __future__ import annotations

import concurrent.futures as futures

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from facedeid.compose import MASK_RGB
from facedeid.crops import expand_boxes
from facedeid.models import GENERATORS
from facedeid.stages import GENERATOR_MAX_BATCH

from helpers import (
    ASTRONAUT_FACE,
    assert_deidentified,
    box_region,
    deid,
    deid_detect,
    face_grid,
    read_rgb,
    shared_faces_dir,
    tensor,
)


@pytest.fixture(scope="module")
def client(triton):
    return grpcclient.InferenceServerClient(triton.grpc_url)


EXPECTED_MODELS = {"face_detector", "detect_prep", "face_prep", "box_prep", "compose"} | {
    f"{prefix}{name}{suffix}" for name in GENERATORS
    for prefix, suffix in (("", ""), ("deid_", ""), ("deid_", "_boxes"), ("generate_", ""))
}


def test_every_model_ready(client):
    assert all(client.is_model_ready(name) for name in sorted(EXPECTED_MODELS))
    print("\nREADY: " + ", ".join(sorted(EXPECTED_MODELS)))


def test_repository_and_model_control_apis_are_off_by_default(client):
    with pytest.raises(InferenceServerException, match="(?i)unavailable|restricted|header|permission"):
        client.get_model_repository_index()
    with pytest.raises(InferenceServerException):
        client.unload_model("mobileunet")
    assert client.is_model_ready("mobileunet")


@pytest.mark.parametrize("generator", list(GENERATORS))
def test_detect_ensemble_replaces_the_astronauts_face(client, astronaut, generator):
    result, boxes = deid(client, f"deid_{generator}", astronaut)
    assert boxes.shape == (1, 4)
    np.testing.assert_allclose(boxes[0], ASTRONAUT_FACE, atol=1.0)
    assert_deidentified(astronaut, result, boxes)


def test_boxes_ensemble_uses_caller_boxes(client, astronaut):
    given = np.array([[170, 50, 280, 190]], np.float32)
    result, boxes = deid(client, "deid_mobileunet_boxes", astronaut, given)
    np.testing.assert_array_equal(boxes, given)
    assert_deidentified(astronaut, result, given)


def test_zero_faces_come_back_unchanged(client):
    background = np.ascontiguousarray(np.asarray(__import__("skimage").data.coffee()))
    for model, extra in (("deid_mobileunet_boxes", np.zeros((0, 4), np.float32)), ("deid_mobileunet", None)):
        result, boxes = deid(client, model, background, extra)
        assert boxes.shape == (0, 4)
        assert np.array_equal(result, background)


def test_many_faces_in_one_frame(client, astronaut):
    face = astronaut[40:200, 160:290]
    frame, boxes = face_grid(face, rows=4, cols=5)  # 20 faces
    result, used = deid(client, "deid_mobileunet_boxes", frame, boxes)
    assert len(used) == 20
    assert_deidentified(frame, result, boxes)


def test_a_70_face_frame_gets_70_generated_faces_and_no_grey(client, astronaut, triton):
    frame, boxes = face_grid(astronaut[40:200, 160:290], rows=7, cols=10, cell=64, gap=24)  # 70 faces
    before = _generator_counts(client, "mobileunet", triton.admin_headers)[0]
    result, used = deid(client, "deid_mobileunet_boxes", frame, boxes)
    assert len(used) == 70 > GENERATOR_MAX_BATCH
    assert_deidentified(frame, result, boxes)
    for box in boxes:
        assert not (box_region(result, box).reshape(-1, 3) == MASK_RGB).all(axis=1).mean() > 0.5, "face greyed out"
    after = _generator_counts(client, "mobileunet", triton.admin_headers)[0]
    assert after - before == 70, "every face must go through the generator"


@pytest.mark.shared
def test_shared_multi_face_scene_detect(client):
    frame = read_rgb(shared_faces_dir() / "scenes" / "dlib_bald_guys.jpg")
    result, boxes, blurred = deid_detect(client, "deid_mobileunet", frame)
    assert len(boxes) >= 16
    assert_deidentified(frame, result, boxes, min_change=8.0, blurred=blurred)


def test_face_is_blended_not_pasted(client, astronaut):
    box = np.array([[170, 50, 280, 190]], np.float32)
    result, _ = deid(client, "deid_mobileunet_boxes", astronaut, box)
    x1, y1, x2, y2 = expand_boxes(box)[0]
    diff = np.abs(result.astype(np.int16) - astronaut.astype(np.int16)).max(axis=2)
    window = diff[y1:y2, x1:x2]
    side = x2 - x1
    # The outermost ring of the window is (almost) untouched, the change grows towards the face: no hard edge.
    assert window[0, :].mean() < 2 and window[:, 0].mean() < 2
    ring = window[side // 12 : side // 6, side // 3 : 2 * side // 3].mean()
    centre = window[side // 3 : 2 * side // 3, side // 3 : 2 * side // 3].mean()
    assert window[0, :].mean() < ring < centre


@pytest.mark.parametrize(
    "inputs, message",
    [
        (lambda f: [tensor("FRAME", f.astype(np.float32), "FP32")], "data-type"),
        (lambda f: [tensor("FRAME", f[:, :, 0].copy(), "UINT8")], "shape"),
        (lambda f: [tensor("FRAME", f[:, :, :2].copy(), "UINT8")], "shape"),
        (lambda f: [tensor("FRAME", np.zeros((0, 8, 3), np.uint8), "UINT8")], "empty"),
    ],
)
def test_bad_frames_get_clear_errors_and_the_server_keeps_serving(client, astronaut, inputs, message):
    with pytest.raises(InferenceServerException, match=message):
        client.infer("deid_mobileunet", inputs(astronaut))
    result, boxes = deid(client, "deid_mobileunet", astronaut)
    assert len(boxes) == 1


@pytest.mark.parametrize(
    "boxes, message",
    [(np.array([[np.nan, 0, 10, 10]], np.float32), "NaN"), (np.zeros((2, 5), np.float32), "shape")],
)
def test_bad_boxes_get_clear_errors(client, astronaut, boxes, message):
    with pytest.raises(InferenceServerException, match=message):
        client.infer("deid_mobileunet_boxes",
                     [tensor("FRAME", astronaut, "UINT8"), tensor("BOXES_IN", boxes, "FP32")])
    assert len(deid(client, "deid_mobileunet", astronaut)[1]) == 1


def _generator_counts(client, name, headers):
    stats = client.get_inference_statistics(name, as_json=True, headers=headers)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))  # JSON omits zeros


def test_concurrent_requests_are_batched_at_the_generator(client, astronaut, triton):
    before = _generator_counts(client, "resnet50unet", triton.admin_headers)

    def one(_):
        local = grpcclient.InferenceServerClient(triton.grpc_url)
        return deid(local, "deid_resnet50unet_boxes", astronaut, ASTRONAUT_FACE[None])[1]

    with futures.ThreadPoolExecutor(16) as pool:
        assert all(len(b) == 1 for b in pool.map(one, range(48)))
    after = _generator_counts(client, "resnet50unet", triton.admin_headers)
    inferences, executions = (a - b for a, b in zip(after, before))
    assert inferences == 48
    assert executions < inferences, f"{executions} executions for {inferences} crops: no dynamic batching"
