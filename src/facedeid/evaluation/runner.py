"""The evaluation run: de-identify a DNA-format data set through Triton (and/or the blur/mosaic baselines) and
measure the result on the client side. Arguments and entry point: evaluation/cli.py.

Frames are read in chunks of --batch-size; each chunk is sent to the server(s) with up to --concurrency requests
in flight, then measured while the server works on the next chunk (evaluation/chunk.py). Every (model, frame) row
goes to OUT/per_frame.csv as soon as it is known (see evaluation/resume.py); the tables, OUT/metrics.json and
OUT/report.html are computed from that file at the end (evaluation/outputs.py).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Callable

from ..data.dna import Frame, scan_dataset
from ..settings import DEFAULT_URL
from .measure import BASELINES, Measurers, parse_models
from .outputs import finish
from .resume import ResultsLog


def labels_without_image(root, frames: list[Frame]) -> list[str]:
    """Label files (paths under root, '/'-separated) that no image uses: reported, never silently dropped."""
    labels = Path(root) / "labels"
    if not labels.is_dir():
        return []
    used = {Path(f.label_path).resolve() for f in frames if f.label_path is not None}
    return sorted(p.relative_to(root).as_posix() for p in labels.rglob("*.txt")
                  if not p.name.startswith(".") and p.resolve() not in used)


# --------------------------------------------------------------------------------------------------- runner
class Evaluation:
    def __init__(self, args: argparse.Namespace, on_row: Callable[[dict], None] | None = None,
                 client_factory: Callable | None = None, log: Callable[[str], None] | None = None):
        self.args = args
        self.argv = list(getattr(args, "argv", None) or sys.argv[1:])
        self.models = parse_models(args.model)
        self.server_models = [m for m in self.models if m not in BASELINES]
        from ..client.cover import DEFAULT_COVER, cover_problem

        self.cover = getattr(args, "cover", DEFAULT_COVER)
        for model in self.server_models:  # --cover head names ksame's whole-head replacement: no other has one
            if (problem := cover_problem(model, self.cover)) is not None:
                raise SystemExit(f"triton_eval: {problem}")
        self.out = Path(args.output_dir)
        self.on_row = on_row
        self.client_factory = client_factory
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.measure = Measurers()
        from .originals import Cache

        self.originals_cache = Cache.default(not getattr(args, "no_cache", False))
        from .measure import limit_threads

        limit_threads()
        self.urls = [u for chunk in (args.url or [DEFAULT_URL]) for u in chunk.split(",") if u]
        self.concurrency = args.concurrency or args.batch_size
        self.client = None
        self.pool = None  # metric worker processes (--workers, evaluation/workers.py)
        self.threads = None  # metric threads of this process (--metric-threads, evaluation/workers.py)
        self.server_info: dict = {}
        self.request_stats: dict = {}
        self.extra_metrics: dict = {}  # e.g. the `shard` record of a --shard run, `merged_from` of a --merge
        self.server_free_at = 0.0  # perf_counter when the requests collected so far had all come back (chunk.py)

    # -------------------------------------------------------------------------------------------- the run
    def run(self) -> dict:
        args = self.args
        if args.batch_size < 1:
            raise SystemExit("--batch_size must be >= 1")
        if (getattr(args, "workers", 0) or 0) < 0:
            raise SystemExit("--workers must be >= 0")
        if getattr(args, "metric_threads", 1) < 1:
            raise SystemExit("--metric-threads must be >= 1")
        frames = scan_dataset(args.dataset_dir)
        self.orphan_labels = labels_without_image(args.dataset_dir, frames)
        for rel in self.orphan_labels:
            self.log(f"warning: label file without an image (ignored): {Path(args.dataset_dir) / rel}")
        if args.limit:
            frames = frames[: args.limit]
        self.missing_labels = [f for f in frames if f.label_path is None]
        if self.missing_labels and not getattr(args, "no_labels_ok", False):
            shown = ", ".join(str(f.image_path) for f in self.missing_labels[:5])
            more = len(self.missing_labels) - 5
            self.log(f"warning: {len(self.missing_labels)} image(s) without a label file, scored as frames without "
                     f"faces: {shown}{f' and {more} more' if more > 0 else ''} (pass --no-labels-ok if the set is "
                     f"meant to have none)")
        all_frames = frames
        shard = getattr(args, "shard", None)
        if shard is not None:
            from .shards import shard_record

            frames = shard.select(all_frames)
            self.extra_metrics["shard"] = shard_record(
                shard, all_frames, frames, {"models": self.models, "boxes": args.boxes, "limit": args.limit})
            self.log(f"shard {shard}: {len(frames)} of {len(all_frames)} frames")
        config = {"dataset_dir": str(Path(args.dataset_dir).resolve()), "boxes": args.boxes,
                  "shard": None if shard is None else str(shard)}
        started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        with ResultsLog(self.out, config, resume=args.resume, overwrite=args.overwrite) as results:
            self.results = results
            if args.resume:  # temporary files of a killed run's atomic writes (the final names are never partial)
                for stale in self.out.rglob(".*.tmp"):
                    stale.unlink(missing_ok=True)
            pending = [f for f in frames if any((m, f.key) not in results.done for m in self.models)]
            if args.resume and len(pending) < len(frames):
                self.log(f"resume: {len(frames) - len(pending)} of {len(frames)} frames already done")
            for f in pending:
                if f.error:
                    self.log(f"skipped {f.error}")
                    for m in self.models:
                        self._emit(self._row(m, f, status="skipped:bad_label"))
            pending = [f for f in pending if not f.error]
            if self.server_models and pending:
                self._connect()
            workers = getattr(args, "workers", 0) or 0
            if workers > 0 and pending:
                from .workers import pool

                self.pool = pool(self, workers)
            elif getattr(args, "metric_threads", 1) > 1 and pending:
                from concurrent.futures import ThreadPoolExecutor

                self.threads = ThreadPoolExecutor(args.metric_threads, thread_name_prefix="metrics")
            try:
                self._loop(pending)
            except KeyboardInterrupt:
                self.log(f"\ninterrupted: {len(results.rows)} rows are safe in {results.path}; "
                         f"rerun with --resume to continue")
                raise
            finally:
                if self.client is not None:
                    self.request_stats = {"requests_per_url": dict(self.client.stats.per_url),
                                          "retries": self.client.stats.retries,
                                          "failures": self.client.stats.failures}
                    self.client.close()
                for executor in (self.pool, self.threads):
                    if executor is not None:
                        executor.shutdown(cancel_futures=True)
                self.pool = self.threads = None
            rows = list(results.rows)
        return self.finish(all_frames, rows, started)

    def _connect(self) -> None:
        from ..client import DeidClient, ensemble_name
        from ..client.cover import DEFAULT_COVER
        from ..client.detection_settings import detection_settings_from

        factory = self.client_factory or DeidClient
        settings = {k: v for k, v in detection_settings_from(self.args).items() if v is not None}
        extra = {"settings": settings} if settings else {}
        if self.cover != DEFAULT_COVER:
            extra["cover"] = self.cover
        self.client = factory(self.urls, concurrency=self.concurrency, timeout_s=self.args.timeout,
                              retries=self.args.retries, **extra)
        names = [ensemble_name(m, self.args.boxes == "gt") for m in self.server_models]
        if hasattr(self.client, "on_retry"):  # a server restart shows as retries on stderr, not as silence
            self.client.on_retry = lambda message: self.log(f"server unavailable: {message}")
        try:
            not_ready = self.client.wait_ready(names, timeout_s=self.args.ready_timeout)
            if not_ready:
                self.log(f"warning: {', '.join(not_ready)} not ready; their requests will be retried elsewhere")
        except Exception as exc:  # noqa: BLE001 -- whatever stops the connection ends the run with its message
            self.client.close()
            self.client = None
            raise SystemExit(f"triton_eval: {exc}") from None
        self.server_info = self.client.server_info(names + self.server_models)
        # kept for a later --resume that has nothing left to send (and so does not connect)
        from ..data.dna import atomic_write_bytes

        atomic_write_bytes(self.out / "servers.json", (json.dumps(self.server_info, indent=2) + "\n").encode())

    def _loop(self, pending: list[Frame]) -> None:
        """Chunk after chunk, one ahead: the next chunk's requests go out before this one is measured, so the
        server and the metrics work at the same time (evaluation/chunk.py)."""
        from . import chunk as chunks

        bar = None
        if not self.args.no_progress and pending:
            from tqdm import tqdm

            bar = tqdm(total=len(pending), unit="frame", dynamic_ncols=True, desc="evaluating", file=sys.stderr)
        size = self.args.batch_size
        previous = None
        try:
            for start in [*range(0, len(pending), size), None]:
                current = None if start is None else chunks.start(self, pending[start : start + size])
                if previous is not None:
                    chunks.finish(self, previous[1])
                    if bar is not None:  # the rows first: update() draws the bar with the postfix it has
                        bar.set_postfix(rows=len(self.results.rows), refresh=False)
                        bar.update(previous[0])
                previous = None if current is None else (len(pending[start : start + size]), current)
        finally:
            if bar is not None:
                bar.close()

    def _row(self, model: str, frame: Frame, status: str, **extra) -> dict:
        from .chunk import row_of

        return row_of(model, frame, status, **extra)

    def _emit(self, row: dict) -> None:
        self.results.append(row)
        if self.on_row is not None:
            self.on_row(row)

    def finish(self, frames: list[Frame], rows: list[dict], started: str) -> dict:
        """Tables, metrics.json and report.html from all rows (also what --merge ends with)."""
        return finish(self, frames, rows, started)
