"""What an evaluation measures on the original frames: the same for every model and every run over the same frames
(image sim features, dlib descriptors at the labels, CenterFace's `det` on the original, fid_eff features of the
untouched faces), so it is computed once and kept between runs in $FACEDEID_CACHE/eval-originals (paths.cache_dir),
one small file per frame.

A record is found by the SHA-256 of the decoded pixels, the label boxes in pixels and `SETTINGS` (the networks and
the settings these metrics use): a changed image, label or metric misses the cache and is measured again. Values read
back are the ones computed (float64/float32 as computed, one image per forward pass), so a run from the cache prints
the same numbers as one without it. --no-cache measures everything again and writes nothing here.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from ..data.dna import atomic_write_bytes
from ..paths import cache_dir
from .measure import CROP_SIZE_BASELINE, DET_METRIC_MIN_FACE, DET_METRIC_THRESHOLD, Loaded, det_found


def _settings() -> str:
    from .. import metrics as M
    from ..detection import MIN_GENERATE_SIDE

    # bump the leading version when what is measured here changes in a way these names do not show (v2: the
    # networks run in ONNX Runtime, values within float rounding of v1's)
    return (f"v2|{M.FEATURE_NETWORK}|{M.FEATURE_SIZE}|{M.FaceRecognizer.name}|centerface det {DET_METRIC_THRESHOLD} "
            f"iou {M.DET_IOU} faces >= {DET_METRIC_MIN_FACE} px|crop {CROP_SIZE_BASELINE}|"
            f"generated >= {MIN_GENERATE_SIDE}")


def key(x: Loaded) -> str:
    h = hashlib.sha256(_settings().encode())
    h.update(np.asarray(x.image.shape, np.int64).tobytes())
    h.update(np.ascontiguousarray(x.image).tobytes())
    h.update(np.asarray(x.gt_px, np.float64).tobytes())
    return h.hexdigest()


class Cache:
    """Records of measured originals under `folder` (None: a cache that finds nothing and keeps nothing)."""

    def __init__(self, folder: Path | None):
        import threading

        self.folder = None if folder is None else Path(folder)
        self.hits = self.misses = 0
        self._count = threading.Lock()  # frames are measured in threads (evaluation/workers.py)

    @classmethod
    def default(cls, enabled: bool = True) -> Cache:
        return cls(cache_dir("eval-originals") if enabled else None)

    def _path(self, k: str) -> Path:
        return self.folder / k[:2] / f"{k}.npz"

    def load(self, x: Loaded, k: str) -> bool:
        """Fill x's original-frame values from the cache; False (x unchanged) when there is no usable record."""
        if self.folder is None:
            return False
        path = self._path(k)
        try:
            with np.load(path) as data:
                record = {name: data[name] for name in data.files}
        except (OSError, ValueError, EOFError):  # absent, or torn by a crash: measured again
            with self._count:
                self.misses += 1
            return False
        x.features = record["features"]
        if len(x.gt_px):
            x.descriptors, x.orig_found, x.untouched = record["descriptors"], record["orig_found"], record["untouched"]
        with self._count:
            self.hits += 1
        return True

    def store(self, x: Loaded, k: str) -> None:
        if self.folder is None:
            return
        arrays = {"features": x.features}
        if len(x.gt_px):
            arrays.update(descriptors=x.descriptors, orig_found=x.orig_found, untouched=x.untouched)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        try:
            atomic_write_bytes(self._path(k), buffer.getvalue())
        except OSError:  # a read-only or full cache slows the next run down, it does not stop this one
            self.folder = None


def measure(ev, loaded: list[Loaded], cache: Cache) -> None:
    """x.features, and for frames with labels x.descriptors, x.orig_found and x.untouched (fid_eff features of the
    generated-size faces), from the cache or measured now."""
    from ..crops import extract_crops
    from ..metrics import face_features
    from .realism import generated

    keys = [key(x) for x in loaded]
    todo = [(x, k) for x, k in zip(loaded, keys) if not cache.load(x, k)]
    feats = ev.measure.sim.features([x.image for x, _ in todo])
    for (x, k), feat in zip(todo, feats):
        x.features = feat
        if len(x.gt_px):
            x.descriptors = ev.measure.rec.descriptors(x.image, x.gt_px)
            x.orig_found = det_found(ev.measure.det, x.image, x.gt_px)
            crops, _ = extract_crops(x.image, x.gt_px[generated(x.gt_px)], CROP_SIZE_BASELINE)
            x.untouched = face_features(ev.measure.sim, crops)
        cache.store(x, k)
