"""Training-side privacy check on held-out identities (never used for training).

For every photo under `--identities` (default ../shared/data/faces/identities/<person>/*.jpg beside the checkout): detect faces with
CenterFace, de-identify them (generator in PyTorch on facedeid.crops crops, pasted back with facedeid.compose; or a
Gaussian-blur / mosaic baseline of the same boxes), then
* reid: share of faces whose dlib ResNet descriptor on the de-identified photo (same box) is within 0.6 (dlib's own
  threshold) of the descriptor on the original photo; `dist`: mean L2 distance;
* det: share of faces for which CenterFace still finds a box with IoU >= 0.5 on the de-identified photo.
`none` (photo unchanged) is the sanity row: reid 1.0, det 1.0.

    python -m facedeid.train.privacy                       # all shipped checkpoints + baselines
    python -m facedeid.train.privacy --generator mobileunet=runs/mobileunet/m.pt --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from .. import cli_args
from ..compose import compose
from ..crops import extract_crops, from_tensor, to_tensor
from ..detection import CenterFaceDetector
from ..metrics import FaceRecognizer, reid_distances
from ..models.registry import GENERATORS, WEIGHTS_DIR
from ..testing import SHARED_FACES
from .data import list_images, read_rgb

DEFAULT_IDENTITIES = SHARED_FACES / "identities"  # ../shared beside the checkout
REID_THRESHOLD = 0.6
DET_IOU = 0.5
BLUR_SIGMAS = (0.03, 0.06, 0.12)  # Gaussian sigma as a fraction of the box's longest side
MOSAIC_CELLS = (16, 8)  # mosaic blocks across the box


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one box a [4] against boxes b [M,4]."""
    if len(b) == 0:
        return np.zeros(0)
    x1 = np.maximum(a[0], b[:, 0]); y1 = np.maximum(a[1], b[:, 1])
    x2 = np.minimum(a[2], b[:, 2]); y2 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter + 1e-9)


def _box_region(frame: np.ndarray, box: np.ndarray):
    h, w = frame.shape[:2]
    x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
    x2, y2 = min(int(np.ceil(box[2])), w), min(int(np.ceil(box[3])), h)
    return x1, y1, x2, y2


def _replace_boxes(frame: np.ndarray, boxes: np.ndarray, replace) -> np.ndarray:
    """Copy of `frame` with each box region replaced by `replace(region)` (same shape)."""
    out = frame.copy()
    for box in boxes:
        x1, y1, x2, y2 = _box_region(frame, box)
        if x2 > x1 and y2 > y1:
            out[y1:y2, x1:x2] = replace(frame[y1:y2, x1:x2])
    return out


def blur_boxes(frame: np.ndarray, boxes: np.ndarray, sigma_frac: float) -> np.ndarray:
    def blur(region):
        sigma = max(0.5, sigma_frac * max(region.shape[:2]))
        return cv2.GaussianBlur(region, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)

    return _replace_boxes(frame, boxes, blur)


def mosaic_boxes(frame: np.ndarray, boxes: np.ndarray, cells: int) -> np.ndarray:
    def mosaic(region):
        small = cv2.resize(region, (cells, cells), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, region.shape[1::-1], interpolation=cv2.INTER_NEAREST)

    return _replace_boxes(frame, boxes, mosaic)


class GeneratorMethod:
    def __init__(self, name: str, checkpoint: Path | None = None):
        self.spec = GENERATORS[name]
        self.model = self.spec.load(checkpoint)  # exported weights or a training run's last.pt

    @torch.no_grad()
    def __call__(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        crops, windows = extract_crops(frame, boxes, self.spec.size)
        out = self.model(torch.from_numpy(to_tensor(crops))).numpy()
        return compose(frame, from_tensor(out), windows)


def evaluate(methods: dict, identities: Path, detector: CenterFaceDetector, recognizer: FaceRecognizer,
             max_photos: int | None = None) -> dict:
    photos = list_images(identities)[:max_photos]
    stats = {name: {"dist": [], "det": []} for name in methods}
    n_faces = 0
    for path in photos:
        frame = read_rgb(path)
        if frame is None:
            continue
        boxes, _ = detector(frame)
        if len(boxes) == 0:
            continue
        n_faces += len(boxes)
        ref = recognizer.descriptors(frame, boxes)
        for name, method in methods.items():
            deid = method(frame, boxes)
            found, _ = detector(deid)
            stats[name]["dist"].extend(reid_distances(ref, recognizer.descriptors(deid, boxes)).tolist())
            stats[name]["det"].extend(bool((iou(b, found) >= DET_IOU).any()) for b in boxes)
    rows = {}
    for name, s in stats.items():
        d = np.asarray(s["dist"])
        reid_faces, det_faces = int((d < REID_THRESHOLD).sum()), int(np.sum(s["det"]))
        rows[name] = {"reid": round(reid_faces / len(d), 4) if len(d) else None,
                      "mean_dist": round(float(d.mean()), 4) if len(d) else None,
                      "det": round(det_faces / len(d), 4) if len(d) else None, "faces": len(d),
                      "reid_faces": reid_faces, "det_faces": det_faces}
    return {"photos": len(photos), "faces": n_faces, "results": rows}


def markdown(result: dict) -> str:
    lines = ["| method | reid (dist < 0.6) | mean dlib distance | det (IoU >= 0.5) |", "| --- | --- | --- | --- |"]
    for name, r in result["results"].items():
        # shares from the face counts: the 4-digit ratios in the JSON would round a second time (5/68 -> 7.3 %)
        n = max(r["faces"], 1)
        lines.append(f"| {name} | {r['reid_faces'] / n:.1%} | {r['mean_dist']:.3f} | {r['det_faces'] / n:.1%} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--identities", type=Path, default=DEFAULT_IDENTITIES,
                   help="folder of held-out identities (one sub-folder of photos per person)")
    p.add_argument("--generator", action="append", default=None,
                   help="NAME or NAME=CHECKPOINT (repeatable); default: every generator with a shipped checkpoint")
    p.add_argument("--no-baselines", action="store_true", help="skip the blur / mosaic rows")
    p.add_argument("--max-photos", type=int, default=None, help="use only the first N photos (quick check)")
    p.add_argument("--json", type=Path, default=WEIGHTS_DIR / "privacy.json", help="where to write the results")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = cli_args.finish(p).parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.identities.is_dir():
        raise SystemExit(f"identities folder {args.identities} not found")
    methods: dict = {"none": lambda f, b: f.copy()}
    checkpoints = {}
    for item in args.generator or [n for n, s in GENERATORS.items() if s.has_checkpoint()]:
        name, _, ckpt = item.partition("=")
        methods[name] = GeneratorMethod(name, Path(ckpt) if ckpt else None)
        checkpoints[name] = str(Path(ckpt) if ckpt else GENERATORS[name].checkpoint)
    if not args.no_baselines:
        for s in BLUR_SIGMAS:
            methods[f"blur sigma={s:g}*side"] = lambda f, b, s=s: blur_boxes(f, b, s)
        for c in MOSAIC_CELLS:
            methods[f"mosaic {c}x{c}"] = lambda f, b, c=c: mosaic_boxes(f, b, c)
    start = time.time()
    result = evaluate(methods, args.identities, CenterFaceDetector(threads=args.threads), FaceRecognizer(),
                      args.max_photos)
    result.update({"identities": str(args.identities), "checkpoints": checkpoints, "wall_s": round(time.time() - start, 1),
                   "reid_threshold": REID_THRESHOLD, "det_iou": DET_IOU,
                   "note": "held-out identities, never used in training; generators run in PyTorch fp32 on CPU"})
    print(markdown(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
