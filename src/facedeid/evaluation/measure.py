"""What the evaluation measures and with what: the models under test (served generators or local baselines),
the crop size each is scored at, the metric thresholds, and the metric networks (loaded once per process)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..baselines import METHODS
from ..data.dna import Frame

BASELINES = (*METHODS, "deface")  # computed here, not served; `deface` runs deface's own CLI
UNTOUCHED_SSIM = 0.9  # a labelled face whose crop keeps this SSIM came back structurally unchanged: a leak
FALSE_POSITIVE_IOU = 0.3  # an anonymised box overlapping no label this much is counted as a false positive
CROP_SIZE_BASELINE = 128


def parse_models(text: str) -> list[str]:
    from ..models.registry import SERVED_GENERATORS

    models = [m.strip() for m in text.split(",") if m.strip()]
    if not models:
        raise SystemExit("--model: give at least one model")
    for m in models:
        if m not in SERVED_GENERATORS and m not in BASELINES:
            raise SystemExit(f"--model: unknown model '{m}'; choose from {', '.join([*SERVED_GENERATORS, *BASELINES])}")
    if len(set(models)) != len(models):
        raise SystemExit("--model: a model is named twice")
    return models


def crop_size(model: str) -> int:
    if model in BASELINES:
        return CROP_SIZE_BASELINE
    from ..models.registry import DONOR_GENERATORS, get_spec

    if model in DONOR_GENERATORS:
        from ..ksame import SIZE

        return SIZE
    return get_spec(model).size


@dataclass
class Loaded:
    frame: Frame
    image: np.ndarray
    gt_px: np.ndarray  # [N,4] pixel boxes of the labels
    features: np.ndarray | None = None
    descriptors: np.ndarray | None = None
    orig_found: np.ndarray | None = None
    untouched: np.ndarray | None = None  # fid_eff features of the original faces (evaluation/originals.py)


# The client's metric libraries run one compute thread each. Measured on the shared 2-core machine
# (docs/benchmarks.md, "Evaluation at data-set scale"): one EfficientNet-Lite0 forward took 55 ms with one torch
# thread and 2.1 s with two (the threads wait on each other while the server's processes hold the cores), and
# fid_eff's 1280x1280 sqrtm 5.6 s with one BLAS thread against 29 s with two. The server runs beside the client, so
# its requests keep the other cores busy.
CLIENT_THREADS = 1
# Frames measured at once (evaluation/workers.py): one per core of this 2-core machine; each network keeps its one
# compute thread, so the client uses at most METRIC_THREADS cores while the server's requests run beside it.
METRIC_THREADS = 2


@lru_cache(maxsize=1)
def limit_threads() -> None:
    """BLAS (numpy/scipy) to CLIENT_THREADS threads in this process, once; torch gets as many when the image-sim
    network loads (a process whose metrics run in --workers never loads torch)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(CLIENT_THREADS)


@lru_cache(maxsize=1)
def _image_similarity():
    from ..metrics import ImageSimilarity

    limit_threads()
    return ImageSimilarity(threads=CLIENT_THREADS)


@lru_cache(maxsize=1)
def _face_recognizer():
    from ..metrics import FaceRecognizer

    return FaceRecognizer()


# `det` asks "is the replacement still clearly a face?": the confident tier's score (0.5), not the anonymisation
# threshold, so det numbers stay comparable with earlier runs.
DET_METRIC_THRESHOLD = 0.5


# `det` sees each frame shrunk as far as its smallest labelled face keeps DET_METRIC_MIN_FACE px (never enlarged):
# CenterFace finds a face of that size as surely as a larger one, so the metric does not depend on the resolution
# a set was stored at, and a 720p frame of large faces costs a fraction of its full-size pass (docs/benchmarks.md,
# "Fourth pass").
DET_METRIC_MIN_FACE = 64


def det_found(detector, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """bool [N]: which labelled faces (pixel boxes [N,4]) the `det` detector finds (IoU >= metrics.DET_IOU, one to
    one), on the frame shrunk as DET_METRIC_MIN_FACE says."""
    import cv2

    from ..metrics import match_boxes

    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if not len(boxes):
        return np.zeros(0, bool)
    h, w = frame.shape[:2]
    smallest = float(np.min(np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])))
    scale = min(1.0, DET_METRIC_MIN_FACE / max(smallest, 1e-6))
    if scale >= 1.0:
        return match_boxes(boxes, detector(frame)[0])
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    found = detector(cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA))[0]
    return match_boxes(boxes, found * np.float32([w / sw, h / sh, w / sw, h / sh]))


# The detectors here run on one ONNX Runtime thread, like the other metric libraries (CLIENT_THREADS): the same
# boxes as with two, at less CPU time per frame while the server holds the cores (docs/benchmarks.md).
@lru_cache(maxsize=1)
def _detector():
    from ..detection import CenterFaceDetector

    return CenterFaceDetector(threshold=DET_METRIC_THRESHOLD, threads=CLIENT_THREADS)


@lru_cache(maxsize=1)
def _product_detector():
    from ..detection import CenterFaceDetector

    return CenterFaceDetector(threads=CLIENT_THREADS)


# Metric threads ask for a network at the same moment: one loads it, the other waits for that one (two exports of
# the image-sim network at once would share the PyTorch exporter's global state).
_LOADING = threading.Lock()


class Measurers:
    """The metric networks, loaded on first use (once per process, whichever thread asks first)."""

    @property
    def sim(self):
        with _LOADING:
            return _image_similarity()

    @property
    def rec(self):
        with _LOADING:
            return _face_recognizer()

    @property
    def det(self):
        """The detector of the `det` metric."""
        with _LOADING:
            return _detector()

    @property
    def product_det(self):
        """The product's detector with its defaults: the boxes blur/mosaic use in --boxes detect."""
        with _LOADING:
            return _product_detector()
