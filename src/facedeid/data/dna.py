"""The DNA data-set layout: images, YOLO-style face labels, area bins, and robust image reading.

```
<root>/images/<any sub-path>/<stem>.jpg|png|...
<root>/labels/<same sub-path>/<stem>.txt      one face per line: class x_center y_center width height (0..1)
```
A missing label file means "no faces". A label file that does not parse, or holds more faces than one frame may
carry (MAX_LABEL_FACES), marks that frame (Frame.error) so the caller can report file and line and skip the
frame, never the whole run.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..crops import MAX_BOXES_PER_FRAME
from .files import atomic_write_bytes

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
BINS = ("10", "30", "50", "70", "70above")
BIN_EDGES = (0.10, 0.30, 0.50, 0.70)  # upper bounds (inclusive) of the first four bins
MAX_PIXELS = 50_000_000  # frames above 50 megapixels are refused (decode would need > 150 MB per frame)
COORD_TOLERANCE = 1e-3  # label coordinates may overshoot [0, 1] by this much (rounding in label tools)
MAX_LABEL_FACES = MAX_BOXES_PER_FRAME  # faces per label file: what the server accepts in one request
# A label line is about 40 bytes ("0 0.512345 0.512345 0.012345 0.012345"); allow 256 per face, so a file is
# refused from its size before it is read or parsed (a 10 MB file of 500,000 faces costs nothing).
LABEL_BYTES_PER_FACE = 256


class LabelError(ValueError):
    """A label file line that does not parse; names the file and the 1-based line."""

    def __init__(self, path, line: int, reason: str):
        self.path = Path(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{self.path}:{line}: {reason}")


class ImageError(ValueError):
    """An image that cannot be used as a frame; the message is one line naming the file."""

    def __init__(self, path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def area_bin(share: float) -> str:
    """Bin name for a total face area share (face area / frame area): 10 (<= .10), 30, 50, 70, 70above."""
    share = float(share)
    if not math.isfinite(share) or share < 0:
        raise ValueError(f"face area share must be a finite number >= 0, got {share}")
    for edge, name in zip(BIN_EDGES, BINS):
        if share <= edge:
            return name
    return BINS[-1]


def read_labels(path, max_faces: int = MAX_LABEL_FACES) -> np.ndarray:
    """Label file -> float32 [N,5] rows (class, x_center, y_center, width, height). Blank lines are ignored.

    Raises LabelError (file and line) for a wrong field count, a non-number, NaN/inf, a negative class, a
    non-positive width/height, a coordinate outside [0, 1], or more than `max_faces` faces (the file is not even
    read past max_faces * LABEL_BYTES_PER_FACE bytes).
    """
    path = Path(path)
    max_bytes = max_faces * LABEL_BYTES_PER_FACE
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise LabelError(path, 1, f"label file over {max_bytes} bytes: more than the {max_faces} faces one frame "
                                  f"may carry")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LabelError(path, 1, f"not UTF-8 text ({exc.reason})") from None
    rows = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if len(rows) == max_faces:
            raise LabelError(path, number, f"more than {max_faces} faces: the limit for one frame")
        parts = line.split()
        if len(parts) != 5:
            raise LabelError(path, number, f"expected 5 fields 'class xc yc w h', got {len(parts)}: {line[:60]!r}")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise LabelError(path, number, f"not a number in {line[:60]!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise LabelError(path, number, f"NaN or infinite value in {line[:60]!r}")
        cls, xc, yc, w, h = values
        if cls < 0 or cls != int(cls):
            raise LabelError(path, number, f"class must be a non-negative integer, got {parts[0]!r}")
        if w <= 0 or h <= 0:
            raise LabelError(path, number, f"width and height must be > 0, got {parts[3]} {parts[4]}")
        lo, hi = -COORD_TOLERANCE, 1 + COORD_TOLERANCE
        if not all(lo <= v <= hi for v in (xc, yc, w, h)):
            raise LabelError(path, number, f"coordinates must be in [0, 1], got {' '.join(parts[1:])}")
        if not (lo <= xc - w / 2 and xc + w / 2 <= hi and lo <= yc - h / 2 and yc + h / 2 <= hi):
            raise LabelError(path, number, f"box leaves the frame: {' '.join(parts[1:])}")
        rows.append(values)
    return np.asarray(rows, dtype=np.float32).reshape(-1, 5)


@dataclass
class Frame:
    key: str  # path under images/ without extension, '/'-separated: the frame's identity in every output
    image_path: Path
    label_path: Path | None  # None when the frame has no label file (= no faces)
    boxes_norm: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # [N,4] xc, yc, w, h
    error: str | None = None  # set when the label does not parse: the frame is reported and skipped

    @property
    def n_faces(self) -> int:
        return int(len(self.boxes_norm))

    @property
    def area_share(self) -> float:
        return face_area_share(self.boxes_norm)

    @property
    def bin(self) -> str | None:
        """Area bin, or None for a frame without faces (those are counted apart from the bins)."""
        return area_bin(self.area_share) if self.n_faces else None


def scan_dataset(root) -> list[Frame]:
    """All frames under root/images (nested sub-folders), sorted by key, with their labels read."""
    root = Path(root)
    images = root / "images"
    if not images.is_dir():
        raise FileNotFoundError(f"{root} is not a DNA-format data set: no images/ folder (see docs/evaluation.md)")
    labels = root / "labels"
    frames: dict[str, Frame] = {}
    for dirpath, dirnames, filenames in os.walk(images):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() not in IMAGE_EXTS or name.startswith("."):
                continue
            rel = path.relative_to(images).with_suffix("")
            key = rel.as_posix()
            label_path = labels / rel.parent / f"{rel.name}.txt"  # not with_suffix: stems may contain dots
            frame = Frame(key, path, label_path if label_path.is_file() else None)
            if key in frames:  # a.jpg and a.png: keep both, distinguish by extension
                key = rel.as_posix() + path.suffix.lower()
                frame.key = key
            if frame.label_path is not None:
                try:
                    frame.boxes_norm = read_labels(frame.label_path)[:, 1:].copy()
                except LabelError as exc:
                    frame.error = f"bad_label: {exc}"
            frames[key] = frame
    return [frames[k] for k in sorted(frames)]


DATASET_CARD = "dataset.json"  # optional, at the data set's root: facts about the data the metrics rely on
SAME_FRAME_DIFFERENT = "faces_of_one_frame_are_different_people"


def faces_of_one_frame_differ(root) -> bool:
    """Whether two faces in one frame are two different people (true of real footage; false of a sample that pastes
    one person several times into a frame): what dlib's chance level may count as impostor pairs. Read from the
    optional DATASET_CARD at the data set's root; absent means true."""
    path = Path(root) / DATASET_CARD
    if not path.is_file():
        return True
    try:
        value = json.loads(path.read_text()).get(SAME_FRAME_DIFFERENT, True)
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: not a JSON object ({exc})") from None
    if not isinstance(value, bool):
        raise ValueError(f"{path}: {SAME_FRAME_DIFFERENT} must be true or false, got {value!r}")
    return value


