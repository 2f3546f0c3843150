"""Reading videos: OpenCV or ffmpeg (facedeid.data.ffmpeg) readers that yield (index, seconds, fetch) per frame,
sampling at a frame rate by timestamp, and the file extensions taken as videos (data extraction and
`facedeid run` on a video both use these)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .ffmpeg import FFmpegError, VideoStream

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv",
              ".flv", ".3gp", ".ogv", ".mxf", ".vob")


class VideoError(RuntimeError):
    """A video that cannot be opened or decoded; the message names the file."""


@dataclass
class VideoInfo:
    backend: str
    fps: float  # native frame rate (0 when the container does not say)
    frame_count: int  # as the container says (an estimate; 0 when unknown)
    width: int
    height: int

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps if self.fps > 0 and self.frame_count > 0 else 0.0


class _OpenCVReader:
    """Frames by OpenCV: every frame is grabbed (demuxed and decoded), only sampled ones converted to RGB."""

    def __init__(self, path: Path):
        import cv2

        self.cv2 = cv2
        self.cap = cv2.VideoCapture(str(path))
        if not self.cap.isOpened():
            raise VideoError(f"{path}: OpenCV cannot open it")
        # Frames as players show them: a phone video stores its pixels sideways with a rotation (display matrix)
        # that OpenCV ignores unless asked; the ffmpeg reader rotates by default.
        self.cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        self.info = VideoInfo("opencv", float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0),
                              max(0, int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)),
                              int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),  # rotated sides once AUTO is on
                              int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0))

    def frames(self) -> Iterator[tuple[int, float, Callable[[], np.ndarray]]]:
        """(index, seconds, fetch) per frame: seconds from the stream's timestamps while they increase, else
        index / native fps."""
        cv2, cap = self.cv2, self.cap
        fps = self.info.fps
        index, last_ms, use_pts = 0, -1.0, True
        while cap.grab():
            pos_ms = float(cap.get(cv2.CAP_PROP_POS_MSEC))
            if use_pts and not (math.isfinite(pos_ms) and (index == 0 or pos_ms > last_ms)):
                use_pts = False  # no usable stream timestamps (or they went backwards): index / native fps
            seconds = pos_ms / 1000.0 if use_pts else index / (fps if fps > 0 else 25.0)
            last_ms = pos_ms

            def fetch(index: int = index) -> np.ndarray:  # bound now: the caller may fetch after the loop moved on
                ok, bgr = cap.retrieve()
                if not ok or bgr is None:
                    raise VideoError(f"frame {index} could not be decoded")
                if bgr.ndim == 2:
                    return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
                return np.ascontiguousarray(bgr[:, :, 2::-1])

            self.decoded = index + 1
            yield index, seconds, fetch
            index += 1

    decoded = 0  # frames read so far

    def close(self) -> None:
        self.cap.release()


class _FFmpegReader:
    """Frames by the ffmpeg binary of imageio-ffmpeg (RGB through a pipe, facedeid.data.ffmpeg); timestamps are
    index / fps."""

    def __init__(self, path: Path):
        try:
            self.stream = VideoStream(path)
        except FFmpegError as exc:
            raise VideoError(str(exc)) from None
        except OSError as exc:
            raise VideoError(f"{path}: ffmpeg cannot open it ({exc})") from None
        s = self.stream
        self.info = VideoInfo("ffmpeg", s.fps, int(round(s.duration * s.fps)) if s.fps else 0, s.width, s.height)

    def frames(self) -> Iterator[tuple[int, float, Callable[[], np.ndarray]]]:
        fps = self.info.fps or 25.0
        try:
            for index, frame in enumerate(self.stream):
                self.decoded = index + 1
                yield index, index / fps, (lambda f=frame: f.copy())
        except FFmpegError as exc:
            raise VideoError(str(exc)) from None

    decoded = 0  # frames read so far

    def close(self) -> None:
        self.stream.close()


def open_video(path, decoder: str = "auto"):
    """A reader for the video: OpenCV, or ffmpeg (facedeid.data.ffmpeg) when OpenCV cannot open it or when asked."""
    path = Path(path)
    if decoder not in ("auto", "opencv", "ffmpeg"):
        raise ValueError(f"decoder must be auto, opencv or ffmpeg, got {decoder!r}")
    errors = []
    for name in (("opencv", "ffmpeg") if decoder == "auto" else (decoder,)):
        try:
            return _OpenCVReader(path) if name == "opencv" else _FFmpegReader(path)
        except VideoError as exc:
            errors.append(str(exc))
    raise VideoError("; ".join(errors))


def sample_frames(frames, fps: float, native_fps: float) -> Iterator[tuple[int, float, Callable[[], np.ndarray]]]:
    """Keep the first frame at or after each multiple of 1/fps (with half a native frame of tolerance).

    fps <= 0 keeps every frame; a stream slower than fps gives each of its frames once."""
    if fps <= 0:
        yield from frames
        return
    interval = 1.0 / fps
    tol = 0.5 / native_fps if native_fps > 0 else 1e-6
    next_t = 0.0
    for index, seconds, fetch in frames:
        if seconds + tol >= next_t:
            yield index, seconds, fetch
            next_t = (math.floor((seconds + tol) / interval) + 1) * interval


def expected_samples(info: VideoInfo, fps: float) -> int | None:
    if info.duration <= 0:
        return None
    if fps <= 0:
        return info.frame_count
    return max(1, math.ceil(info.duration * fps - 1e-6))
