"""`facedeid run IN [OUT]` (= `python client/deid.py IN [OUT]`): de-identify an image, a video, or a folder of both.

* OUT defaults to `IN_anonymized.ext` (a folder: `IN_anonymized/`) next to the input, as deface does; an existing
  output is refused unless --overwrite.
* image -> image (format by OUT's extension); video -> video (H.264 via imageio-ffmpeg, the source's frame rate and
  size) with the source's audio copied in by ffmpeg (--no-audio drops it); folder -> folder with the same
  sub-paths. A folder run reports each file it cannot do (not media, unreadable, ...) in one line and goes on.
* Generators go through the server's detection ensemble `deid_<model>`; `--model blur|mosaic` anonymises locally
  the way `deface` does (CenterFace boxes), for comparison.
* Video: faces are tracked in the client (`facedeid.client.tracking`): each frame is detected by `detect_faces`
  and sent to `deid_<model>_boxes` with each track's smoothed box and fixed replacement (ksame's donor); scene cuts
  end tracks; low-confidence faces, and for up to `--track-memory` frames a face the detector lost, are blurred.
* No --url and nothing answering on the default address: the missing exports are made, a local server is started
  for this run and stopped after (said in one line). Several `--url`s spread frames over several servers.
* A frame that cannot be de-identified is never written with original pixels: that file fails with an error naming
  the frame (no partial file is left under the output's name).
* Every file is written to a temporary name in the output's folder, decoded back and only then renamed (a failed,
  killed or interrupted run leaves nothing under the output name). Output types that cannot hold the input (a
  video as .png, an animation as .jpg) and folders that cannot be written are refused before any work. Ctrl-C
  stops the run: the file in progress is removed, finished files stay, exit status 130.
* What leaves with the file: pixels upright (EXIF orientation, video rotation applied), audio (--no-audio drops
  it); no EXIF/XMP/ICC/text chunks, chapters, subtitle/data streams or container tags unless --keep-metadata
  names them (docs/reliability.md, "What leaves with the file").
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import tempfile
from pathlib import Path

import numpy as np

# gRPC logs an INFO line each time ffmpeg is forked while its threads are busy; the forks are safe (media.run_video).
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from .. import cli_args  # noqa: E402
from ..baselines import METHODS as BASELINES  # noqa: E402
from ..data.files import atomic_temp_file  # noqa: E402
from ..data.video import VIDEO_EXTS  # noqa: E402
from ..settings import DEFAULT_URL  # noqa: E402
from .cover import add_cover_argument, cover_problem  # noqa: E402
from .detection_settings import (  # noqa: E402
    add_detection_arguments,
    add_rotations_argument,
    detection_settings_from,
    face_prep_parameters,
    smallest_face_note,
    use_rotations,
)
from .image_files import MULTI_FRAME_EXTS, RUN_IMAGE_EXTS, frame_count  # noqa: E402
from .media import InputError, _progress, _say, run_images, run_video  # noqa: E402
from .tracking import DEFAULT_MEMORY  # noqa: E402
from .triton import DeidClient, DeidError, ensemble_name  # noqa: E402
from .video_io import OUTPUT_MUXERS  # noqa: E402

SUFFIX = "_anonymized"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=cli_args.prog("deid.py"), description="De-identify the faces in an image, a "
                                "video or a folder of both through a Triton server (started for the run if none "
                                "is running).")
    p.add_argument("input", type=Path, help="image, video, or folder of images and videos")
    p.add_argument("output", type=Path, nargs="?", default=None,
                   help=f"output file or folder (default: IN{SUFFIX}.ext, or folder IN{SUFFIX}/, next to IN)")
    p.add_argument("--model", default="ksame",
                   help="ksame (default: the best on the report-set frontier, README), mobileunet, resnet50unet, "
                        "d2gan, or blur/mosaic (done locally, no server)")
    p.add_argument("--url", action="append", default=None,
                   help=f"Triton gRPC address, repeatable (default {DEFAULT_URL}; when nothing answers there and no "
                        "--url is given, a local server is started for the run)")
    p.add_argument("--local", action="store_true",
                   help="no server: run the pipeline in this process on PyTorch (facedeid.runtime_torch)")
    p.add_argument("--device", default=None,
                   help="with --local: cpu or cuda (default: cuda where PyTorch sees one, else cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    p.add_argument("--no-audio", action="store_true", help="do not copy the source's audio into output videos")
    p.add_argument("--keep-metadata", type=lambda text: [t.strip() for t in text.split(",") if t.strip()],
                   default=[], metavar="TAGS",
                   help="comma-separated tags to keep (default none): container tags of a video (e.g. "
                        "creation_time), 'icc' for an image's colour profile; chapters, subtitles, data streams and "
                        "EXIF never leave")
    p.add_argument("--draw-boxes", action="store_true",
                   help="draw the detected face boxes on the output (for checking what was replaced)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--concurrency", type=int, default=8, help="frames in flight over all servers (default 8)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one frame before asking again "
                   "(default 120; the server still finishes the first)")
    p.add_argument("--retries", type=int, default=8, help="retries while a server is unavailable (about 40 s)")
    p.add_argument("--ready-timeout", type=float, default=60.0,
                   help="seconds to wait for the server(s) to be ready (default 60)")
    p.add_argument("--fps", type=float, default=None,
                   help="output video frame rate (default: the input's; a variable-rate input: its frames / "
                        "duration); frames are dropped or repeated by timestamp, so duration and audio sync are kept")
    p.add_argument("--repository", type=Path, default=None,
                   help="model repository for a server started for the run (default: model_repository/)")
    add_detection_arguments(p)
    add_rotations_argument(p)
    add_cover_argument(p)
    p.add_argument("--track-memory", type=int, default=DEFAULT_MEMORY,
                   help=f"video: frames a face stays anonymised (blurred) after the detector loses it (default "
                        f"{DEFAULT_MEMORY}; 0 = off)")
    return cli_args.finish(p)


def default_output(src: Path) -> Path:
    if src.is_dir():
        return src.with_name(src.name + SUFFIX)
    return src.with_name(f"{src.stem}{SUFFIX}{writable_suffix(src)}")


def writable_suffix(src: Path) -> str:
    """The source's extension, or .mkv for a video type this run cannot write H.264 into (.webm, .ogv, ...)."""
    if media_kind(src) == "video" and src.suffix.lower() not in OUTPUT_MUXERS:
        return ".mkv"
    return src.suffix


