"""Recall on large frames and on rolled faces, ours beside deface, with the detector's frames/s.

    facedeid bench large-frames --scenes ../shared/data/faces/scenes --json docs/results/large_frames.json

* **Frame size**: 1920x1080 and 3840x2160 frames made by packing real scenes (shrunk by `--scale`, so most faces are
  24-60 px) side by side, as broadcast or CCTV frames of small faces. Labels: dlib's HOG face detector (upsampled
  twice, on each scene before packing: finds faces down to ~20 px) grown forehead-to-chin like the dlib labeller,
  never CenterFace. A label is found when a box matches it one-to-one with IoU >= metrics.DET_IOU.
* **Roll**: the scenes of `--roll-scenes` (the hand-labelled dlib_pascal ones use their hand labels, the rest dlib
  HOG labels) turned 0, 90, 180 and 270 degrees; the labels are turned with them (exact).

Detectors: ours as the CPU configs serve it (full pass capped at 768 px but kept at >= MIN_FACE, 384 px pass), the
same cap before this floor (what the CPU configs served before: min_face 256 lets the cap win), ours at native
resolution (the GPU configs), each with and without rotations where measured, and deface's CLI detector (native
resolution, threshold 0.2). Frames/s: frames per CPU-second of detection (process CPU time, so other jobs on the
machine do not inflate it; ours runs one ONNX Runtime thread, deface its own default threads, all counted).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from .. import cli_args
from ..detection import CPU_DET_SIZE, CPU_FULL_SIZE, DEFAULT_MAX_SIDE, DEFAULT_THRESHOLD, CenterFaceDetector
from ..metrics import match_boxes

SIZES = ((1920, 1080), (3840, 2160))
DEFACE = "deface (CLI defaults)"
DETECTORS = {  # name -> CenterFaceDetector keyword arguments
    "ours, CPU config (768 cap, >= 24 px kept)": dict(max_side=CPU_DET_SIZE, full_size=CPU_FULL_SIZE),
    "ours, CPU cap before (768, no floor)": dict(max_side=CPU_DET_SIZE, full_size=CPU_FULL_SIZE, min_face=256),
    "ours, CPU config + rotations": dict(max_side=CPU_DET_SIZE, full_size=CPU_FULL_SIZE, rotations=True),
    "ours, GPU config (native + 640)": dict(max_side=DEFAULT_MAX_SIDE, full_size=0),
}
BACKGROUND = 60


def hog_faces(image: np.ndarray, upsample: int = 2) -> np.ndarray:
    """dlib's HOG frontal-face boxes [N,4] (raw squares, eyebrows to lower lip), independent of CenterFace."""
    found = _hog()(np.ascontiguousarray(image), upsample)
    return np.asarray([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in found], np.float32).reshape(-1, 4)


def _hog():
    import dlib

    global _HOG
    if _HOG is None:
        _HOG = dlib.get_frontal_face_detector()
    return _HOG


_HOG = None


def scene_images(scenes: Path, max_side: int = 1024) -> list[tuple[str, np.ndarray]]:
    from ..data.dna import read_image

    out = []
    for path in sorted(scenes.glob("*.jpg")):
        image = read_image(path)
        if max(image.shape[:2]) <= max_side:
            out.append((path.name, image))
    return out


