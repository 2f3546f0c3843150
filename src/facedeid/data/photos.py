"""A folder of photos as a DNA-format set: `facedeid data photos PHOTO_DIR OUT [--local]`.

Each photo is copied byte for byte to OUT/images/<same sub-path> and labelled with the product's face detector
(through Triton by default, in process with `--local`), with an independent one (`--labeler dlib`: dlib's CNN
face detector, for grading the product's detector), or with hand labels from a CSV
(`file,left,top,width,height`, file relative to PHOTO_DIR's parent, as in shared/data/faces/scenes/face_boxes.csv):
a photo with hand labels uses only those.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import cli_args
from ..settings import DEFAULT_URL
from .dna import IMAGE_EXTS, ImageError, read_image, write_labels
from .labelers import LABELERS, make_labeler


def hand_labels(csv_path: Path, root: Path) -> dict[Path, np.ndarray]:
    boxes: dict[Path, list] = {}
    with open(csv_path, newline="") as handle:
        for row in csv.DictReader(handle):
            left, top, width, height = (float(row[k]) for k in ("left", "top", "width", "height"))
            boxes.setdefault((root / row["file"]).resolve(), []).append([left, top, left + width, top + height])
    return {path: np.asarray(b, np.float32) for path, b in boxes.items()}


def convert(photo_dir: Path, out: Path, detector, labels: dict[Path, np.ndarray] | None = None) -> tuple[int, int]:
    """Returns (photos written, faces labelled); unreadable photos are reported on stderr and skipped."""
    photos = sorted(p for p in photo_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))
    written = faces = 0
    for photo in tqdm(photos, desc="photos", unit="photo"):
        try:
            frame = read_image(photo)
        except ImageError as error:
            print(f"skipped: {error}", file=sys.stderr)
            continue
        rel = photo.relative_to(photo_dir)
        boxes = (labels or {}).get(photo.resolve())
        if boxes is None:
            boxes = detector(frame)[0]
        target = out / "images" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, target)
        write_labels(out / "labels" / rel.parent / f"{rel.stem}.txt", boxes, frame.shape[1], frame.shape[0])
        written += 1
        faces += len(boxes)
    return written, faces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo_dir", type=Path, help="folder of face photos")
    parser.add_argument("out", type=Path, help="DNA-format output folder (images/, labels/)")
    parser.add_argument("--local", action="store_true", help="detect in process (ONNX Runtime), no server")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"Triton gRPC address (default {DEFAULT_URL})")
    parser.add_argument("--labels-csv", type=Path, help="hand labels: file,left,top,width,height (pixels)")
    parser.add_argument("--labeler", choices=LABELERS, default="centerface",
                        help="who labels the faces: centerface (the product's detector, default) or dlib (dlib's "
                             "CNN detector, independent of the product: use it to grade the detector)")
    args = cli_args.finish(parser).parse_args(argv)
    if not args.photo_dir.is_dir():
        parser.error(f"{args.photo_dir} is not a folder")
    detector = make_labeler(args.labeler, local=args.local, url=args.url)
    labels = hand_labels(args.labels_csv, args.photo_dir.parent) if args.labels_csv else None
    written, faces = convert(args.photo_dir, args.out, detector, labels)
    print(f"{written} photos, {faces} faces -> {args.out} (DNA format)")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
