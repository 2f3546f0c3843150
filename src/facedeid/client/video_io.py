"""Video files for `facedeid run`, through the ffmpeg binary of imageio-ffmpeg: what a source holds (probe), its
frames as players show them at a constant rate, the encoder for the de-identified frames, the final mux that
decides what leaves with the file, and the check of the written file.

* Orientation: ffmpeg applies the source's rotation (display matrix) while decoding, so frames are upright and the
  output is written upright with no rotation.
* Time: frames are read at one constant rate chosen from the source's packet timestamps (the exact rate of a
  constant-rate source; frames / duration for a variable-rate one, ffmpeg dropping or repeating frames by
  timestamp), and written at that rate, so the output lasts as long as the source and its audio stays in sync.
* Metadata (the policy, docs/reliability.md): the output holds the video and, unless --no-audio, the source's
  audio streams; no chapters, subtitle, data or attachment streams, no container or stream tags (title, comment,
  location, creation time, encoder), except the tags named with --keep-metadata.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..data.ffmpeg import ffmpeg_exe, popen_kwargs

# Containers `facedeid run` writes H.264 (and the source's audio, else AAC) into, and ffmpeg's muxer for each (named,
# so an upper-case extension is no problem). Others (.webm, .ogv, .mpg, ...) cannot hold H.264 and are refused.
OUTPUT_MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi", ".ts": "mpegts",
                 ".mts": "mpegts", ".m2ts": "mpegts", ".flv": "flv", ".3gp": "3gp"}
MAX_VFR_DENOMINATOR = 1001
NOPTS = -(2 ** 63)  # ffmpeg's "no timestamp"


class VideoFileError(Exception):
    """A source that cannot be read as asked, or an output that could not be written: one line."""


@dataclass
class VideoProbe:
    width: int  # as displayed (the rotation applied)
    height: int
    rotation: int  # degrees of the source's display matrix (0 when none)
    rate: Fraction  # the constant frame rate frames are read and written at
    vfr: bool  # the source's frame durations differ
    packets: int  # video packets the file holds (readable ones)
    duration: float  # seconds, as the container says
    start: float  # container start time (s)
    video_start: float  # first video timestamp (s), after the file start that ffmpeg subtracts from every stream
    streams: dict = field(default_factory=dict)  # kind -> count (Video, Audio, Subtitle, Data, Attachment)
    chapters: int = 0
    truncated: bool = False
    pix_fmt: str = ""
    span: float = 0.0  # seconds of video, from the packets (0 when under two)

    def frames_at(self, rate: Fraction) -> int | None:
        """Frames the video gives at `rate`: its span by the rate (None when the packets do not tell)."""
        return max(1, round(self.span * float(rate))) if self.span > 0 else None

    @property
    def expected_frames(self) -> int:
        return max(1, round((self.duration or self.packets / float(self.rate)) * float(self.rate)))


_STREAM_RE = re.compile(r"^\s*Stream #\d+:\d+\S*: (Video|Audio|Subtitle|Data|Attachment): (.*)$", re.M)


def probe(path: Path) -> VideoProbe:
    """What ffmpeg says about the file: its header, and the timestamps of its video packets (read, not decoded)."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy",
                           "-f", "framecrc", "-"], capture_output=True, text=True, errors="replace", timeout=600,
                          **popen_kwargs())
    header = proc.stderr.split("\nOutput #0")[0].split("\nStream mapping:")[0]
    streams: dict[str, int] = {}
    for kind, _ in _STREAM_RE.findall(header):
        streams[kind] = streams.get(kind, 0) + 1
    video = next((m for m in _STREAM_RE.finditer(header) if m.group(1) == "Video"), None)
    if video is None or proc.returncode != 0 and "Output #0" not in header:
        last = [line.strip() for line in header.splitlines() if line.strip()][-1:] or ["no output"]
        reason = last[0]
        if "moov atom not found" in header:
            reason = "moov atom not found: the file is truncated or was never finished"
        raise VideoFileError(f"{path}: cannot read it as a video ({reason[:200]})")
    size = re.search(r"\b(\d{2,5})x(\d{2,5})\b", video.group(2))
    if not size:
        raise VideoFileError(f"{path}: ffmpeg gives no frame size for its video")
    width, height = int(size.group(1)), int(size.group(2))
    pix = re.search(r"\b(yuv\w+|rgb\w+|gray\w*|nv\d\w*|bgr\w+|gbr\w+)\b", video.group(2))
    section = header[video.end():]
    nxt = _STREAM_RE.search(section)
    rot = re.search(r"[Dd]isplay [Mm]atrix: rotation of (-?[\d.]+) degrees", section[:nxt.start()] if nxt else section)
    rotation = int(round(float(rot.group(1)))) % 360 if rot else 0
    if rotation % 180 == 90:
        width, height = height, width
    dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", header)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else 0.0
    start = re.search(r"Duration: [^\n]*?start: (-?[\d.]+)", header)
    chapters = len(re.findall(r"^\s*Chapter #", header, flags=re.M))
    tb = re.search(r"^#tb 0: (\d+)/(\d+)", proc.stdout, flags=re.M)
    timebase = Fraction(int(tb.group(1)), int(tb.group(2))) if tb else Fraction(1, 1000)
    pts, durs = [], []
    for line in proc.stdout.splitlines():
        if line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")]
        try:
            stamp = int(parts[2]) if int(parts[2]) != NOPTS else int(parts[1])  # AVI: decode times only
            if stamp != NOPTS:
                pts.append(stamp)
                durs.append(int(parts[3]))
        except (IndexError, ValueError):
            continue
    order = sorted(range(len(pts)), key=pts.__getitem__)
    pts, durs = [pts[i] for i in order], [durs[i] for i in order]
    count = len(pts)
    steps = [b - a for a, b in zip(pts, pts[1:])]
    if steps and min(steps) <= 0:  # repeated or unordered timestamps say nothing about time: the header's rate
        pts, durs, steps = pts[:1], durs[:1], []
    vfr = len(set(steps)) > 1 and (max(steps) - min(steps)) > 1  # one tick of jitter is rounding, not VFR
    truncated = "partial file" in proc.stderr or "Invalid NAL unit size" in proc.stderr and count < 2
    fps = re.search(r"([\d.]+) fps", video.group(2))
    if truncated or len(pts) < 2:  # the header's rate: the packets that could be read say little
        rate = Fraction(fps.group(1)).limit_denominator(MAX_VFR_DENOMINATOR) if fps else Fraction(25)
    elif not vfr:
        rate = 1 / (Fraction(round(sum(steps) / len(steps))) * timebase)
    else:
        rate = Fraction(len(pts) / float(_span(pts, durs, steps, timebase))).limit_denominator(MAX_VFR_DENOMINATOR)
    if rate <= 0 or not math.isfinite(float(rate)):
        rate = Fraction(25)
    return VideoProbe(width, height, rotation, rate, vfr, count, duration, float(start.group(1)) if start else 0.0,
                      float(pts[0] * timebase) if pts else 0.0, streams, chapters, truncated,
                      pix.group(1) if pix else "", float(_span(pts, durs, steps, timebase)) if len(pts) > 1 else 0.0)


