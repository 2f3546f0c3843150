"""What the de-identification ensembles answer, as the client hands it on: `DeidResult` (a frame), `Detections`
(`detect_faces`), and the checks every reply passes first (an empty, wrong-shaped or short output is an error,
never passed on as a result)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .grpc_backend import DeidError


@dataclass
class DeidResult:
    frame: np.ndarray  # de-identified frame, uint8 [H,W,3]
    boxes: np.ndarray  # float32 [N,4] pixel boxes of the faces the server replaced
    latency_s: float  # wall time of the successful request
    url: str
    attempts: int = 1
    # float32 [K,4] low-confidence faces the server blurred instead (detect mode; with caller boxes: those sent blurred)
    blurred: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    donors: np.ndarray | None = None  # int [N]: the donor each box got, from generators with one (ksame's DONOR_USED)


@dataclass
class Detections:
    """What `detect_faces` found in a frame: the generate tier, the blur tier, and the landmarks of the first."""
    boxes: np.ndarray  # float32 [N,4] confident faces (GENERATE_THRESHOLD and size)
    blurred: np.ndarray  # float32 [K,4] low-confidence or small faces
    landmarks: np.ndarray  # float32 [N,10]
    roll: np.ndarray | None = None  # float32 [N] degrees each face's crop is turned to stand it upright


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """[K,4] boxes clipped to the frame (compose refuses blur boxes outside it); ones left empty are dropped."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]


def detections_of(out: dict) -> Detections:
    def rows(name: str, width: int) -> np.ndarray:
        value = out.get(name)
        return np.zeros((0, width), np.float32) if value is None else np.asarray(value, np.float32).reshape(-1, width)

    boxes = rows("BOXES", 4)
    roll = out.get("ROLL")
    roll = np.zeros(len(boxes), np.float32) if roll is None else np.asarray(roll, np.float32).reshape(-1)
    return Detections(boxes, rows("BLUR_BOXES", 4), rows("LANDMARKS", 10), roll)


def check_reply(out: dict, frame: np.ndarray, url: str, given: int | None = None) -> DeidResult:
    deid = out.get("DEID_FRAME")
    boxes = out.get("BOXES")
    if deid is None or deid.dtype != np.uint8 or deid.shape != frame.shape:
        shape = None if deid is None else f"{list(deid.shape)} {deid.dtype}"
        raise DeidError(f"server {url} returned DEID_FRAME {shape}, expected {list(frame.shape)} uint8")
    if boxes is None:
        boxes = np.zeros((0, 4), np.float32)
    boxes = np.asarray(boxes, np.float32)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DeidError(f"server {url} returned BOXES of shape {list(boxes.shape)}, expected [N, 4]")
    if given is not None and len(boxes) != given:  # a dropped box is a face that may have come back untouched
        raise DeidError(f"server {url} returned {len(boxes)} BOXES for the {given} boxes sent")
    blurred = out.get("BLUR_BOXES")
    blurred = np.zeros((0, 4), np.float32) if blurred is None else np.asarray(blurred, np.float32).reshape(-1, 4)
    return DeidResult(np.asarray(deid), boxes, 0.0, url, blurred=blurred)