def packed_frame(images: list[np.ndarray], width: int, height: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Images pasted at their own size row by row (cycling through them) onto a width x height frame; the
    top-left corner of each paste. Images that would cross the frame's edge are not pasted."""
    frame = np.full((height, width, 3), BACKGROUND, np.uint8)
    corners, x, y, row_h, i = [], 0, 0, 0, 0
    while True:
        image = images[i % len(images)]
        h, w = image.shape[:2]
        if x + w > width:
            x, y, row_h = 0, y + row_h, 0
        if y + h > height:
            break
        frame[y : y + h, x : x + w] = image
        corners.append((x, y))
        x, row_h, i = x + w, max(row_h, h), i + 1
        if i > 10 * len(images):
            break
    return frame, corners


def small_face_frame(scenes: Path, width: int, height: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(frame, raw dlib HOG boxes [N,4] in frame pixels) of scenes shrunk by `scale` and packed into the frame."""
    import cv2

    shrunk, labels = [], []
    for _, image in scene_images(scenes):
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        shrunk.append(small)
        labels.append(hog_faces(small))
    frame, corners = packed_frame(shrunk, width, height)
    boxes = []
    for i, (x, y) in enumerate(corners):  # HOG boxes may reach past their scene's edge: clip them to it
        h, w = shrunk[i % len(shrunk)].shape[:2]
        inside = labels[i % len(labels)].copy()
        inside[:, [0, 2]] = inside[:, [0, 2]].clip(0, w)
        inside[:, [1, 3]] = inside[:, [1, 3]].clip(0, h)
        boxes.append(inside + np.float32([x, y, x, y]))
    return frame, np.concatenate(boxes).reshape(-1, 4)


def grown(raw: np.ndarray, width: int, height: int) -> np.ndarray:
    from ..data.labelers import grow_forehead_to_chin

    return grow_forehead_to_chin(raw, width, height)


def _detector(name: str, rotations: bool = False):
    if name == DEFACE:
        from ..deface_cli import detect

        return detect
    det = CenterFaceDetector(DEFAULT_THRESHOLD, threads=1, **{"rotations": rotations, **DETECTORS[name]})
    return lambda frame: det(frame)[0]


def measure(detect, frames: list[tuple[np.ndarray, np.ndarray]], repeats: int = 1) -> dict:
    """Labels found (counted once) and frames per CPU-second (over `repeats` passes of the frames)."""
    detect(frames[0][0])  # the first call builds ONNX Runtime's kernels
    found = labels = 0
    cpu = 0.0
    for r in range(repeats):
        for frame, truth in frames:
            start = time.process_time()
            got = detect(frame)
            cpu += time.process_time() - start
            if r == 0:
                found += int(match_boxes(truth, got).sum()) if len(truth) else 0
                labels += len(truth)
    return {"found": found, "labels": labels, "recall": round(found / max(labels, 1), 3),
            "fps": round(repeats * len(frames) / max(cpu, 1e-9), 2)}


def size_rows(scenes: Path, scale: float) -> list[dict]:
    rows = []
    for width, height in SIZES:
        frame, raw = small_face_frame(scenes, width, height, scale)
        sides = np.minimum(raw[:, 2] - raw[:, 0], raw[:, 3] - raw[:, 1])
        truth = grown(raw[sides >= 24], width, height)
        for name in (*DETECTORS, DEFACE):
            row = measure(_detector(name), [(frame, truth)], repeats=3)
            rows.append({"frame": f"{width}x{height}", "detector": name, **row,
                         "label_side_px": [int(sides.min()), int(np.median(sides)), int(sides.max())]})
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


def roll_set(scenes: Path) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(image, grown labels, label source) of every scene of at most 1024 px: hand labels where face_boxes.csv
    has them, else dlib HOG."""
    hand: dict[str, list] = {}
    table = scenes / "face_boxes.csv"
    if table.exists():
        for row in csv.DictReader(table.open()):
            x, y, w, h = (float(row[k]) for k in ("left", "top", "width", "height"))
            hand.setdefault(Path(row["file"]).name, []).append([x, y, x + w, y + h])
    out = []
    for name, image in scene_images(scenes):
        raw = np.asarray(hand[name], np.float32) if name in hand else hog_faces(image, 1)
        out.append((image, grown(raw, image.shape[1], image.shape[0]), "hand" if name in hand else "dlib HOG"))
    return out


def turn(image: np.ndarray, boxes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """image and boxes turned k quarter turns counter-clockwise (np.rot90)."""
    turned = np.ascontiguousarray(np.rot90(image, k))
    h, w = image.shape[:2]
    xy = boxes.reshape(-1, 2, 2).astype(np.float32)
    for _ in range(k % 4):  # one turn maps (x, y) of an h x w image to (y, w - x)
        xy = np.stack([xy[..., 1], w - xy[..., 0]], -1)
        h, w = w, h
    return turned, np.concatenate([xy.min(1), xy.max(1)], 1)


def roll_rows(scenes: Path) -> list[dict]:
    base = roll_set(scenes)
    rows = []
    detectors = [("ours, CPU config", _detector(next(iter(DETECTORS)))),
                 ("ours, CPU config + rotations", _detector(next(iter(DETECTORS)), rotations=True)),
                 (DEFACE, _detector(DEFACE))]
    for k in range(4):
        frames = [turn(image, boxes, k) for image, boxes, _ in base]
        for name, detect in detectors:
            rows.append({"turned_deg": 90 * k, "detector": name, **measure(detect, frames)})
            print(rows[-1], file=sys.stderr, flush=True)
    sources = {s: sum(len(b) for _, b, src in base if src == s) for s in ("hand", "dlib HOG")}
    return rows, {"scenes": len(base), "labels_by_source": sources}


def served_rows(repository: Path, scenes: Path, scale: float, frames: int = 3, concurrency: int = 2) -> list[dict]:
    """End to end, wall clock: `frames` packed frames of each size through `deid_mobileunet` of a server started over
    `repository` (CPU configs; `concurrency` in flight, after one warm-up frame), beside deface's CLI with its
    defaults on the same frames (one CLI call, PNG files: its start-up and file I/O are in its time)."""
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    import tritonclient.grpc as grpcclient

    from ..deface_cli import anonymize
    from ..serving import local_server

    rows = []
    log = Path(tempfile.mkdtemp()) / "tritonserver.log"
    server = local_server.start(repository, log)
    try:
        def send(frame):
            client = grpcclient.InferenceServerClient(server.grpc_url)
            try:
                tensor = grpcclient.InferInput("FRAME", list(frame.shape), "UINT8")
                tensor.set_data_from_numpy(frame)
                client.infer("deid_mobileunet", [tensor], client_timeout=900)
            finally:
                client.close()

        for width, height in SIZES:
            base, _ = small_face_frame(scenes, width, height, scale)
            clip = [np.ascontiguousarray(np.roll(base, 7 * i, axis=1)) for i in range(frames)]
            send(clip[0])
            start = time.monotonic()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(send, clip))
            ours = time.monotonic() - start
            start = time.monotonic()
            anonymize(clip)
            theirs = time.monotonic() - start
            rows.append({"frame": f"{width}x{height}", "frames": frames,
                         "ours_served_fps": round(frames / ours, 3), "deface_cli_fps": round(frames / theirs, 3)})
            print(rows[-1], file=sys.stderr, flush=True)
    finally:
        server.stop()
    return rows


def markdown(size: list[dict], roll: list[dict]) -> str:
    lines = ["| frame | detector | faces >= 24 px found | recall | detector frames per CPU-second |",
             "| --- | --- | ---: | ---: | ---: |"]
    lines += [f"| {r['frame']} | {r['detector']} | {r['found']} / {r['labels']} | {r['recall']:.2f} | {r['fps']} |"
              for r in size]
    lines += ["", "| turned | detector | labelled faces found | recall | detector frames per CPU-second |",
              "| ---: | --- | ---: | ---: | ---: |"]
    lines += [f"| {r['turned_deg']} | {r['detector']} | {r['found']} / {r['labels']} | {r['recall']:.2f} | "
              f"{r['fps']} |" for r in roll]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="facedeid bench large-frames", description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=Path, required=True, help="folder of scene photos (face_boxes.csv optional)")
    p.add_argument("--scale", type=float, default=0.4, help="shrink the scenes by this before packing (default 0.4)")
    p.add_argument("--skip-roll", action="store_true", help="only the frame-size table")
    p.add_argument("--served", type=Path, default=None, metavar="REPOSITORY",
                   help="only end-to-end frames/s: a server over this exported repository beside deface's CLI")
    p.add_argument("--json", type=Path, default=None, help="also write the rows and the command here")
    args = cli_args.finish(p).parse_args(argv)
    command = "facedeid bench large-frames " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.served:
        served = served_rows(args.served, args.scenes, args.scale)
        print(json.dumps(served))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"command": command, "served": served}, indent=1) + "\n")
        return 0
    size = size_rows(args.scenes, args.scale)
    roll, roll_info = ([], {}) if args.skip_roll else roll_rows(args.scenes)
    print(markdown(size, roll))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": command, "size": size, "roll": roll, "roll_set": roll_info},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
