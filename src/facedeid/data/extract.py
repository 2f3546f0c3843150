"""Build a DNA-format data set from videos: `facedeid data extract VIDEO_OR_DIR OUT --fps 1`.

Every video (one file, or every video file under a folder, recursively) is sampled at `--fps` frames per second by
timestamp, each sampled frame is labelled with face boxes by the product's CenterFace detector, and written as

```
OUT/images/<video sub-path>/<stem>_t<seconds>.jpg     e.g. OUT/images/news/clip/clip_t000012s000.jpg
OUT/labels/<video sub-path>/<stem>_t<seconds>.txt     one face per line: 0 x_center y_center width height (0..1)
```
where `<video sub-path>` is the video's path under VIDEO_OR_DIR without its extension (`clip` for a single file),
and `<seconds>` is the frame's presentation time in the video as `<whole seconds>s<milliseconds>`
(`_t000012s345` = 12.345 s); dots in a video's name become `_`. Every sampled frame gets a
label file, empty when no face was found, so "image and label both present" means "done".

Detection runs through the Triton server (`--url`, models `detect_prep` and `face_detector`, decoded here) or in
process with ONNX Runtime (`--local`); both use the same pre/post code, so they give the same boxes.

Resumable: files are written atomically (temporary file + rename, image first, label last), frames whose image and
label already exist are not detected again, and a finished video is recorded in OUT/.extract/ so a rerun skips it
without decoding it. A video that cannot be opened or stops decoding is reported, the others go on, and the exit
status is 1.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import cli_args
from ..client.grpc_backend import first_line
from ..crops import clean_boxes
from ..settings import DEFAULT_URL, NATIVE
from .detectors import LocalDetector, TritonDetector
from .dna import IMAGE_EXTS, atomic_write_bytes, write_image, write_labels
from .video import VIDEO_EXTS, VideoError, expected_samples, open_video, sample_frames

STATE_DIR = ".extract"  # OUT/.extract/<video sub-path>.json: videos finished with these settings
SHORT_READ = 0.9  # a video that ends before this share of the frames its container announces is reported failed

# <stem>_t<seconds>s<milliseconds>: the frame names this tool writes (no dot in the stem, so no tool mistakes part
# of it for a file extension); summary.py reads videos and timestamps back from them. `_t12.5` / `_t000012.000`
# style names (other tools) are read too.
FRAME_NAME_RE = re.compile(r"^(?P<video>.+)_t(?P<seconds>\d+)(?:(?P<sep>[s.])(?P<fraction>\d+))?$")


def frame_stem(video_stem: str, seconds: float) -> str:
    """File stem of the frame at `seconds` of a video: `<video_stem>_t000012s345` = 12.345 s (sorts by time)."""
    ms = max(0, round(seconds * 1000))
    return f"{video_stem}_t{ms // 1000:06d}s{ms % 1000:03d}"


def parse_frame_stem(stem: str) -> tuple[str, float] | None:
    """(video stem, seconds) from a frame stem written by frame_stem, or None when the name does not tell."""
    match = FRAME_NAME_RE.match(stem)
    if not match:
        return None
    fraction = match["fraction"] or ""
    if match["sep"] == "s" and len(fraction) != 3:
        return None
    return match["video"], int(match["seconds"]) + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


# --------------------------------------------------------------------------------------------------- videos


@dataclass(frozen=True)
class VideoJob:
    path: Path
    rel: str  # sub-path under images/ (no extension), '/'-separated; its last part is the frame-name prefix

    @property
    def stem(self) -> str:
        return self.rel.rsplit("/", 1)[-1]


def find_videos(source) -> list[VideoJob]:
    """The video file, or every video file under the folder (sorted, hidden files skipped)."""
    source = Path(source)
    if source.is_file():
        return [VideoJob(source, _safe_part(source.stem, stem=True))]
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such video file or folder")
    paths = sorted(
        p for p in source.rglob("*")
        if p.is_file() and p.suffix.lower() in VIDEO_EXTS
        and not any(part.startswith(".") for part in p.relative_to(source).parts)
    )
    rels = []
    for p in paths:
        parts = p.relative_to(source).with_suffix("").parts
        rels.append("/".join([*(_safe_part(x) for x in parts[:-1]), _safe_part(parts[-1], stem=True)]))
    jobs = []
    for path, rel in zip(paths, rels):
        if rels.count(rel) > 1:  # clip.mp4 and clip.avi side by side: keep both, told apart by extension
            rel = f"{rel}_{path.suffix.lower().lstrip('.')}"
        jobs.append(VideoJob(path, rel))
    return jobs


def _safe_part(name: str, stem: bool = False) -> str:
    """A path part safe to use in file names: no separators or control characters, no leading dot; for the part
    that prefixes frame names (stem=True) no dot at all, so `Path.with_suffix` on a frame name never cuts into it."""
    cleaned = re.sub(r"[\x00-\x1f/\\]", "_", name).strip().lstrip(".")
    if stem:
        cleaned = cleaned.replace(".", "_")
    return cleaned or "video"


class DetectorError(RuntimeError):
    """The detector failed (e.g. the server went away): the whole run stops, a rerun resumes it."""


# ---------------------------------------------------------------------------------------------- extraction


@dataclass
class VideoResult:
    video: str  # source path
    rel: str
    status: str  # done | skipped (finished before) | failed
    frames: int = 0  # sampled frames now present (written + resumed)
    written: int = 0
    resumed: int = 0  # already present from an earlier run
    faces: int = 0  # boxes written in this run
    error: str | None = None


@dataclass
class ExtractReport:
    out: str
    fps: float
    detector: str
    videos: list[VideoResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[VideoResult]:
        return [v for v in self.videos if v.status == "failed"]

    def text(self) -> str:
        n = lambda key: sum(getattr(v, key) for v in self.videos)  # noqa: E731
        skipped = sum(v.status == "skipped" for v in self.videos)
        lines = [f"{len(self.videos)} video(s) -> {self.out}: {n('written')} frames written "
                 f"({n('faces')} face boxes), {n('resumed')} already present, {skipped} video(s) already complete, "
                 f"{len(self.failed)} failed; detector {self.detector}; {self.seconds:.1f} s"]
        lines += [f"FAILED {v.video}: {v.error}" for v in self.failed]
        return "\n".join(lines)


def _state_path(out: Path, job: VideoJob) -> Path:
    return out / STATE_DIR / f"{job.rel}.json"


def _settings(job: VideoJob, fps: float, ext: str) -> dict:
    stat = job.path.stat()
    return {"source": str(job.path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "fps": fps,
            "ext": ext}


def _already_done(out: Path, job: VideoJob, settings: dict) -> dict | None:
    try:
        state = json.loads(_state_path(out, job).read_text())
    except (OSError, ValueError):
        return None
    same = all(state.get(k) == v for k, v in settings.items() if k != "source")
    return state if same else None


def extract_video(job: VideoJob, out: Path, detector, fps: float = 1.0, decoder: str = "auto", ext: str = ".jpg",
                  quality: int = 95, force: bool = False, bar=None) -> VideoResult:
    """Sample, label and write one video; see the module docstring for names and resumption."""
    result = VideoResult(str(job.path), job.rel, "done")
    settings = _settings(job, fps, ext)
    if not force:
        state = _already_done(out, job, settings)
        if state is not None:
            result.status, result.frames, result.resumed = "skipped", state["frames"], state["frames"]
            if bar is not None:
                bar.update(state["frames"])
            return result
    try:
        reader = open_video(job.path, decoder)
    except VideoError as exc:
        result.status, result.error = "failed", str(exc)
        return result
    images, labels = out / "images" / job.rel, out / "labels" / job.rel
    last_seconds = None
    try:
        if bar is not None:
            bar.set_description(job.rel[-30:])
        for _index, seconds, fetch in sample_frames(reader.frames(), fps, reader.info.fps):
            stem = frame_stem(job.stem, seconds)
            if last_seconds is not None and stem == frame_stem(job.stem, last_seconds):
                continue  # two frames within the same millisecond (fps <= 0 on a > 1000 fps stream)
            last_seconds = seconds
            image_path, label_path = images / f"{stem}{ext}", labels / f"{stem}.txt"
            if not force and image_path.is_file() and label_path.is_file():
                result.resumed += 1
            else:
                frame = fetch()
                try:
                    boxes, _ = detector(frame)
                except Exception as exc:  # noqa: BLE001 - a server gone away, a model error: stop the run
                    raise DetectorError(f"the detector failed on {image_path.name} ({first_line(exc)}); "
                                        "fix it and rerun the same command to resume") from exc
                boxes = clean_boxes(np.asarray(boxes, np.float32).reshape(-1, 4), frame.shape[1], frame.shape[0])
                write_image(image_path, frame, quality)
                write_labels(label_path, boxes, frame.shape[1], frame.shape[0])
                result.written += 1
                result.faces += len(boxes)
            result.frames += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(faces=result.faces, refresh=False)
    except VideoError as exc:
        result.status, result.error = "failed", f"{job.path}: {exc} (after {result.frames} sampled frames)"
        return result
    finally:
        reader.close()
    if result.frames == 0:
        result.status, result.error = "failed", f"{job.path}: no frame could be decoded"
        return result
    expected = reader.info.frame_count
    if expected and reader.decoded < SHORT_READ * expected:
        result.status = "failed"
        result.error = (f"{job.path}: decoding stopped at frame {reader.decoded} of {expected} (truncated or corrupt "
                        f"file?); the {result.frames} frames kept so far are written")
        return result
    state = {**settings, "rel": job.rel, "frames": result.frames, "decoder": reader.info.backend,
             "native_fps": reader.info.fps, "width": reader.info.width, "height": reader.info.height,
             "last_timestamp": last_seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_bytes(_state_path(out, job), json.dumps(state, indent=1).encode())
    return result


def extract(source, out, detector, fps: float = 1.0, decoder: str = "auto", ext: str = ".jpg", quality: int = 95,
            force: bool = False, progress: bool = True) -> ExtractReport:
    """Extract every video under `source` into the DNA-format set `out`; returns what happened per video."""
    from tqdm import tqdm

    out = Path(out)
    ext = "." + ext.lower().lstrip(".")
    if ext not in IMAGE_EXTS:
        raise ValueError(f"image extension must be one of {', '.join(IMAGE_EXTS)}, got {ext}")
    jobs = find_videos(source)
    if not jobs:
        raise FileNotFoundError(f"{source}: no video files (looked for {', '.join(VIDEO_EXTS)})")
    report = ExtractReport(str(out), fps, getattr(detector, "where", type(detector).__name__))
    started = time.monotonic()
    total = 0
    for job in jobs:  # cheap header read, for the bar's total
        try:
            reader = open_video(job.path, decoder)
        except VideoError:
            continue
        expected = expected_samples(reader.info, fps)
        reader.close()
        total = None if expected is None or total is None else total + expected
    with tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True, file=sys.stderr) as bar:
        for job in jobs:
            result = extract_video(job, out, detector, fps, decoder, ext, quality, force, bar)
            report.videos.append(result)
            if result.status == "failed":
                bar.write(f"error: {result.error}", file=sys.stderr)
    report.seconds = time.monotonic() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="facedeid data extract", description=__doc__.split("\n\n")[0],
        epilog="Summarise the result with `facedeid data summary OUT` (see docs/data_tools.md).")
    parser.add_argument("source", type=Path, metavar="VIDEO_OR_DIR", help="a video file, or a folder searched "
                        "recursively for video files")
    parser.add_argument("out", type=Path, metavar="OUT", help="DNA-format output folder (images/, labels/)")
    parser.add_argument("--fps", type=float, default=1.0, help="frames per second to keep, by timestamp "
                        "(default 1, as the DNA set; 0 keeps every frame)")
    parser.add_argument("--local", action="store_true", help="run the detector in process (ONNX Runtime) instead "
                        "of through the Triton server")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"Triton gRPC address (default {DEFAULT_URL})")
    parser.add_argument("--threshold", type=float, default=None,
                        help=f"detector score threshold (default {NATIVE.threshold})")
    parser.add_argument("--det-size", dest="det_size", type=int, default=None,
                        help=f"long side of the detector's downscaled pass (default {NATIVE.det_size})")
    parser.add_argument("--labeler", choices=("centerface", "dlib"), default="centerface",
                        help="centerface (the product's detector, default) or dlib (dlib's CNN face detector, "
                             "independent of the product: labels to grade the detector with)")
    parser.add_argument("--decoder", choices=("auto", "opencv", "ffmpeg"), default="auto",
                        help="video decoder (default: OpenCV, ffmpeg from imageio-ffmpeg when OpenCV fails)")
    parser.add_argument("--ext", default="jpg", help="image format of the frames: jpg (default) or png")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")
    parser.add_argument("--force", action="store_true", help="redo frames and videos that are already present")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads with --local (0: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--report", type=Path, help="also write what happened per video as JSON to this file")
    args = cli_args.finish(parser).parse_args(argv)
    if not (args.fps >= 0 and math.isfinite(args.fps)):
        parser.error("--fps must be a number >= 0")
    from ..detection import check_settings

    try:
        check_settings(NATIVE.threshold if args.threshold is None else args.threshold,
                       NATIVE.det_size if args.det_size is None else args.det_size)
    except ValueError as exc:
        parser.error(str(exc))
    if not 1 <= args.quality <= 100:
        parser.error("--quality must be 1..100")
    detector = None
    try:
        if args.labeler == "dlib":
            from .labelers import DlibLabeler

            detector = DlibLabeler()
        else:
            detector = (LocalDetector(args.threshold, args.threads, args.det_size) if args.local
                        else TritonDetector(args.url, args.threshold, det_size=args.det_size))
        report = extract(args.source, args.out, detector, args.fps, args.decoder, args.ext, args.quality,
                         args.force, progress=not args.no_progress)
    except (FileNotFoundError, ConnectionError, ValueError, DetectorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        if hasattr(detector, "close"):
            detector.close()
    print(report.text())
    if args.report:
        data = {**{k: v for k, v in asdict(report).items() if k != "videos"},
                "videos": [asdict(v) for v in report.videos]}
        atomic_write_bytes(args.report, json.dumps(data, indent=1).encode())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
