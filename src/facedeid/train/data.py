"""Face-crop datasets for training: DNA layout or plain photo folders -> cached uint8 crops made by facedeid.crops.

* DNA layout: `DIR/images/**/<stem>.jpg|png` with `DIR/labels/<same sub-path>/<stem>.txt` (YOLO lines
  `cls xc yc w h`, normalised; a missing label file means "no faces").
* Plain folder: every `*.jpg|*.jpeg|*.png` below DIR; faces are found with `CenterFaceDetector` (the served detector).

Crops come from `facedeid.crops.extract_crops`, exactly what the server feeds the generator. Detection on CPU is slow
(~30 ms per image), so the crops are computed once per (dataset, size) and cached as `.npy` (memory-mapped when read).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..crops import extract_crops
from ..data.dna import IMAGE_EXTS, ImageError, boxes_to_pixels, read_image, scan_dataset

MIN_FACE_PX = 16  # faces smaller than this (longest side, pixels) carry nothing to learn from
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    from ..paths import cache_dir

    return cache_dir("crops")


def list_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def is_dna_layout(dataset_dir: Path) -> bool:
    return (dataset_dir / "images").is_dir()


def read_rgb(path: Path) -> np.ndarray | None:
    """RGB uint8 frame, or None for a file that is not a readable image (skipped, not fatal, in training)."""
    try:
        return read_image(path)
    except ImageError:
        return None


def dna_boxes(dataset_dir: Path) -> dict[Path, np.ndarray]:
    """Normalised label boxes per image of a DNA-layout set, read by the evaluation's own parser (facedeid.data)."""
    boxes = {}
    for frame in scan_dataset(dataset_dir):
        if frame.error:
            print(f"training: skipping {frame.image_path}: {frame.error}")
            continue
        boxes[frame.image_path] = frame.boxes_norm
    return boxes


def split_is_val(key: str, val_percent: float) -> bool:
    """Deterministic split by source file (UTKFace has no identity labels, so split by file)."""
    return (zlib.crc32(key.encode()) % 10000) < val_percent * 100


def _fingerprint(dataset_dir: Path, files: list[Path], size: int) -> str:
    h = hashlib.sha1(f"v{CACHE_VERSION}|{dataset_dir.resolve()}|{size}|{len(files)}".encode(), usedforsecurity=False)
    for f in files:
        st = f.stat()
        h.update(f"{f}|{st.st_size}|{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


@dataclass
class CropSet:
    crops: np.ndarray  # [N,S,S,3] uint8 (possibly memory-mapped)
    sources: list[str]  # per crop: image path relative to the dataset dir
    is_val: np.ndarray  # [N] bool
    cache: Path | None = None  # the crop cache directory (None: built without cache); derived caches live there
    targets: np.ndarray | None = None  # [N,S,S,3] uint8 training targets, None: the crops themselves

    def __len__(self) -> int:
        return len(self.crops)

    def indices(self, val: bool) -> np.ndarray:
        return np.nonzero(self.is_val == val)[0]


def build_crops(dataset_dir: Path, size: int, detector=None, progress: bool = True,
                max_images: int | None = None) -> tuple[np.ndarray, list[str]]:
    """All face crops of a dataset (no caching) and the relative source path of each crop."""
    dataset_dir = Path(dataset_dir)
    dna = is_dna_layout(dataset_dir)
    image_root = dataset_dir / "images" if dna else dataset_dir
    files = list_images(image_root)[:max_images]
    if not dna and detector is None:
        from ..detection import CenterFaceDetector

        detector = CenterFaceDetector(threads=1)
    labels = dna_boxes(dataset_dir) if dna else {}
    crops, sources = [], []
    iterator = files
    if progress:
        from tqdm import tqdm

        iterator = tqdm(files, desc=f"crops {dataset_dir.name}", unit="img", mininterval=5)
    for path in iterator:
        frame = read_rgb(path)
        if frame is None:
            continue
        rel = path.relative_to(image_root)
        if dna:
            norm = labels.get(path)
            if norm is None:  # unreadable label: reported by dna_boxes
                continue
            boxes = boxes_to_pixels(norm, frame.shape[1], frame.shape[0])
        else:
            boxes, _ = detector(frame)
        if len(boxes) == 0:
            continue
        sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        boxes = boxes[sides >= MIN_FACE_PX]
        if len(boxes) == 0:
            continue
        faces, _ = extract_crops(frame, boxes, size)
        crops.append(faces)
        sources += [str(rel)] * len(faces)
    array = np.concatenate(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
    return array, sources


def load_crops(dataset_dir: str | Path, size: int, val_percent: float = 2.0, cache_dir: Path | None = None,
               use_cache: bool = True, progress: bool = True, max_images: int | None = None) -> CropSet:
    """Crops of a dataset, from the cache when the dataset has not changed since it was built."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise FileNotFoundError(f"dataset_dir {dataset_dir} is not a directory")
    image_root = dataset_dir / "images" if is_dna_layout(dataset_dir) else dataset_dir
    files = list_images(image_root)[:max_images]
    if not files:
        raise ValueError(f"no .jpg/.png images under {image_root}")
    cache = None
    if use_cache:
        cache = Path(cache_dir or default_cache_dir()) / _fingerprint(dataset_dir, files, size)
        if (cache / "meta.json").exists():
            meta = json.loads((cache / "meta.json").read_text())
            crops = np.load(cache / "crops.npy", mmap_mode="r")
            sources = meta["sources"]
        else:
            crops, sources = build_crops(dataset_dir, size, progress=progress, max_images=max_images)
            cache.mkdir(parents=True, exist_ok=True)
            tmp = cache / "crops.tmp.npy"
            np.save(tmp, crops)
            tmp.replace(cache / "crops.npy")
            (cache / "meta.json").write_text(json.dumps({"dataset_dir": str(dataset_dir.resolve()), "size": size,
                                                         "images": len(files), "sources": sources}))
    else:
        crops, sources = build_crops(dataset_dir, size, progress=progress, max_images=max_images)
    if len(crops) == 0:
        raise ValueError(f"no faces found in {dataset_dir}")
    is_val = np.array([split_is_val(s, val_percent) for s in sources], dtype=bool)
    if len(crops) > 1 and (is_val.all() or not is_val.any()):
        is_val[:] = False  # tiny datasets: keep the last crop for validation so both splits exist
        is_val[-1] = True
    return CropSet(crops, sources, is_val, cache)
