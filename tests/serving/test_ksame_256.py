"""ksame's own 256 px served path and `--cover head`, through a real Triton server: a large face comes back sharper
than through the 128 px crops every other generator uses, and `facedeid run --cover head` replaces the forehead and
hair that `--cover face` leaves as they were."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from facedeid import metrics as M
from facedeid.client.cli import main as run_main
from facedeid.detection import CenterFaceDetector
from facedeid.ksame import KSame
from facedeid.models.registry import KSAME_CROP_SIZE
from facedeid.pipeline import Deidentifier

from helpers import read_rgb, tensor

DONOR = 5  # one bank average for every request here, so only the crop side or the cover differs


@pytest.fixture(scope="module")
def client(triton):
    return grpcclient.InferenceServerClient(triton.grpc_url)


def served(client, frame, boxes, cover=None):
    inputs = [tensor("FRAME", frame, "UINT8"), tensor("BOXES_IN", np.float32(boxes).reshape(-1, 4), "FP32"),
              tensor("DONOR", np.full(len(boxes), DONOR, np.int32), "INT32")]
    if cover is not None:
        inputs.append(tensor("COVER", np.int32([cover]), "INT32"))
    return client.infer("deid_ksame_boxes", inputs).as_numpy("DEID_FRAME")


def in_process(frame, boxes, side, cover="face"):
    generator = KSame(cover=cover)
    return Deidentifier(None, lambda crops: generator(crops, np.full(len(crops), DONOR)), side)(frame, boxes)[0]


def test_a_large_face_comes_back_through_the_256_px_path(client, astronaut):
    """The astronaut at 3x (a 270 px face, a 380 px paint window): the served face is the 256 px pipeline's, and
    sharper than the 128 px crops made it (high-frequency energy of the box against the original's)."""
    assert KSAME_CROP_SIZE == 256
    frame = cv2.resize(astronaut, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    boxes = CenterFaceDetector().detect(frame).boxes[:1]
    assert boxes[0, 2] - boxes[0, 0] > 250
    out = served(client, frame, boxes)
    at_256, at_128 = in_process(frame, boxes, 256), in_process(frame, boxes, 128)
    assert np.abs(out.astype(int) - at_256).max() <= 1, "the served face is not the 256 px pipeline's"
    assert np.abs(out.astype(float) - at_128).mean() > 0.1, "the served face is still the 128 px pipeline's"
    sharpness = {name: M.sharpness(image, boxes[0], None) / M.sharpness(frame, boxes[0], None)
                 for name, image in (("served", out), ("128 px", at_128))}
    print(sharpness)
    assert sharpness["served"] > 1.2 * sharpness["128 px"], sharpness


def test_small_faces_still_come_back_replaced(client, astronaut):
    """A 40 px face is cut at 256 px too and shrunk back into its 56 px window (area-averaged): replaced, and the
    same face as the in-process pipeline."""
    frame = cv2.resize(astronaut, None, fx=1 / 3, fy=1 / 3, interpolation=cv2.INTER_AREA)
    boxes = CenterFaceDetector().detect(frame).boxes[:1]
    out = served(client, frame, boxes)
    assert np.abs(out.astype(int) - in_process(frame, boxes, 256)).max() <= 1
    x1, y1, x2, y2 = boxes[0].astype(int)
    assert np.abs(out[y1:y2, x1:x2].astype(float) - frame[y1:y2, x1:x2]).mean() > 8


def above_the_brows(frame: np.ndarray) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """(forehead and hair: from a fifth of the box above it down to 0.8 eye distances above the eyes; the inner face
    from the eyes to the box bottom), over the box's width, from CenterFace's box and landmarks."""
    found = CenterFaceDetector().detect(frame)
    (x1, y1, x2, y2), points = found.boxes[0], found.landmarks[0].reshape(5, 2)
    eyes_y, eye_distance = points[:2, 1].mean(), np.linalg.norm(points[1] - points[0])
    columns = slice(int(x1), int(x2))
    return ((slice(int(y1 - 0.2 * (y2 - y1)), int(eyes_y - 0.8 * eye_distance)), columns),
            (slice(int(eyes_y), int(y2)), columns))


def change(a: np.ndarray, b: np.ndarray, region) -> float:
    return float(np.abs(a[region].astype(float) - b[region]).mean())


def test_run_cover_head_replaces_the_forehead_and_hair_that_cover_face_keeps(triton, astronaut, tmp_path):
    source = tmp_path / "astronaut.png"
    cv2.imwrite(str(source), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    outputs = {}
    for cover in ("face", "head"):
        target = tmp_path / f"{cover}.png"
        assert run_main([str(source), str(target), "--url", triton.grpc_url, "--cover", cover,
                         "--no-progress"]) == 0
        outputs[cover] = read_rgb(target)
    forehead, inner = above_the_brows(astronaut)
    changes = {cover: (change(out, astronaut, forehead), change(out, astronaut, inner))
               for cover, out in outputs.items()}
    print(changes)
    assert changes["face"][0] < 4, "--cover face changed the forehead and hair"
    assert changes["head"][0] > 10 and changes["head"][0] > 4 * changes["face"][0], changes
    assert changes["face"][1] > 15 and changes["head"][1] > 15, "the inner face was not replaced"


def test_cover_head_is_refused_where_the_generator_has_none(client, astronaut, capsys, tmp_path):
    source = tmp_path / "a.png"
    cv2.imwrite(str(source), astronaut)
    assert run_main([str(source), "--model", "mobileunet", "--cover", "head"]) == 2
    error = capsys.readouterr().err.strip()
    assert "--cover head" in error and "ksame" in error and len(error.splitlines()) == 1, error
    assert not (tmp_path / "a_anonymized.png").exists()
    with pytest.raises(Exception, match="COVER must"):  # the server refuses a value it has no cover for
        served(client, astronaut, CenterFaceDetector().detect(astronaut).boxes[:1], cover=2)


def test_eval_cover_head_is_refused_for_a_model_without_one(tmp_path):
    from facedeid.evaluation.cli import main as eval_main

    (tmp_path / "set" / "images").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"--cover head: model mobileunet replaces the face only"):
        eval_main(["--dataset-dir", str(tmp_path / "set"), "--model", "ksame,mobileunet,blur",
                   "--output-dir", str(tmp_path / "out"), "--cover", "head"])
    assert not (tmp_path / "out").exists()
