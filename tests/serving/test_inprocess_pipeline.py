"""facedeid.pipeline (in process) and the served ensembles return the same frame for the same input.

Both run the same stage functions and the same exported ONNX files with the same thread settings; the test goes
through the real server over gRPC on a real photo (scikit-image's astronaut, alone and pasted at six sizes), so a
step that drifts in either (box cleaning, crops, the blur tier, compose) shows up as a pixel difference.
"""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from facedeid import pipeline
from facedeid.compose import MASK_RGB
from facedeid.pipeline import Deidentifier
from facedeid.stages import GENERATOR_MAX_BATCH

from helpers import astronaut_crowd, box_region, deid, face_grid


@pytest.fixture(scope="module")
def client(triton):
    return grpcclient.InferenceServerClient(triton.grpc_url)


@pytest.fixture(scope="module")
def inprocess(exported_repo):
    return Deidentifier.from_repository(exported_repo[0], "mobileunet")


def _scene():
    return astronaut_crowd()


def test_detect_ensemble_and_pipeline_return_the_same_frame(client, inprocess, astronaut):
    for frame in (astronaut, _scene()):
        served, served_boxes = deid(client, "deid_mobileunet", frame)
        local, local_boxes = inprocess(frame)
        assert len(served_boxes) >= 1
        np.testing.assert_array_equal(local_boxes, served_boxes)
        assert not np.array_equal(local, frame)
        np.testing.assert_array_equal(local, served)


def test_boxes_ensemble_and_pipeline_agree_on_cleaning_and_crowds(client, inprocess, astronaut):
    # a box partly outside the frame, and more faces than one generator batch holds (no cap: all generated)
    frame, boxes = face_grid(astronaut[40:200, 160:290], rows=6, cols=6, cell=64, gap=24)
    boxes = np.concatenate([boxes, [[-30, -30, 20, 25]]]).astype(np.float32)
    served, served_boxes = deid(client, "deid_mobileunet_boxes", frame, boxes)
    local, local_boxes = inprocess(frame, boxes)
    assert len(served_boxes) == 37 > GENERATOR_MAX_BATCH  # the box across the edge is clipped
    np.testing.assert_array_equal(local_boxes, served_boxes)
    np.testing.assert_array_equal(local, served)
    for box in served_boxes:
        assert not (box_region(local, box).reshape(-1, 3) == MASK_RGB).all(axis=1).mean() > 0.5, "face greyed out"
    # a box with no area inside the frame is refused by both, never dropped (crops.check_boxes)
    outside = np.concatenate([boxes, [[5000, 5000, 5100, 5100]]]).astype(np.float32)
    with pytest.raises(InferenceServerException, match="outside"):
        deid(client, "deid_mobileunet_boxes", frame, outside)
    with pytest.raises(ValueError, match="outside"):
        inprocess(frame, outside)


def test_a_frame_without_faces_comes_back_unchanged_from_both(client, inprocess):
    background = np.ascontiguousarray(skimage.data.coffee())
    served, _ = deid(client, "deid_mobileunet", background)
    local, boxes = inprocess(background)
    assert len(boxes) == 0 and local is not background
    np.testing.assert_array_equal(local, served)
    np.testing.assert_array_equal(local, background)


def test_mask_is_what_compose_gives_when_no_face_could_be_generated(astronaut):
    box = np.array([[170, 50, 280, 190]], np.float32)
    masked = pipeline.mask(astronaut, box)
    assert np.array_equal(np.unique(box_region(masked, box[0]).reshape(-1, 3), axis=0), [MASK_RGB])
    assert np.array_equal(pipeline.mask(astronaut, np.zeros((0, 4), np.float32)), astronaut)


def test_boxes_ensemble_and_pipeline_refuse_the_same_box_outside_the_frame(client, inprocess, astronaut):
    # a caller box that cannot be anonymised is refused with the same message, never dropped (crops.check_boxes)
    boxes = np.array([[181.5, 58.2, 269.9, 177.8], [5000, 5000, 5100, 5100]], np.float32)
    with pytest.raises(InferenceServerException) as served:
        deid(client, "deid_mobileunet_boxes", astronaut, boxes)
    with pytest.raises(ValueError) as local:
        inprocess(astronaut, boxes)
    assert "box 1 [5000, 5000, 5100, 5100] lies outside the 512x512 frame" in str(local.value)
    assert str(local.value) in served.value.message()


def test_rotations_in_process_and_served_return_the_same_frame(client, exported_repo, astronaut):
    """A portrait turned 90 degrees with ROTATIONS: same boxes, same roll, same pixels in process and served."""
    from helpers import tensor

    frame = np.ascontiguousarray(np.rot90(astronaut, 1))
    result = client.infer("deid_mobileunet", [tensor("FRAME", frame, "UINT8"),
                                              tensor("ROTATIONS", np.int32([1]), "INT32")])
    local = Deidentifier.from_repository(exported_repo[0], "mobileunet")
    local.rotations = True
    out, boxes = local(frame)
    assert len(boxes) == 1 and result.as_numpy("ROLL").tolist() == [270.0]
    np.testing.assert_array_equal(boxes, result.as_numpy("BOXES"))
    np.testing.assert_array_equal(out, result.as_numpy("DEID_FRAME"))
