"""The product's face detector as a labeller of extracted frames: in process (ONNX Runtime) or through a Triton
server; both decode with the same code, so they give the same boxes."""

from __future__ import annotations

import numpy as np

from ..settings import DEFAULT_URL, NATIVE


class LocalDetector:
    """CenterFace in process (ONNX Runtime): frame RGB uint8 -> boxes [N,4] x1y1x2y2 pixels, scores [N]."""

    where = "in process (ONNX Runtime)"

    def __init__(self, threshold: float | None = None, threads: int = 0, det_size: int | None = None):
        from ..detection import CenterFaceDetector

        self.detector = CenterFaceDetector(threshold=NATIVE.threshold if threshold is None else threshold,
                                           max_side=det_size or NATIVE.det_size, threads=threads)

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.detector(frame)


class TritonDetector:
    """CenterFace through Triton: `detect_prep` (FRAME -> IMAGE, IMAGE_SMALL), `face_detector` (each -> maps),
    decoded and merged here with the served code."""

    def __init__(self, url: str = DEFAULT_URL, threshold: float | None = None, timeout: float = 60.0,
                 det_size: int | None = None):
        from ..client.triton_models import TritonModels
        self.url = url
        self.where = f"Triton at {url}"
        self.threshold = NATIVE.threshold if threshold is None else threshold
        self.det_size = det_size or NATIVE.det_size
        self.models = TritonModels(url, timeout)
        self.models.require(["detect_prep", "face_detector"],
                            " or use --local (the detector is exported by `python export/to_onnx.py`)")

    def close(self) -> None:
        self.models.close()

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from ..detection import decode_multiscale, plan

        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        image, small = self.models.infer("detect_prep", {"FRAME": frame, "DET_SIZE": np.int32([self.det_size])},
                                         ["IMAGE", "IMAGE_SMALL"])
        names = ["HEATMAP", "SCALE", "OFFSET", "LANDMARKS"]
        full_maps = self.models.infer("face_detector", {"IMAGE": image}, names)
        small_maps = self.models.infer("face_detector", {"IMAGE": small}, names)
        p = plan(frame.shape[0], frame.shape[1], self.det_size)
        if image.shape[0] != len(p.origins) or tuple(image.shape[2:]) != (p.tile_h, p.tile_w):
            # detect_prep caps the full-resolution pass (its `full_size`: the CPU config); IMAGE's long side is it
            p = plan(frame.shape[0], frame.shape[1], self.det_size, int(max(image.shape[2:])))
        found = decode_multiscale(p, tuple(full_maps), tuple(small_maps), self.threshold)
        return found.boxes, found.scores
