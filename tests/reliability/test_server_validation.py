"""Every model in the repository, called directly over gRPC with a bad request, answers with an error and the
server keeps serving (a good ensemble request after each). The ensembles' own bad-input cases are in
tests/serving/test_pipeline.py; the pixel limit through a lowered `max_frame_pixels` is in test_faults.py.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from facedeid import stages
from facedeid.models import GENERATORS

from helpers import ASTRONAUT_FACE, assert_deidentified, deid, tensor

S = 128  # generator crop size
F = np.zeros((64, 64, 3), np.uint8)  # a small frame for the stage models
MAP = np.zeros((1, 1, 16, 16), np.float32)  # CenterFace maps of a 64x64 detector image
MAP2 = np.zeros((1, 2, 16, 16), np.float32)
GOOD_BOX = np.array([[8, 8, 40, 40]], np.float32)
TRITON_SHAPE = "(?i)shape|dims"  # Triton's own checks against config.pbtxt
TRITON_TYPE = "(?i)data-type|datatype"


def u8(a):
    return tensor_spec(a, "UINT8")


def f32(a):
    return tensor_spec(a, "FP32")


def tensor_spec(array, dtype):
    return (array, dtype)


MAP10 = np.zeros((1, 10, 16, 16), np.float32)
SMALL = {f"{n}_SMALL": f32(np.zeros((1, c, 8, 8), np.float32)) for n, c in
         (("HEATMAP", 1), ("SCALE", 2), ("OFFSET", 2), ("LANDMARKS", 10))}  # placeholder: 64x64 needs no 2nd pass


def face_prep_inputs(frame=F, heat=MAP, scale=MAP2, offset=MAP2, heat_type="FP32", **extra):
    return {"FRAME": u8(frame), "HEATMAP": (heat, heat_type), "SCALE": f32(scale), "OFFSET": f32(offset),
            "LANDMARKS": f32(MAP10), **SMALL, **extra}


BAD = [  # (model, inputs {name: (array, Triton type)}, error message pattern)
    ("detect_prep", {"FRAME": f32(F.astype(np.float32))}, TRITON_TYPE),
    ("detect_prep", {"FRAME": u8(F[:, :, 0].copy())}, TRITON_SHAPE),
    ("detect_prep", {"FRAME": u8(np.zeros((64, 64, 4), np.uint8))}, TRITON_SHAPE),
    ("detect_prep", {"FRAME": u8(np.zeros((0, 64, 3), np.uint8))}, "empty"),
    ("face_detector", {"IMAGE": u8(np.zeros((1, 3, 64, 64), np.uint8))}, TRITON_TYPE),
    ("face_detector", {"IMAGE": f32(np.zeros((3, 64, 64), np.float32))}, TRITON_SHAPE),
    ("face_detector", {"IMAGE": f32(np.zeros((1, 4, 64, 64), np.float32))}, TRITON_SHAPE),
    ("face_detector", {"IMAGE": f32(np.zeros((1, 3, 0, 0), np.float32))}, "multiples of 32"),
    ("face_detector", {"IMAGE": f32(np.zeros((1, 3, 30, 50), np.float32))}, "multiples of 32"),
    ("face_detector", {"IMAGE": f32(np.zeros((1, 3, 32, 2080), np.float32))}, "32..2048"),
    ("face_detector", {"IMAGE": f32(np.full((1, 3, 64, 64), np.nan, np.float32))}, "NaN"),
    ("face_detector", {"IMAGE": f32(np.zeros((200, 3, 32, 32), np.float32))}, "T in 1..128"),
    ("face_prep", face_prep_inputs(heat=MAP.astype(np.uint8), heat_type="UINT8"), TRITON_TYPE),
    ("face_prep", face_prep_inputs(heat=MAP[0]), TRITON_SHAPE),
    ("face_prep", face_prep_inputs(scale=np.zeros((1, 2, 8, 8), np.float32)), "same h, w"),
    ("face_prep", face_prep_inputs(THRESHOLD=f32(np.float32([0.0]))), "threshold must be in"),
    ("face_prep", face_prep_inputs(DET_SIZE=(np.int32([100000]), "INT32")), "det_size must be"),
    ("detect_prep", {"FRAME": u8(F), "DET_SIZE": (np.int32([7]), "INT32")}, "det_size must be"),
    ("face_prep", face_prep_inputs(frame=np.zeros((0, 0, 3), np.uint8)), "empty"),
    ("face_prep", face_prep_inputs(heat=np.ones((1, 1, 16, 16), np.float32),
                                   scale=np.full((1, 2, 16, 16), np.nan, np.float32)), "NaN"),
    ("box_prep", {"FRAME": u8(F), "BOXES_IN": (GOOD_BOX.astype(np.float64), "FP64")}, TRITON_TYPE),
    ("box_prep", {"FRAME": u8(F), "BOXES_IN": f32(np.zeros((2, 5), np.float32))}, TRITON_SHAPE),
    ("box_prep", {"FRAME": u8(F), "BOXES_IN": f32(np.array([[np.inf, 0, 9, 9]], np.float32))}, "NaN or infinite"),
    ("box_prep", {"FRAME": u8(np.zeros((0, 4, 3), np.uint8)), "BOXES_IN": f32(GOOD_BOX)}, "empty"),
    ("compose", {"FRAME": u8(F), "GENERATED": f32(np.zeros((1, 3, 64, 32), np.float32)),  # any side S, but square
                 "BOXES": f32(GOOD_BOX)}, "square crops"),
    ("compose", {"FRAME": u8(F), "GENERATED": (np.zeros((1, 3, S, S), np.float16), "FP16"),
                 "BOXES": f32(GOOD_BOX)}, TRITON_TYPE),
    ("compose", {"FRAME": u8(F), "GENERATED": f32(np.zeros((1, 3, S, S), np.float32)),
                 "BOXES": f32(np.array([[0, 0, 20000, 20000]], np.float32))}, "inside the 64x64 frame"),
    ("compose", {"FRAME": u8(F), "GENERATED": f32(np.zeros((1, 3, S, S), np.float32)),
                 "BOXES": f32(np.array([[np.nan, 0, 9, 9]], np.float32))}, "NaN"),
    ("compose", {"FRAME": u8(np.zeros((64, 0, 3), np.uint8)), "GENERATED": f32(np.zeros((1, 3, S, S), np.float32)),
                 "BOXES": f32(GOOD_BOX)}, "empty"),
] + [
    case for name in GENERATORS for case in (
        (name, {"INPUT": (np.zeros((1, 3, S, S), np.float16), "FP16")}, TRITON_TYPE),
        (name, {"INPUT": f32(np.zeros((3, S, S), np.float32))}, TRITON_SHAPE),
        (name, {"INPUT": f32(np.zeros((1, 3, 64, 64), np.float32))}, TRITON_SHAPE),
        (name, {"INPUT": f32(np.zeros((0, 3, S, S), np.float32))}, "(?i)batch|empty|shape|byte size"),
        (name, {"INPUT": f32(np.zeros((33, 3, S, S), np.float32))}, "(?i)batch"),
        (f"generate_{name}", {"CROPS": f32(np.zeros((0, 3, S, S), np.float32))}, "N >= 1"),
        (f"generate_{name}", {"CROPS": f32(np.zeros((1, 3, 64, 64), np.float32))}, TRITON_SHAPE),
    )
]


@pytest.fixture(scope="module")
def client(triton):
    return grpcclient.InferenceServerClient(triton.grpc_url)


@pytest.fixture(scope="module")
def small_astronaut(astronaut):
    return cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("model, inputs, message", BAD,
                         ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(BAD)])
def test_bad_request_to_each_model_gets_an_error_and_the_server_keeps_serving(
        client, small_astronaut, model, inputs, message):
    with pytest.raises(InferenceServerException, match=message):
        client.infer(model, [tensor(name, array, dtype) for name, (array, dtype) in inputs.items()])
    assert client.is_server_live() and client.is_model_ready(model)
    box = (ASTRONAUT_FACE / 2)[None]
    result, used = deid(client, "deid_mobileunet_boxes", small_astronaut, box)
    assert_deidentified(small_astronaut, result, used, min_change=5.0)


def test_good_direct_requests_to_the_stages_work(client):
    """The bad requests above differ from these only in the one thing that is wrong."""
    images = client.infer("detect_prep", [tensor("FRAME", F, "UINT8")])
    assert images.as_numpy("IMAGE").shape == (1, 3, 64, 64)
    names = ("HEATMAP", "SCALE", "OFFSET", "LANDMARKS")
    maps = client.infer("face_detector", [tensor("IMAGE", images.as_numpy("IMAGE"), "FP32")])
    small = client.infer("face_detector", [tensor("IMAGE", images.as_numpy("IMAGE_SMALL"), "FP32")])
    crops = client.infer("face_prep", [tensor("FRAME", F, "UINT8")] + [
        tensor(n, maps.as_numpy(n), "FP32") for n in names] + [
        tensor(f"{n}_SMALL", small.as_numpy(n), "FP32") for n in names]).as_numpy("CROPS")
    assert crops.shape == (1, 3, S, S)
    generated = client.infer("generate_mobileunet", [tensor("CROPS", np.zeros((40, 3, S, S), np.float32), "FP32")])
    assert generated.as_numpy("GENERATED").shape == (40, 3, S, S)  # more crops than one generator batch
    out = client.infer("compose", [tensor("FRAME", F, "UINT8"), tensor("GENERATED", crops, "FP32"),
                                   tensor("BOXES", GOOD_BOX, "FP32")]).as_numpy("DEID_FRAME")
    assert out.shape == F.shape


def test_frame_pixel_limit_is_checked_without_allocating_the_frame():
    """The 8192x8192 limit itself (a zero-copy view with the shape: nothing of that size is allocated here)."""
    at_limit = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (8192, 8192, 3))
    assert stages.check_frame(at_limit) is at_limit
    over = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (8200, 8200, 3))
    with pytest.raises(ValueError, match=f"8200x8200 exceeds the limit of {8192 * 8192} pixels"):
        stages.check_frame(over)
    assert stages.frame_limit({}) == stages.MAX_FRAME_PIXELS
    assert stages.frame_limit({"max_frame_pixels": "1000"}) == 1000
    with pytest.raises(ValueError, match="max_frame_pixels"):
        stages.frame_limit({"max_frame_pixels": str(10 * stages.MAX_FRAME_PIXELS)})