def boxes_to_pixels(boxes_norm: np.ndarray, width: int, height: int) -> np.ndarray:
    """[N,4] normalised (xc, yc, w, h) -> [N,4] float32 pixels (x1, y1, x2, y2), clipped to the frame."""
    b = np.asarray(boxes_norm, dtype=np.float64).reshape(-1, 4)
    x1 = (b[:, 0] - b[:, 2] / 2) * width
    y1 = (b[:, 1] - b[:, 3] / 2) * height
    x2 = (b[:, 0] + b[:, 2] / 2) * width
    y2 = (b[:, 1] + b[:, 3] / 2) * height
    out = np.stack([x1, y1, x2, y2], axis=1)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out.astype(np.float32)


def pixels_to_boxes_norm(boxes_px: np.ndarray, width: int, height: int) -> np.ndarray:
    """[N,4] pixels (x1, y1, x2, y2) -> [N,4] float32 normalised (xc, yc, w, h)."""
    b = np.asarray(boxes_px, dtype=np.float64).reshape(-1, 4)
    xc = (b[:, 0] + b[:, 2]) / 2 / width
    yc = (b[:, 1] + b[:, 3]) / 2 / height
    w = (b[:, 2] - b[:, 0]) / width
    h = (b[:, 3] - b[:, 1]) / height
    return np.stack([xc, yc, w, h], axis=1).astype(np.float32)


