"""Training-side privacy check on held-out identities (never used for training).

For every photo under `--identities` (default ../shared/data/faces/identities/<person>/*.jpg beside the checkout):
detect faces with CenterFace, de-identify them, and measure with the evaluation's own metrics (facedeid.metrics):
* reid: share of faces whose dlib ResNet descriptor on the de-identified photo (same box) is within
  metrics.REID_THRESHOLD (0.6, dlib's own) of the descriptor on the original photo; `dist`: mean L2 distance;
* det: share of faces CenterFace still finds on the de-identified photo (metrics.match_boxes: one-to-one,
  IoU >= metrics.DET_IOU = 0.5).
Methods: each generator through facedeid.pipeline (the served steps: box cleaning, crops, 32-face cap, compose;
the generator in PyTorch fp32), deface's `blur` and `mosaic` (facedeid.baselines, as in the evaluation tables), and
a sweep of `gaussian_blur` and `cell_mosaic` strengths (facedeid.baselines). `none` (photo unchanged) is the sanity
row: reid 1.0, det 1.0.

    facedeid train privacy                       # all shipped checkpoints + baselines
    facedeid train privacy --generator mobileunet=runs/mobileunet/m.pt --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from .. import baselines, cli_args
from ..detection import CenterFaceDetector
from ..metrics import DET_IOU, REID_THRESHOLD, FaceRecognizer, match_boxes, reid_distances
from ..models.registry import GENERATORS
from ..paths import IDENTITIES, WEIGHTS_DIR
from ..pipeline import Deidentifier
from .data import list_images, read_rgb

DEFAULT_IDENTITIES = IDENTITIES  # ../shared beside the checkout
GAUSSIAN_SIGMAS = (0.03, 0.06, 0.12)  # gaussian_blur sigma as a fraction of the box's longest side
MOSAIC_CELLS = (16, 8)  # cell_mosaic blocks across the box


def generator_method(name: str, checkpoint: Path | None = None):
    """(frame, boxes) -> de-identified frame: the served steps in process, generator in PyTorch."""
    deidentify = Deidentifier.from_checkpoint(name, checkpoint)
    return lambda frame, boxes: deidentify(frame, boxes)[0]


def baseline_methods() -> dict:
    methods: dict = {"blur": baselines.blur, "mosaic": baselines.mosaic}
    for s in GAUSSIAN_SIGMAS:
        methods[f"gaussian_blur sigma={s:g}*side"] = lambda f, b, s=s: baselines.gaussian_blur(f, b, s)
    for c in MOSAIC_CELLS:
        methods[f"cell_mosaic {c}x{c}"] = lambda f, b, c=c: baselines.cell_mosaic(f, b, c)
    return methods


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
            stats[name]["det"].extend(match_boxes(boxes, found, DET_IOU).tolist())
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
    lines = [f"| method | reid (dist < {REID_THRESHOLD:g}) | mean dlib distance | det (IoU >= {DET_IOU:g}) |",
             "| --- | --- | --- | --- |"]
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
    p.add_argument("--no-baselines", action="store_true",
                   help="skip the baseline rows (blur, mosaic, gaussian_blur, cell_mosaic)")
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
        methods[name] = generator_method(name, Path(ckpt) if ckpt else None)
        checkpoints[name] = str(Path(ckpt) if ckpt else GENERATORS[name].checkpoint)
    if not args.no_baselines:
        methods.update(baseline_methods())
    start = time.time()
    result = evaluate(methods, args.identities, CenterFaceDetector(threads=args.threads), FaceRecognizer(),
                      args.max_photos)
    result.update({"identities": str(args.identities), "checkpoints": checkpoints,
                   "wall_s": round(time.time() - start, 1), "reid_threshold": REID_THRESHOLD, "det_iou": DET_IOU,
                   "det_matching": "one-to-one (facedeid.metrics.match_boxes)",
                   "note": "held-out identities, never used in training; generators through facedeid.pipeline "
                           "(served steps), in PyTorch fp32 on CPU; blur/mosaic = deface's, as in the evaluation"})
    print(markdown(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