def _span(pts: list[int], durs: list[int], steps: list[int], timebase: Fraction) -> Fraction:
    """Seconds from the first frame's start to the last frame's end (each packet's own duration, where given)."""
    typical = sorted(steps)[len(steps) // 2] if steps else 0
    end = max(p + (d if d > 0 else typical) for p, d in zip(pts, durs))
    return (end - pts[0]) * timebase


class FrameReader:
    """RGB frames of the source's first video stream, upright, at `rate` frames per second (ffmpeg pipe)."""

    def __init__(self, path: Path, info: VideoProbe, rate: Fraction):
        self.path, self.info = path, info
        self._err = tempfile.TemporaryFile()
        frames = info.frames_at(rate)
        # at most the source's duration of frames: ffmpeg's constant-rate output may repeat the last frame past it
        limit = ["-frames:v", str(frames)] if frames else []
        self.proc = subprocess.Popen(
            [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-an", "-sn", "-dn",
             "-fps_mode", "cfr", "-r", str(rate), *limit, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err, **popen_kwargs())
        self.read = 0

    def __iter__(self):
        w, h = self.info.width, self.info.height
        size = w * h * 3
        while True:
            buf = self.proc.stdout.read(size)
            if len(buf) < size:
                return
            self.read += 1
            yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)

    def errors(self) -> str:
        self._err.seek(0)
        return self._err.read().decode(errors="replace").strip()

    def close(self) -> None:
        _stop(self.proc)
        self._err.close()


def _stop(proc: subprocess.Popen) -> None:
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


class FrameWriter:
    """H.264 from RGB frames at `rate` into `path` (a temporary name; the final mux decides the container's
    contents). Started at once: forking ffmpeg later, while frames are in flight over gRPC, breaks the encoder
    (gRPC skips its fork handlers when other threads are inside it)."""

    def __init__(self, path: Path, width: int, height: int, rate: Fraction):
        # The source's size exactly: 4:2:0 chroma needs even sides, so an odd-sized source is written as 4:4:4
        # (fewer players play that, but no pixel row or column is added or lost).
        pix = "yuv444p" if width % 2 or height % 2 else "yuv420p"
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [ffmpeg_exe(), "-nostdin", "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
             "-s", f"{width}x{height}", "-r", str(rate), "-i", "-", "-c:v", "libx264", "-crf", "10",
             "-pix_fmt", pix, "-f", "matroska", str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._err, **popen_kwargs())
        self.frames = 0

    def send(self, frame: np.ndarray) -> None:
        try:
            self.proc.stdin.write(np.ascontiguousarray(frame, np.uint8).tobytes())
        except (BrokenPipeError, OSError):
            raise VideoFileError(self._failure()) from None
        self.frames += 1

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        if self.proc.wait() != 0:
            raise VideoFileError(self._failure())

    def _failure(self) -> str:
        self.proc.wait()
        self._err.seek(0)
        return "the encoder failed: " + last_line(self._err.read().decode(errors="replace"))

    def abort(self) -> None:
        _stop(self.proc)
        self._err.close()


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no message"


def container_tags(path: Path) -> dict[str, str]:
    """The source's container (global) tags, as ffmpeg lists them (lower-case keys)."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True,
                          text=True, errors="replace", timeout=120, **popen_kwargs())
    tags: dict[str, str] = {}
    inside = False
    for line in proc.stderr.splitlines():
        if line.startswith("Input #0"):
            inside = True
            continue
        if not inside:
            continue
        if line.strip() == "Metadata:" and line.startswith("  ") and not line.startswith("   "):
            continue
        match = re.match(r"^    (\S[^:]*?)\s*: (.*)$", line)
        if not match:
            break  # Duration:, Chapters:, Stream #...: the global tags are over
        key, value = match.group(1).strip().lower(), match.group(2)
        tags[key] = value
    return tags


def mux(video: Path, source: Path, dst_tmp: Path, audio: bool, keep: list[str], ext: str,
        offset: float = 0.0) -> str:
    """The written video's container: the encoded frames, the source's audio when `audio` (copied, else AAC) and
    nothing else: no chapters, subtitles, data or attachments, no tags but the ones in `keep`. Returns the
    audio's fate ("copied", "re-encoded as AAC", "")."""
    base = [ffmpeg_exe(), "-nostdin", "-y", "-v", "error"]
    if audio and abs(offset) > 1e-3:  # the source's video starts after its audio: keep that gap
        base += ["-itsoffset", f"{offset:.6f}"]
    base += ["-i", str(video)]
    if audio:
        base += ["-i", str(source), "-map", "0:v:0", "-map", "1:a"]
    else:
        base += ["-map", "0:v:0"]
    base += ["-c:v", "copy", *(["-bsf:v", "h264_mp4toannexb"] if OUTPUT_MUXERS[ext] == "avi" else []),
             "-map_metadata", "-1", "-map_chapters", "-1", "-sn", "-dn",
             "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]
    if keep:
        tags = container_tags(source)
        for key in keep:
            if key.lower() in tags:
                base += ["-metadata", f"{key.lower()}={tags[key.lower()]}"]
    tail = ["-f", OUTPUT_MUXERS[ext], str(dst_tmp)]
    if not audio:
        proc = subprocess.run([*base, *tail], capture_output=True, text=True, errors="replace", **popen_kwargs())
        if proc.returncode != 0:
            raise VideoFileError(f"cannot write the video ({last_line(proc.stderr)})")
        return ""
    errors = ""
    for codec, fate in ((["-c:a", "copy"], "copied"), (["-c:a", "aac"], "re-encoded as AAC")):
        proc = subprocess.run([*base, *codec, *tail], capture_output=True, text=True, errors="replace",
                              **popen_kwargs())
        if proc.returncode == 0:
            return fate
        errors = last_line(proc.stderr)
        if write_failure(errors):
            raise VideoFileError(f"cannot write the video ({errors})")
    # blame the audio only when the video alone can be written
    mux(video, source, dst_tmp, False, keep, ext)
    raise VideoFileError(f"cannot copy the source's audio ({errors}); use --no-audio to drop it")


def write_failure(text: str) -> bool:
    """An error of the output's disk or folder (not of the media)."""
    return any(s in text for s in ("No space left", "Read-only file system", "Permission denied",
                                   "Disk quota exceeded", "File too large"))


def verify(path: Path, frames: int, audio: bool) -> None:
    """Decode the written file: every frame there and playable, and the audio when there should be one."""
    proc = subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0",
                           *(["-map", "0:a:0"] if audio else []), "-f", "framecrc", "-"],
                          capture_output=True, text=True, errors="replace", timeout=3600, **popen_kwargs())
    lines = [line for line in proc.stdout.splitlines() if line and not line.startswith("#")]
    video = sum(1 for line in lines if line.startswith("0,"))
    sound = sum(1 for line in lines if line.startswith("1,"))
    if proc.returncode != 0 or video != frames or audio and sound == 0:
        reason = last_line(proc.stderr) if proc.stderr.strip() else f"{video} of {frames} frames decode"
        raise VideoFileError(f"the written video does not play back ({reason})")


def disk_reason(folder: Path, text: str = "") -> str | None:
    """The folder's own problem, when there is one: full or read-only (the real cause of a failed write)."""
    if "No space left" in text or "Disk quota" in text or "File too large" in text:
        return f"no space left in {folder}"
    if "Read-only file system" in text or "Permission denied" in text:
        return f"{folder} is read-only"
    with contextlib.suppress(OSError):
        st = os.statvfs(folder)
        if st.f_bavail * st.f_frsize < 1 << 20:
            return f"no space left in {folder}"
    return None
