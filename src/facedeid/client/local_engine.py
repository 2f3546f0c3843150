"""`facedeid run --local`: the client's engine interface (map / infer / wait_ready / close, as DeidClient) over the
served stages in this process on PyTorch (facedeid.runtime_torch), so the media code runs the same without a server."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..runtime_torch import deidentifier, pick_device
from .triton import DeidError


class LocalResult:
    def __init__(self, frame: np.ndarray, boxes: np.ndarray, blurred: np.ndarray, latency_s: float):
        self.frame, self.boxes, self.blurred, self.latency_s = frame, boxes, blurred, latency_s
        self.url = "local"


class LocalEngine:
    """The client's engine interface (map / infer / wait_ready / close, as DeidClient) over an in-process
    Deidentifier: `facedeid run --local`. Ensemble names pick the mode: `..._boxes` means the caller's boxes."""

    def __init__(self, name: str, device: str | None = None, **settings):
        self.device = pick_device(device)
        self.deid = deidentifier(name, self.device, **{k: v for k, v in settings.items() if v is not None})

    def infer(self, model: str, frame: np.ndarray, boxes: np.ndarray | None = None) -> LocalResult:
        """One frame; a frame that cannot be done raises DeidError with the reason, as the server client does."""
        t0 = time.perf_counter()
        try:
            out, used, blurred = self.deid.deidentify(frame, boxes if model.endswith("_boxes") else None)
        except Exception as exc:  # noqa: BLE001 - the caller reports the frame and never writes it
            raise DeidError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
        return LocalResult(out, used, blurred, time.perf_counter() - t0)

    def map(self, model: str, items: Iterable[Any], to_request: Callable[[Any], tuple],
            window: int | None = None) -> Iterator[tuple[Any, Any]]:
        for item in items:
            frame, boxes = to_request(item)
            try:
                yield item, self.infer(model if boxes is None else f"{model}_boxes", frame, boxes)
            except Exception as exc:  # noqa: BLE001 - handed to the caller per frame, as DeidClient.map does
                yield item, exc

    def wait_ready(self, *_a, **_k) -> list[str]:
        return []

    def close(self) -> None:
        pass