def face_area_share(boxes_norm: np.ndarray) -> float:
    """Total face area / frame area: the sum of w*h over the boxes (as the DNA statistics count it)."""
    b = np.asarray(boxes_norm, dtype=np.float64).reshape(-1, 4)
    return float((b[:, 2] * b[:, 3]).sum())


def write_labels(path, boxes_px: np.ndarray, width: int, height: int, cls: int = 0) -> None:
    """Write boxes [N,4] pixels as a label file (class 0 = face), atomically. N = 0 writes an empty file."""
    norm = pixels_to_boxes_norm(boxes_px, width, height).clip(0, 1)
    text = "".join(f"{cls} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}\n" for xc, yc, w, h in norm)
    atomic_write_bytes(path, text.encode())


def write_image(path, rgb: np.ndarray, quality: int = 95) -> None:
    """Encode an RGB uint8 frame by the path's extension and write it atomically."""
    path = Path(path)
    ext = path.suffix.lower() or ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:
        raise ValueError(f"{path}: cannot encode image as {ext}")
    atomic_write_bytes(path, buf.tobytes())


def _pil_size(path: Path) -> tuple[int, int] | None:
    try:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # we apply our own limit below
        with Image.open(path) as im:
            return im.size
    except Exception:  # noqa: BLE001 - PIL's plugins raise many types (SyntaxError, struct.error...) on bad files
        return None


def _pil_decode(path: Path) -> np.ndarray | None:
    try:
        from PIL import Image

        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im).astype(np.float64)
                arr = (arr / max(arr.max(), 1) * 255) if im.mode == "I" else arr / 257
                arr = np.clip(arr + 0.5, 0, 255).astype(np.uint8)
                return np.repeat(arr[:, :, None], 3, axis=2)
            return np.asarray(im.convert("RGB"))
    except Exception:  # noqa: BLE001 - PIL's plugins raise many types on bad files; the caller reports it
        return None


def read_image(path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Any common image file -> RGB uint8 [H,W,3].

    Grayscale is replicated to 3 channels, alpha is dropped (composited on nothing: the colour channels are
    kept as stored), 16-bit is scaled to 8-bit, CMYK JPEGs are converted. Raises ImageError with a one-line
    message naming the file for a missing, empty, undecodable, too large (> max_pixels) or unsupported file.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(path, f"cannot read file ({exc.strerror or exc})") from None
    if data.size == 0:
        raise ImageError(path, "empty file (0 bytes)")
    size = _pil_size(path)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageError(path, f"{size[0]}x{size[1]} is over the {max_pixels / 1e6:.0f}-megapixel limit")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        rgb = _pil_decode(path)
        if rgb is None:
            raise ImageError(path, "not a decodable image (corrupt or unsupported format)")
        img_rgb = rgb
    else:
        if img.dtype == np.uint16:
            img = np.clip(img.astype(np.float32) / 257.0 + 0.5, 0, 255).astype(np.uint8)
        elif img.dtype != np.uint8:
            if np.issubdtype(img.dtype, np.floating) and img.size and np.nanmax(img) <= 1.0:
                img = np.clip(np.nan_to_num(img) * 255 + 0.5, 0, 255).astype(np.uint8)
            else:
                raise ImageError(path, f"unsupported pixel type {img.dtype}")
        if img.ndim == 2:
            img_rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        elif img.ndim == 3 and img.shape[2] == 1:
            img_rgb = cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
        elif img.ndim == 3 and img.shape[2] == 3:
            img_rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        elif img.ndim == 3 and img.shape[2] == 4:
            img_rgb = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        else:
            raise ImageError(path, f"unsupported image shape {list(img.shape)}")
    h, w = img_rgb.shape[:2]
    if h * w > max_pixels:
        raise ImageError(path, f"{w}x{h} is over the {max_pixels / 1e6:.0f}-megapixel limit")
    if h < 1 or w < 1:
        raise ImageError(path, "image has no pixels")
    return np.ascontiguousarray(img_rgb, dtype=np.uint8)
