"""The DNA data-set table for any DNA-format set: `facedeid data summary DIR [--json OUT.json]`.

The rows of the original DNA table (447 videos, 648,666 frames, ...): videos (when the frame names tell them),
estimated video lengths, frames, frames with faces, face boxes, the face-area share (total face-box area / frame
area) max / min / mean, and the frames per area bin 0~10 %, 10~30 %, 30~50 %, 50~70 %, 70 % and above.

Definitions (the original's numbers satisfy them: its bin counts add up to its frames with faces):
* face-area share max / min / mean and the bins are over frames with at least one face; frames without faces are
  counted apart ("frames without faces"), never in the 0~10 % bin. Share of a frame = sum of w*h over its boxes
  (the area bins of the evaluation use the same number).
* videos: frames named `<video>_t<seconds>` (what `facedeid data extract` writes), grouped by folder and
  `<video>` prefix. When no frame is named so, the video rows say "unknown". Video length is estimated as the last
  frame's time plus the median step between frames of that video.
* a frame whose label file does not parse is counted in "frames" and in "label errors", and left out of the face
  rows; the first few are listed (file and line) on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .. import cli_args
from .dna import BINS, scan_dataset
from .extract import parse_frame_stem

BIN_LABELS = {"10": "0~10%", "30": "10~30%", "50": "30~50%", "70": "50~70%", "70above": "70% and above"}


def summarize(root) -> dict:
    """The table's numbers for the DNA-format set at root, as a JSON-ready dict (shares as fractions 0..1)."""
    root = Path(root)
    frames = scan_dataset(root)
    good = [f for f in frames if f.error is None]
    with_faces = [f for f in good if f.n_faces > 0]
    shares = np.array([f.area_share for f in with_faces], np.float64)
    bins = {name: 0 for name in BINS}
    for f in with_faces:
        bins[f.bin] += 1

    videos: dict[str, list[float]] = {}
    unnamed = 0
    for f in frames:
        folder, _, stem = f.key.rpartition("/")
        parsed = parse_frame_stem(stem)
        if parsed is None:
            unnamed += 1
            continue
        video, seconds = parsed
        videos.setdefault(f"{folder}/{video}" if folder else video, []).append(seconds)
    lengths = _video_lengths(videos)

    return {
        "dataset": str(root),
        "videos": len(videos) if videos else None,
        "frames_without_video_name": unnamed,
        "video_length_s": _stats(lengths),
        "frames": len(frames),
        "frames_with_faces": len(with_faces),
        "frames_without_faces": len(good) - len(with_faces),
        "face_boxes": int(sum(f.n_faces for f in with_faces)),
        "face_area_share": _stats(shares),
        "bins": bins,
        "bin_labels": BIN_LABELS,
        "label_errors": [f.error for f in frames if f.error is not None],
    }


def _stats(values) -> dict:
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return {"max": None, "min": None, "mean": None}
    return {"max": float(values.max()), "min": float(values.min()), "mean": float(values.mean())}


def _video_lengths(videos: dict[str, list[float]]) -> list[float]:
    """Per video: last frame time + median step between its frames (the step of all videos for one-frame videos)."""
    steps = {}
    for name, times in videos.items():
        t = np.unique(np.asarray(times, np.float64))
        steps[name] = float(np.median(np.diff(t))) if t.size > 1 else None
    known = [s for s in steps.values() if s is not None]
    fallback = float(np.median(known)) if known else 0.0
    return [max(times) + (steps[name] if steps[name] is not None else fallback) for name, times in videos.items()]


def _pct(value) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _secs(value) -> str:
    return "-" if value is None else f"{value:,.2f}s"


def format_table(s: dict) -> str:
    """The summary as the original's table, in text."""
    rows: list[tuple[str, str]] = []
    if s["videos"] is None:
        rows.append(("videos", "unknown (frame names do not say; see docs/data_tools.md)"))
    else:
        note = f"  ({s['frames_without_video_name']:,} frames not named <video>_t<seconds>)" \
            if s["frames_without_video_name"] else ""
        rows.append(("videos", f"{s['videos']:,}{note}"))
        v = s["video_length_s"]
        rows += [("video length max", _secs(v["max"])), ("video length min", _secs(v["min"])),
                 ("video length mean", _secs(v["mean"]))]
    a = s["face_area_share"]
    rows += [
        ("frames", f"{s['frames']:,}"),
        ("frames with faces", f"{s['frames_with_faces']:,}"),
        ("frames without faces", f"{s['frames_without_faces']:,}"),
        ("face boxes", f"{s['face_boxes']:,}"),
        ("face-area share max", _pct(a["max"])),
        ("face-area share min", _pct(a["min"])),
        ("face-area share mean", _pct(a["mean"])),
    ]
    rows += [(f"frames {BIN_LABELS[b]}", f"{s['bins'][b]:,}") for b in BINS]
    if s["label_errors"]:
        rows.append(("label errors", f"{len(s['label_errors']):,} (frames skipped in the face rows)"))
    width = max(len(k) for k, _ in rows)
    lines = [f"DNA-format data set: {s['dataset']}", "-" * (width + 14)]
    lines += [f"{k:<{width}}  {v:>10}" if len(v) <= 10 else f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=cli_args.prog("facedeid data summary"),
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("dataset", type=Path, metavar="DIR", help="DNA-format set (with images/ and labels/)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON to PATH ('-': print only "
                        "the JSON, no table)")
    args = cli_args.finish(parser).parse_args(argv)
    try:
        s = summarize(args.dataset)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for error in s["label_errors"][:10]:
        print(f"warning: {error}", file=sys.stderr)
    if len(s["label_errors"]) > 10:
        print(f"warning: ... and {len(s['label_errors']) - 10} more label errors", file=sys.stderr)
    text = json.dumps(s, indent=1)
    if args.json == "-":
        print(text)
        return 0
    print(format_table(s))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
