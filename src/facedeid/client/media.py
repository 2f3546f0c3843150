"""Frames through a de-identification engine (DeidClient or LocalBaseline) into files: images, and videos at the
source's frame rate and size with its audio copied in (ffmpeg from imageio-ffmpeg); faces tracked across a
video's frames (client/tracking.py). What `facedeid run` writes; the command line is client/cli.py."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..baselines import METHODS as BASELINES
from ..data.dna import ImageError, atomic_temp_file, read_image, write_image
from .tracking import DEFAULT_MEMORY, FaceTracker, deid_video
from .triton import DeidError


class InputError(Exception):
    """A file this run cannot do (missing, not media, unreadable, output exists): one line, the run goes on."""


class FaceCounts:
    """How many faces went each way: a generated face, or a blur (low-confidence or small detections)."""

    def __init__(self):
        self.generated = self.blurred = self.frames = 0

    def add(self, result) -> None:
        self.frames += 1
        self.generated += len(result.boxes)
        self.blurred += len(getattr(result, "blurred", ()))

    def __str__(self) -> str:
        return f"{self.generated} face(s) generated, {self.blurred} low-confidence or small face(s) blurred"


def draw_boxes(frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    import cv2

    out = np.ascontiguousarray(frame).copy()
    thickness = max(2, frame.shape[0] // 300)
    for x1, y1, x2, y2 in np.asarray(boxes, np.float32).reshape(-1, 4)[:, :4]:
        cv2.rectangle(out, (int(x1), int(y1)), (int(x2), int(y2)), (0, 255, 0), thickness)
    return out


def _output(result, boxes: bool) -> np.ndarray:
    if not boxes:
        return result.frame
    return draw_boxes(result.frame, np.concatenate([result.boxes, getattr(result, "blurred", np.zeros((0, 4)))]))


def _deid_stream(engine, model: str, frames: Iterable[tuple[str, np.ndarray]], boxes: bool = False,
                 counts: FaceCounts | None = None) -> Iterator[tuple[str, np.ndarray | BaseException]]:
    """(name, de-identified frame or the exception that frame met), in input order."""
    for (name, _frame), result in engine.map(model, frames, lambda it: (it[1], None)):
        if isinstance(result, BaseException):
            yield name, DeidError(f"{name}: {result}")
            continue
        if counts is not None:
            counts.add(result)
        yield name, _output(result, boxes)


def deid_tracked(engine, model: str, frames: Iterable[tuple[str, np.ndarray]], tracker: FaceTracker,
                 counts: FaceCounts | None = None,
                 boxes: bool = False) -> Iterator[tuple[str, np.ndarray | BaseException]]:
    """Frames of one video, in order, tracked (client/tracking.py: one replacement per track, smoothed boxes, the
    blur tier for low-confidence and lost faces, tracks ended at scene cuts)."""
    for name, result, _ in deid_video(engine, model, frames, tracker):
        if isinstance(result, BaseException):
            yield name, result
            continue
        if counts is not None:
            counts.add(result)
        yield name, _output(result, boxes)


def _progress(total: int | None, unit: str, desc: str, off: bool, leave: bool = True):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, disable=off, leave=leave, file=sys.stderr, dynamic_ncols=True)


def _say(message: str, bar=None) -> None:
    (bar.write if bar is not None else print)(f"deid: {message}", file=sys.stderr)


def run_images(engine, model: str, pairs: list[tuple[Path, Path]], opts, bar=None) -> tuple[int, int]:
    """(written, failed): images streamed through the engine together; each failure is reported and skipped."""
    failed = 0

    def frames():
        nonlocal failed
        for src, _ in pairs:
            try:
                yield str(src), read_image(src)
            except ImageError as exc:
                _say(f"skipped {exc}", bar)
                failed += 1
                if bar is not None:
                    bar.update(1)

    out_of = {str(s): d for s, d in pairs}
    done, counts = 0, FaceCounts()
    for name, deid in _deid_stream(engine, model, frames(), opts.draw_boxes, counts):
        if isinstance(deid, BaseException):
            _say(f"failed {deid}", bar)
            failed += 1
        else:
            write_image(out_of[name], deid)
            done += 1
        if bar is not None:
            bar.update(1)
    if done:
        _say(f"{done} image(s): {counts}", bar)
    return done, failed


def audio_streams(src: Path) -> int:
    """Number of audio streams in a media file (ffmpeg's stream listing; imageio-ffmpeg ships the binary)."""
    import imageio_ffmpeg

    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(src)], capture_output=True,
                          text=True, errors="replace")
    return len(re.findall(r"^\s*Stream #\S+.*?: Audio:", proc.stderr, flags=re.M))


