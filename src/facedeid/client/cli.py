"""`facedeid run IN [OUT]` (= `python client/deid.py IN [OUT]`): de-identify an image, a video, or a folder of both.

* OUT defaults to `IN_anonymized.ext` (a folder: `IN_anonymized/`) next to the input, as deface does; an existing
  output is refused unless --overwrite.
* image -> image (format by OUT's extension); video -> video (H.264 via imageio-ffmpeg, the source's frame rate and
  size) with the source's audio copied in by ffmpeg (--no-audio drops it); folder -> folder with the same
  sub-paths. A folder run reports each file it cannot do (not media, unreadable, ...) in one line and goes on.
* Generators go through the server's detection ensemble `deid_<model>`; `--model blur|mosaic` anonymises locally
  the way `deface` does (CenterFace boxes), for comparison.
* Video: a face found in one frame stays anonymised for up to `--track-memory` frames where the detector loses it
  (IoU tracking in the client, `facedeid.client.tracking`): such a frame is sent again to `deid_<model>_boxes`
  with the held boxes added.
* No --url and nothing answering on the default address: the missing exports are made, a local server is started
  for this run and stopped after (said in one line). Several `--url`s spread frames over several servers.
* A frame that cannot be de-identified is never written with original pixels: that file fails with an error naming
  the frame (no partial file is left under the output's name).
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
from ..data.dna import IMAGE_EXTS  # noqa: E402
from ..data.video import VIDEO_EXTS  # noqa: E402
from .detection_settings import add_detection_arguments, detection_settings_from  # noqa: E402
from .media import InputError, _progress, _say, run_images, run_video  # noqa: E402
from .tracking import DEFAULT_MEMORY  # noqa: E402
from .triton import DEFAULT_URL, DeidClient, DeidError, ensemble_name  # noqa: E402

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
    p.add_argument("--draw-boxes", action="store_true",
                   help="draw the detected face boxes on the output (for checking what was replaced)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--concurrency", type=int, default=8, help="frames in flight over all servers (default 8)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    p.add_argument("--retries", type=int, default=8, help="retries while a server is unavailable (about 40 s)")
    p.add_argument("--ready-timeout", type=float, default=60.0,
                   help="seconds to wait for the server(s) to be ready (default 60)")
    p.add_argument("--fps", type=float, default=None, help="output video frame rate (default: the input's)")
    p.add_argument("--repository", type=Path, default=None,
                   help="model repository for a server started for the run (default: model_repository/)")
    add_detection_arguments(p)
    p.add_argument("--track-memory", type=int, default=DEFAULT_MEMORY,
                   help=f"video: frames a face stays anonymised after the detector loses it (default {DEFAULT_MEMORY}; "
                        "0 = off)")
    return cli_args.finish(p)


def default_output(src: Path) -> Path:
    return src.with_name(src.name + SUFFIX) if src.is_dir() else src.with_name(f"{src.stem}{SUFFIX}{src.suffix}")


def media_kind(path: Path) -> str | None:
    ext = path.suffix.lower()
    return "image" if ext in IMAGE_EXTS else "video" if ext in VIDEO_EXTS else None


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
    from ..runtime_torch import LocalEngine

    return LocalEngine(args.model, args.device, **settings)


def plan(src: Path, dst: Path, overwrite: bool) -> tuple[list[tuple[Path, Path, str]], list[str]]:
    """(src, dst, kind) jobs and one-line problems for everything under src (a file or a folder)."""
    if not src.exists():
        return [], [f"{src} does not exist"]
    if src.is_dir():
        candidates = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
        pairs = [(p, dst / p.relative_to(src)) for p in candidates]
        if not candidates:
            return [], [f"{src} holds no files"]
    else:
        pairs = [(src, dst)]
    jobs, problems = [], []
    for s, d in pairs:
        kind = media_kind(s)
        if kind is None:
            problems.append(f"{s}: not an image or video ({', '.join(IMAGE_EXTS + VIDEO_EXTS)})")
        elif d.exists() and not overwrite:
            problems.append(f"{s}: {d} exists (--overwrite replaces it)")
        elif d.resolve() == s.resolve():
            problems.append(f"{s}: the output would replace the input")
        else:
            jobs.append((s, d, kind))
    return jobs, problems


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
    from ..demo import needs_export
    from ..export import export
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
    src = args.input
    dst = args.output or default_output(src)
    jobs, problems = plan(src, dst, args.overwrite)
    single = not src.is_dir()
    for problem in problems:
        _say(problem if single or not src.exists() else f"skipped {problem}")
    if not jobs:
        return 2
    model = args.model if args.model in BASELINES else ensemble_name(args.model, with_boxes=False)
    failed = len(problems)
    written = 0
    try:
        with server_for_run(args, model) as urls:
            engine = (LocalBaseline(args.model, **settings) if args.model in BASELINES else
                      local_engine(args, settings) if args.local else
                      DeidClient(urls, concurrency=args.concurrency, timeout_s=args.timeout, retries=args.retries,
                                 settings=settings))
            try:
                engine.wait_ready([model], timeout_s=args.ready_timeout)
                bar = None if single else _progress(len(jobs), "file", src.name, args.no_progress)
                images = [(s, d) for s, d, kind in jobs if kind == "image"]
                if images:
                    done, bad = run_images(engine, model, images, args, bar)
                    written, failed = written + done, failed + bad
                for s, d, kind in jobs:
                    if kind != "video":
                        continue
                    try:
                        run_video(engine, model, s, d, args, bar)
                        written += 1
                    except (InputError, DeidError) as exc:
                        _say(f"failed {exc}", bar)
                        failed += 1
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
    if images and single and written:
        _say(f"wrote {dst}")
    elif not single:
        _say(f"{src}: wrote {written} file(s) to {dst}" + (f", {failed} not done (see above)" if failed else ""))
    return 0 if not failed else 1