def media_kind(path: Path) -> str | None:
    ext = path.suffix.lower()
    return "image" if ext in RUN_IMAGE_EXTS else "video" if ext in VIDEO_EXTS else None


def output_problem(src: Path, dst: Path, kind: str) -> str | None:
    """Why dst's type cannot hold src (checked before any work), or None."""
    ext = dst.suffix.lower()
    if kind == "video" and ext not in OUTPUT_MUXERS:
        return (f"{dst}: a video cannot be written as {dst.suffix or 'a file without extension'} "
                f"(use {', '.join(OUTPUT_MUXERS)})")
    if kind == "image" and ext not in RUN_IMAGE_EXTS:
        return (f"{dst}: an image cannot be written as {dst.suffix or 'a file without extension'} "
                f"(use {', '.join(RUN_IMAGE_EXTS)})")
    if kind == "image" and ext not in MULTI_FRAME_EXTS:
        n = frame_count(src)
        if n > 1:
            return f"{src} has {n} frames and {dst.suffix} holds one (use {', '.join(MULTI_FRAME_EXTS)})"
    return None


def folder_problem(folder: Path) -> str | None:
    """Why nothing can be written in `folder` (read-only, full, not a folder), tried with a real temporary file."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = atomic_temp_file(folder / "probe")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        return f"cannot write to {folder} ({exc.strerror or exc})"
    return None


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


def local_engine(args, settings: dict):
    """`--local`: the pipeline in this process (ValueError: an unknown model or device, said in one line)."""
    from .local_engine import LocalEngine

    return LocalEngine(args.model, args.device, cover=args.cover, **settings)


def plan(src: Path, dst: Path, overwrite: bool) -> tuple[list[tuple[Path, Path, str]], list[str]]:
    """(src, dst, kind) jobs and one-line problems for everything under src (a file or a folder)."""
    if not src.exists():
        return [], [f"{src} does not exist"]
    if src.is_dir():
        candidates = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
        pairs = [(p, (dst / p.relative_to(src)).with_suffix(writable_suffix(p))) for p in candidates]
        if not candidates:
            return [], [f"{src} holds no files"]
    else:
        pairs = [(src, dst)]
    jobs, problems = [], []
    for s, d in pairs:
        kind = media_kind(s)
        if kind is None:
            problems.append(f"{s}: not an image or video ({', '.join(RUN_IMAGE_EXTS + VIDEO_EXTS)})")
        elif d.exists() and not overwrite:
            problems.append(f"{s}: {d} exists (--overwrite replaces it)")
        elif d.resolve() == s.resolve():
            problems.append(f"{s}: the output would replace the input")
        elif (why := output_problem(s, d, kind)) is not None:
            problems.append(why)
        else:
            jobs.append((s, d, kind))
    unwritable = {folder: folder_problem(folder) for folder in sorted({d.parent for _, d, _ in jobs})}
    problems += [why for why in unwritable.values() if why]
    return [job for job in jobs if not unwritable[job[1].parent]], problems


def _answers(url: str, timeout: float = 1.0) -> bool:
    host, _, port = url.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def server_for_run(args, model: str):
    """The URLs to use: --url, else the default address if something answers, else a local server for the run."""
    if args.url or args.model in BASELINES or args.local:
        yield args.url
        return
    if _answers(DEFAULT_URL):
        yield [DEFAULT_URL]
        return
    from ..export import export, needs_export
    from ..paths import DEFAULT_REPOSITORY
    from ..serving import local_server

    repository = args.repository or DEFAULT_REPOSITORY
    stale = needs_export(repository)
    log = Path(tempfile.gettempdir()) / f"facedeid-run-{os.getpid()}.log"
    print(f"deid: nothing answers on {DEFAULT_URL}: " + (f"exporting {', '.join(stale)}, then " if stale else "") +
          f"starting a local server from {repository} for this run, stopped after it (log: {log})",
          file=sys.stderr, flush=True)
    if stale:
        with contextlib.redirect_stdout(sys.stderr):
            export(stale, "auto", repository, log=lambda m: None)
    server = local_server.start(repository, log)
    try:
        yield [server.grpc_url]
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            log.unlink()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = detection_settings_from(args)
    except ValueError as exc:
        _say(str(exc))
        return 2
    if args.track_memory < 0:
        _say(f"--track-memory must be >= 0, got {args.track_memory}")
        return 2
    if (problem := cover_problem(args.model, args.cover)) is not None:
        _say(problem)
        return 2
    src = args.input
    dst = args.output or default_output(src)
    jobs, problems = plan(src, dst, args.overwrite)
    single = not src.is_dir()
    for problem in problems:
        _say(problem if single or not src.exists() else f"skipped {problem}")
    if not jobs:
        return 2
    model = args.model if args.model in BASELINES else ensemble_name(args.model, with_boxes=False)
    tally = {"written": 0, "failed": len(problems)}
    try:
        code = _run(args, settings, model, jobs, single, tally)
    except KeyboardInterrupt:
        # the file in progress has removed its temporary files on the way out (media.run_video, image_files)
        _say(f"interrupted: {tally['written']} file(s) written to {dst}; the file in progress was not written "
             "and nothing after it was started")
        return 130
    if code:
        return code
    if single and tally["written"] and any(kind == "image" for _, _, kind in jobs):
        _say(f"wrote {dst}")
    elif not single:
        _say(f"{src}: wrote {tally['written']} file(s) to {dst}" +
             (f", {tally['failed']} not done (see above)" if tally["failed"] else ""))
    return 0 if not tally["failed"] else 1


def _run(args, settings, model, jobs, single, tally) -> int:
    """The jobs through one engine; `tally` counts as it goes (an interrupted run reports what was done)."""
    src = args.input
    try:
        with server_for_run(args, model) as urls:
            engine = (LocalBaseline(args.model, **settings) if args.model in BASELINES else
                      local_engine(args, settings) if args.local else
                      DeidClient(urls, concurrency=args.concurrency, timeout_s=args.timeout, retries=args.retries,
                                 settings=settings, cover=args.cover))
            try:
                engine.wait_ready([model], timeout_s=args.ready_timeout)
                first_url = urls[0].split(",")[0] if urls else None
                note = smallest_face_note(face_prep_parameters(first_url)) if first_url else None
                if note:
                    _say(note)
                bar = None if single else _progress(len(jobs), "file", src.name, args.no_progress)
                images = [(s, d) for s, d, kind in jobs if kind == "image"]
                if images:
                    use_rotations(engine, args.rotations, "image")
                    run_images(engine, model, images, args, bar, tally)
                use_rotations(engine, args.rotations, "video")
                for s, d, kind in jobs:
                    if kind != "video":
                        continue
                    try:
                        run_video(engine, model, s, d, args, bar)
                        tally["written"] += 1
                    except (InputError, DeidError) as exc:
                        _say(f"failed {exc}", bar)
                        tally["failed"] += 1
                    if bar is not None:
                        bar.update(1)
                if bar is not None:
                    bar.close()
            finally:
                engine.close()
    except ValueError as exc:  # --local: an unknown model or device
        _say(str(exc))
        return 2
    except (DeidError, RuntimeError) as exc:  # no server: the reason (and a failed local server's log tail)
        _say(str(exc) or type(exc).__name__)
        return 1
    return 0
