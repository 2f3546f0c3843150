"""Frames through a de-identification engine (DeidClient or LocalBaseline) into files: images (every frame of an
animated or multi-page one, upright: client/image_files.py) and videos (upright, at the source's size and
duration, with its audio: client/video_io.py); faces tracked across a video's frames (client/tracking.py). Every
file is written to a temporary name in the output's folder, decoded back, and only then renamed to its output
name. What `facedeid run` writes; the command line is client/cli.py."""

from __future__ import annotations

import contextlib
import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..baselines import METHODS as BASELINES
from ..data.dna import ImageError
from ..data.files import atomic_temp_file
from . import video_io
from .image_files import Picture, encode_picture, read_picture, write_checked
from .tracking import DEFAULT_MEMORY, FaceTracker, deid_video
from .triton import DeidError


class InputError(Exception):
    """A file this run cannot do (missing, not media, unreadable, output exists, output not writable): one line,
    the run goes on."""


def write_problem(dst: Path, exc: BaseException) -> str:
    """One line for a failed write: the folder's real problem (full, read-only) when it has one."""
    text = getattr(exc, "strerror", None) or str(exc)
    reason = video_io.disk_reason(dst.parent, text)
    return f"{dst}: not written: {reason or text}"


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


def run_images(engine, model: str, pairs: list[tuple[Path, Path]], opts, bar=None,
               tally: dict | None = None) -> tuple[int, int]:
    """(written, failed): the frames of all images streamed through the engine together; each image is written
    once all its frames are back. Each failure is reported and skipped. `tally` ("written", "failed") is counted
    up as files finish."""
    failed = 0
    tally = tally if tally is not None else {"written": 0, "failed": 0}
    pictures: dict[str, Picture] = {}
    keep = getattr(opts, "keep_metadata", None) or []

    def frames():
        nonlocal failed
        for src, _ in pairs:
            try:
                pic = read_picture(src)
            except ImageError as exc:
                _say(f"skipped {exc}", bar)
                failed += 1
                tally["failed"] += 1
                if bar is not None:
                    bar.update(1)
                continue
            pictures[str(src)] = pic
            for i, frame in enumerate(pic.frames):
                yield f"{src}#frame{i}" if len(pic.frames) > 1 else str(src), frame

    out_of = {str(s): d for s, d in pairs}
    done, counts = 0, FaceCounts()
    current: tuple[str, list] | None = None  # (source, de-identified frames so far)
    broken: set[str] = set()
    for name, deid in _deid_stream(engine, model, frames(), opts.draw_boxes, counts):
        src = name.split("#frame")[0] if name not in out_of else name
        if current is None or current[0] != src:
            current = (src, [])
        if src in broken:
            continue
        if isinstance(deid, BaseException):
            _say(f"failed {deid}", bar)
            failed += 1
            tally["failed"] += 1
            broken.add(src)
            if bar is not None:
                bar.update(1)
            continue
        current[1].append(deid)
        pic = pictures[src]
        if len(current[1]) < len(pic.frames):
            continue
        dst = out_of[src]
        try:
            data = encode_picture(pic, current[1], dst.suffix.lower(), keep)
            write_checked(dst, data, len(pic.frames), tuple(current[1][0].shape[1::-1]))
            done += 1
            tally["written"] += 1
            if pic.orientation != 1 or pic.notes or len(pic.frames) > 1:
                what = [f"{len(pic.frames)} frames"] if len(pic.frames) > 1 else []
                what += ["EXIF orientation applied, written upright"] if pic.orientation != 1 else []
                _say(f"{src}: " + ", ".join(what + pic.notes), bar)
        except (OSError, ImageError, ValueError) as exc:
            _say(f"failed {write_problem(dst, exc)}", bar)
            failed += 1
            tally["failed"] += 1
        pictures.pop(src, None)
        if bar is not None:
            bar.update(1)
    if done:
        _say(f"{done} image(s): {counts}", bar)
    return done, failed


def run_video(engine, model: str, src: Path, dst: Path, opts, bar=None) -> int:
    """Frames through the engine into dst (upright, the source's size and duration), then the source's audio; the
    result is decoded back before it takes dst's name. Returns frames written."""
    try:
        info = video_io.probe(src)
    except video_io.VideoFileError as exc:
        raise InputError(str(exc)) from None
    if info.truncated:
        raise InputError(f"{src}: the file is truncated: {info.packets} of about {info.expected_frames} frames can "
                         "be read; nothing written")
    rate = Fraction(opts.fps).limit_denominator(video_io.MAX_VFR_DENOMINATOR) if opts.fps else info.rate
    keep_audio = not opts.no_audio and info.streams.get("Audio", 0) > 0
    if not opts.no_audio and not keep_audio:
        _say(f"{src}: no audio stream; the output has none either", bar)
    keep = getattr(opts, "keep_metadata", None) or []
    dst.parent.mkdir(parents=True, exist_ok=True)
    temps: list[str] = []
    try:
        for suffix in (".mkv", dst.suffix):
            fd, name = atomic_temp_file(dst, suffix=suffix)
            os.close(fd)
            temps.append(name)
    except OSError as exc:
        for name in temps:
            os.unlink(name)
        raise InputError(write_problem(dst, exc)) from None
    frames_tmp, final_tmp = map(Path, temps)
    writer = video_io.FrameWriter(frames_tmp, info.width, info.height, rate)
    reader = video_io.FrameReader(src, info, rate)
    expected = info.frames_at(rate)
    frame_bar = _progress(expected, "frame", src.name, opts.no_progress, leave=bar is None)
    n = 0
    track_memory = getattr(opts, "track_memory", DEFAULT_MEMORY)
    tracker, counts = FaceTracker(memory=track_memory, fps=float(rate)), FaceCounts()
    try:
        frames = ((f"{src}#frame{i}", f) for i, f in enumerate(reader))
        stream = (deid_tracked(engine, model, frames, tracker, counts, opts.draw_boxes)
                  if model not in BASELINES
                  else _deid_stream(engine, model, frames, opts.draw_boxes, counts))
        for _, deid in stream:
            if isinstance(deid, BaseException):
                raise deid
            writer.send(deid)
            n += 1
            frame_bar.update(1)
        writer.close()
        if expected and n < 0.9 * expected - 1:  # a source that stops decoding part-way is not a finished video
            why = video_io.last_line(reader.errors()) if reader.errors() else "decoding stopped"
            raise InputError(f"{src}: only {n} of about {expected} frames could be decoded ({why}); nothing written")
        fate = video_io.mux(frames_tmp, src, final_tmp, keep_audio, keep, dst.suffix.lower(),
                            offset=info.video_start)
        video_io.verify(final_tmp, n, keep_audio)
        os.replace(final_tmp, dst)
    except video_io.VideoFileError as exc:
        raise InputError(write_problem(dst, exc)) from None
    except OSError as exc:
        raise InputError(write_problem(dst, exc)) from None
    finally:
        writer.abort()
        reader.close()
        frame_bar.close()
        for name in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
    size = f"{info.width}x{info.height}"
    turned = f", rotation {info.rotation}\u00b0 applied" if info.rotation else ""
    timing = f"{float(rate):.4g} fps" + (f" (variable-rate source resampled, {n / float(rate):.2f} s)"
                                         if info.vfr and not opts.fps else "")
    _say(f"wrote {dst}: {n} frames, {size}{turned} at {timing}, " +
         (f"with the source's audio ({fate})" if keep_audio else "no audio") +
         f"; {counts}; {tracker.held_total} face(s) held by tracking where the detector lost them", bar)
    return n
