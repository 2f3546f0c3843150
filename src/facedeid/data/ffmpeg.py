"""The ffmpeg binary of imageio-ffmpeg as a child process, started the way that is safe in a process holding gRPC
threads, plus whole-clip decode and encode on top of it (test clips, camera-move clips, the temporal metric).

Why not imageio-ffmpeg's own readers and writers: they start ffmpeg with `preexec_fn=os.setpgrp`, which makes
Python fork() the whole process instead of vfork()-and-exec. In a process whose gRPC threads are busy (a client
of the Triton server) the forked child can hang before it reaches exec, or print gRPC poller errors into ffmpeg's
stderr: a clip read or written next to a live client then fails at random. A new session (`start_new_session`)
keeps Ctrl-C in the terminal away from ffmpeg just as well and still lets Python use vfork."""

from __future__ import annotations

import itertools
import re
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np


class FFmpegError(RuntimeError):
    """ffmpeg could not read or write a file; the message names it and ends with ffmpeg's last words."""


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def popen_kwargs() -> dict:
    # Own session: a Ctrl-C in the terminal reaches the caller (which stops its ffmpegs itself), not ffmpeg
    # half-way; and no preexec_fn, so the child is started by vfork (see the module's docstring).
    return {"start_new_session": True}


def _last_words(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


_OUTPUT_VIDEO_RE = re.compile(r"Output #0.*?Stream #\S+: Video: rawvideo[^\n]*?, (\d+)x(\d+)[^\n]*?, ([\d.]+) fps",
                              re.S)
_DURATION_RE = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")


def _decode_cmd(path: Path, output_args: Iterable[str] = ()) -> list[str]:
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", *output_args,
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]


def _decoded_stream(path: Path, stderr: str, ok: bool) -> tuple[int, int, float]:
    """(width, height, fps) of the decoded RGB stream, from ffmpeg's report of its output."""
    size = _OUTPUT_VIDEO_RE.search(stderr)
    if not ok or size is None:
        raise FFmpegError(f"{path}: ffmpeg cannot decode it ({_last_words(stderr)})")
    return int(size.group(1)), int(size.group(2)), float(size.group(3))


def decode_video(path: Path, output_args: Iterable[str] = ()) -> tuple[list[np.ndarray], float]:
    """Every frame of the first video stream as RGB uint8 (upright: ffmpeg applies a rotation it is told of),
    and the frame rate of the decoded stream. For clips that fit in memory; `stream_video` for the others."""
    proc = subprocess.run(_decode_cmd(path, output_args), capture_output=True, timeout=600, **popen_kwargs())
    w, h, fps = _decoded_stream(path, proc.stderr.decode(errors="replace"), proc.returncode == 0)
    frame_bytes = w * h * 3
    count = len(proc.stdout) // frame_bytes
    data = np.frombuffer(proc.stdout, np.uint8, count * frame_bytes).reshape(count, h, w, 3)
    return list(data), fps


class VideoStream:
    """The first video stream's frames as RGB uint8, one at a time through a pipe (any length).
    `width`, `height`, `fps` (decoded stream) and `duration` (seconds, 0 when the container does not say) are
    known before the first frame: a first ffmpeg decodes one frame to report them."""

    def __init__(self, path: Path):
        self.path = Path(path)
        probe = subprocess.run(_decode_cmd(self.path, ["-frames:v", "1"]), capture_output=True, timeout=120,
                               **popen_kwargs())
        stderr = probe.stderr.decode(errors="replace")
        self.width, self.height, self.fps = _decoded_stream(self.path, stderr, probe.returncode == 0)
        duration = _DURATION_RE.search(stderr)
        self.duration = (int(duration.group(1)) * 3600 + int(duration.group(2)) * 60 + float(duration.group(3))
                         if duration else 0.0)
        self._err = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(_decode_cmd(self.path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=self._err, **popen_kwargs())

    def __iter__(self) -> Iterator[np.ndarray]:
        size = self.width * self.height * 3
        while len(buf := self._proc.stdout.read(size)) == size:
            yield np.frombuffer(buf, np.uint8).reshape(self.height, self.width, 3)
        if self._proc.wait(timeout=600) != 0:
            self._err.seek(0)
            raise FFmpegError(f"{self.path}: ffmpeg stopped decoding it "
                              f"({_last_words(self._err.read().decode(errors='replace'))})")

    def close(self) -> None:
        self._proc.stdout.close()
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait(timeout=60)
        self._err.close()


def encode_video(path: Path, frames: Iterable[np.ndarray], fps: float, *, crf: int = 10,
                 pix_fmt: str = "yuv420p") -> Path:
    """H.264 (libx264) of RGB uint8 frames, all of one size, at `fps`; the container follows the extension.
    Sides must suit `pix_fmt` (even for 4:2:0; use yuv444p for odd sizes): nothing is rescaled."""
    path = Path(path)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    h, w = first.shape[:2]
    rate = Fraction(fps).limit_denominator(1001)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [ffmpeg_exe(), "-y", "-nostdin", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
             "-r", str(rate), "-i", "-", "-an", "-c:v", "libx264", "-crf", str(crf), "-pix_fmt", pix_fmt, str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, **popen_kwargs())
        try:
            for frame in itertools.chain([first], frames):
                if frame.shape[:2] != (h, w):
                    raise ValueError(f"{path}: frame of {frame.shape[1]}x{frame.shape[0]} among {w}x{h} frames")
                proc.stdin.write(np.ascontiguousarray(frame, np.uint8).tobytes())
        except BrokenPipeError:
            pass  # ffmpeg stopped: its exit status and stderr say why
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
            code = proc.wait(timeout=600)
        if code != 0:
            err.seek(0)
            raise FFmpegError(f"{path}: ffmpeg could not write it ({_last_words(err.read().decode(errors='replace'))})")
    return path