def add_audio(video: Path, source: Path, dst_tmp: Path) -> None:
    """Mux `video` (frames) with `source`'s audio into dst_tmp: the audio copied as is, else re-encoded as AAC."""
    import imageio_ffmpeg

    base = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-i", str(video), "-i", str(source),
            "-map", "0:v:0", "-map", "1:a", "-c:v", "copy"]
    errors = ""
    for audio_codec in (["-c:a", "copy"], ["-c:a", "aac"]):  # copy fails where the container refuses the codec
        proc = subprocess.run([*base, *audio_codec, str(dst_tmp)], capture_output=True, text=True, errors="replace")
        if proc.returncode == 0:
            return
        errors = proc.stderr.strip().splitlines()[-1:] or [f"ffmpeg exit {proc.returncode}"]
        errors = errors[0]
    raise InputError(f"{source}: cannot copy its audio ({errors}); use --no-audio to drop it")


def _open_video(src: Path, attempts: int = 3):
    """(imageio reader, its metadata). Retried: imageio-ffmpeg gives ffmpeg 10 s to print the stream header, which
    a busy machine can miss; a file that is not a video fails each try at once."""
    import imageio.v2 as iio

    for attempt in range(attempts):
        try:
            reader = iio.get_reader(str(src), format="FFMPEG")
            return reader, reader.get_meta_data()
        except Exception as exc:  # noqa: BLE001 - imageio/ffmpeg raise several types for a file that is not video
            if attempt == attempts - 1:
                raise InputError(f"{src}: cannot read it as a video ({str(exc).splitlines()[0][:160]})") from exc


def run_video(engine, model: str, src: Path, dst: Path, opts, bar=None) -> int:
    """Frames through the engine into dst (source frame rate and size), then the source's audio; returns frames."""
    import imageio_ffmpeg

    reader, meta = _open_video(src)
    fps = opts.fps or meta.get("fps") or 25.0
    keep_audio = not opts.no_audio and audio_streams(src) > 0
    if not opts.no_audio and not keep_audio:
        _say(f"{src}: no audio stream; the output has none either", bar)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = atomic_temp_file(dst, suffix=dst.suffix)
    os.close(fd)
    muxed = None
    # The source's size exactly: 4:2:0 chroma needs even sides, so an odd-sized source is written as 4:4:4 (fewer
    # players play that, but no pixel row or column is added or lost).
    odd = any(side % 2 for side in meta["size"])
    writer = imageio_ffmpeg.write_frames(tmp, tuple(meta["size"]), fps=fps, codec="libx264", quality=8,
                                         macro_block_size=1, pix_fmt_out="yuv444p" if odd else "yuv420p",
                                         ffmpeg_log_level="error")
    # Start ffmpeg now: forking it later, while frames are in flight over gRPC, breaks the encoder (gRPC skips its
    # fork handlers when other threads are inside it).
    writer.send(None)
    duration = meta.get("duration")
    total = int(round(duration * fps)) if duration and duration != float("inf") else None
    frame_bar = _progress(total, "frame", src.name, opts.no_progress, leave=bar is None)
    n = 0
    track_memory = getattr(opts, "track_memory", DEFAULT_MEMORY)
    tracker, counts = FaceTracker(memory=track_memory, fps=float(fps)), FaceCounts()
    try:
        frames = ((f"{src}#frame{i}", np.ascontiguousarray(f[:, :, :3]))
                  for i, f in enumerate(reader.iter_data()))
        stream = (deid_tracked(engine, model, frames, tracker, counts, opts.draw_boxes)
                  if model not in BASELINES
                  else _deid_stream(engine, model, frames, opts.draw_boxes, counts))
        for _, deid in stream:
            if isinstance(deid, BaseException):
                raise deid
            writer.send(np.ascontiguousarray(deid))
            n += 1
            frame_bar.update(1)
        writer.close()
        if keep_audio:
            fd, muxed = atomic_temp_file(dst, suffix=dst.suffix)
            os.close(fd)
            add_audio(Path(tmp), src, Path(muxed))
            os.replace(muxed, dst)
            os.unlink(tmp)
        else:
            os.replace(tmp, dst)
    except BaseException:
        writer.close()
        for path in (tmp, muxed):
            if path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        raise
    finally:
        frame_bar.close()
        reader.close()
    size = "x".join(map(str, meta["size"]))
    _say(f"wrote {dst}: {n} frames, {size} at {fps:g} fps, " + ("with the source's audio" if keep_audio else
                                                                 "no audio") +
         f"; {counts}; {tracker.held_total} face(s) held by tracking where the detector lost them", bar)
    return n
