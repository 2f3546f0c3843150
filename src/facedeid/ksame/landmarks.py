"""The five landmarks ksame aligns its average by: CenterFace (the served detector's network) on each face crop."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

LANDMARK_SIDE = 256  # crops are upscaled for CenterFace: landmarks on a 32x32 heatmap are too coarse
LANDMARK_MIN_SCORE = 0.1  # weaker peaks: keep the standard face position instead


class Landmarks:
    """CenterFace (the served detector's network) on face crops -> five landmarks of the face nearest the centre."""

    def __init__(self, model: bytes | str | Path | None = None, threads: int = 1):
        from ..onnx_runtime import cpu_session

        if model is None:
            from ..detection import dynamic_model_bytes

            model = dynamic_model_bytes()
        session = cpu_session(model, threads, spin=False)
        inputs, outputs = session.get_inputs()[0].name, [o.name for o in session.get_outputs()]
        # CenterFace's four maps for a blob; facedeid.runtime_torch swaps in its PyTorch detector here
        self.maps = lambda blob: session.run(outputs, {inputs: blob})

    def __call__(self, crops: np.ndarray, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """crops [N,S,S,3] uint8 RGB -> (landmarks [N,5,2] float in crop pixels, score [N])."""
        n, side = len(crops), crops.shape[1]
        out = np.zeros((n, 5, 2), np.float64)
        score = np.zeros(n, np.float64)
        k = LANDMARK_SIDE / side
        for start in range(0, n, batch):
            part = crops[start : start + batch]
            blob = np.stack([cv2.resize(c, (LANDMARK_SIDE, LANDMARK_SIDE), interpolation=cv2.INTER_LINEAR)
                             for c in part]).transpose(0, 3, 1, 2).astype(np.float32)
            heat, scale, offset, lms = self.maps(blob)
            for j in range(len(part)):
                out[start + j], score[start + j] = _decode_central(heat[j], scale[j], offset[j], lms[j])
        out /= k
        return out, score


def _decode_central(heat, scale, offset, lms) -> tuple[np.ndarray, float]:
    """Landmarks of the strongest peak, weighted towards the crop centre (neighbours' faces sit at the edges)."""
    from ..detection import decode_cells

    h, w = heat.shape[1:]
    ys, xs = np.mgrid[0:h, 0:w]
    dist = np.hypot((xs + 0.5) / w - 0.5, (ys + 0.5) / h - 0.5)
    y, x = np.unravel_index(np.argmax(heat[0] * np.exp(-(dist / 0.3) ** 2)), (h, w))
    _, score, marks = decode_cells(heat, scale, offset, lms, np.array([y]), np.array([x]))
    return marks[0].reshape(5, 2).astype(np.float64), float(score[0])


