"""`eval/triton_eval.py`: de-identify a DNA-format data set through Triton (and/or the blur/mosaic baselines)
and measure the result on the client side.

    python eval/triton_eval.py --dataset-dir DIR --model mobileunet,blur --batch-size 16 --output-dir OUT \
        [--save] [--url 127.0.0.1:8001 --url host2:8001] [--boxes gt|detect] [--resume]

Frames are read in chunks of --batch-size; each chunk is sent to the server(s) with up to --concurrency requests
in flight, then measured. Every (model, frame) row goes to OUT/per_frame.csv as soon as it is known (see
evaluation/resume.py); the tables, OUT/metrics.json and OUT/report.html are computed from that file at the end.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__, cli_args, pipeline
from ..baselines import METHODS
from ..client.triton import DEFAULT_URL
from ..crops import check_boxes
from ..data.dna import BINS, Frame, ImageError, boxes_to_pixels, read_image, scan_dataset, write_image
from . import table as tables
from .resume import ResultsLog, ResumeError

BASELINES = (*METHODS, "deface")  # computed here, not served; `deface` runs deface's own CLI
UNTOUCHED_SSIM = 0.9  # a labelled face whose crop keeps this SSIM came back structurally unchanged: a leak
FALSE_POSITIVE_IOU = 0.3  # an anonymised box overlapping no label this much is counted as a false positive
CROP_SIZE_BASELINE = 128
EXAMPLE_SIDE = 600  # report thumbnails: large enough to see a face in the 10% bin
FACE_SIDE = 192  # report's enlarged face crops


# ------------------------------------------------------------------------------------------------ arguments
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=cli_args.prog("triton_eval.py"),
        description="Evaluate face de-identification served by Triton on a DNA-format data set "
                    "(metrics computed on the client; see docs/evaluation.md).")
    p.add_argument("--dataset-dir", type=Path, help="folder with images/ and labels/ (required unless --merge)")
    p.add_argument("--model",
                   help="(required unless --merge) "
                        "generator(s) and/or baselines, comma-separated: mobileunet, resnet50unet, d2gan, blur, mosaic")
    p.add_argument("--output-dir", required=True, type=Path,
                   help="results folder: metrics.json, per_frame.csv, report.html (and frames with --save)")
    p.add_argument("--batch-size", type=int, default=16, help="frames read, sent and measured together (default 16)")
    p.add_argument("--concurrency", type=int, default=None,
                   help="requests in flight over all servers (default: --batch-size)")
    p.add_argument("--url", action="append", default=None,
                   help=f"Triton gRPC address; repeat (or comma-separate) to spread frames over several servers "
                        f"(default {DEFAULT_URL})")
    p.add_argument("--boxes", choices=("gt", "detect"), default="gt",
                   help="gt: label boxes through deid_<model>_boxes (default); detect: the full detection ensemble "
                        "deid_<model>, and detector recall against the labels")
    from ..client.triton import add_detection_arguments

    add_detection_arguments(p)
    p.add_argument("--save", action="store_true", help="write de-identified frames under OUT/<bin>/")
    p.add_argument("--identify", action="store_true",
                   help="closed-set identification against the data set's own original faces: person = first "
                        "folder of each image's path (see evaluation/identification.py)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in OUT without recomputing")
    p.add_argument("--overwrite", action="store_true", help="discard results already in OUT and start again")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    p.add_argument("--retries", type=int, default=8,
                   help="retries per request while a server is unavailable (backoff 0.5 s doubling to 8 s: "
                        "about 40 s in all, enough for a server restart)")
    p.add_argument("--ready-timeout", type=float, default=120.0,
                   help="seconds to wait for the servers to be ready (default 120)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N frames (sorted by path)")
    p.add_argument("--no-labels-ok", dest="no_labels_ok", action="store_true",
                   help="images without a label file are face-free frames by intent (no warning; still counted "
                        "as missing_labels in metrics.json)")
    p.add_argument("--no-report", action="store_true", help="skip OUT/report.html")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--shard", type=_shard_arg, default=None, metavar="K/N",
                   help="evaluate only shard K of N (frames K, K+N, K+2N, ... in key order; K from 0); "
                        "join the shards' output folders with --merge")
    p.add_argument("--merge", nargs="+", type=Path, default=None, metavar="OUT_K",
                   help="merge the output folders of all N shards into --output-dir (metrics.json, per_frame.csv, "
                        "report): the numbers of one run over every frame. Nothing is sent to a server")
    return cli_args.finish(p)


def _shard_arg(text: str):
    from .shards import ShardError, parse_shard

    try:
        return parse_shard(text)
    except ShardError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_models(text: str) -> list[str]:
    from ..models.registry import SERVED_GENERATORS

    models = [m.strip() for m in text.split(",") if m.strip()]
    if not models:
        raise SystemExit("--model: give at least one model")
    for m in models:
        if m not in SERVED_GENERATORS and m not in BASELINES:
            raise SystemExit(f"--model: unknown model '{m}'; choose from {', '.join([*SERVED_GENERATORS, *BASELINES])}")
    if len(set(models)) != len(models):
        raise SystemExit("--model: a model is named twice")
    return models


def crop_size(model: str) -> int:
    if model in BASELINES:
        return CROP_SIZE_BASELINE
    from ..models.registry import DONOR_GENERATORS, get_spec

    if model in DONOR_GENERATORS:
        from ..ksame import SIZE

        return SIZE
    return get_spec(model).size


# -------------------------------------------------------------------------------------------------- helpers
@dataclass
class Loaded:
    frame: Frame
    image: np.ndarray
    gt_px: np.ndarray  # [N,4] pixel boxes of the labels
    features: np.ndarray | None = None
    descriptors: np.ndarray | None = None
    orig_found: np.ndarray | None = None


@lru_cache(maxsize=1)
def _image_similarity():
    from ..metrics import ImageSimilarity

    return ImageSimilarity()


@lru_cache(maxsize=1)
def _face_recognizer():
    from ..metrics import FaceRecognizer

    return FaceRecognizer()


# `det` asks "is the replacement still clearly a face?": the confident tier's score (0.5), not the anonymisation
# threshold, so det numbers stay comparable with earlier runs.
DET_METRIC_THRESHOLD = 0.5


@lru_cache(maxsize=1)
def _detector():
    from ..detection import CenterFaceDetector

    return CenterFaceDetector(threshold=DET_METRIC_THRESHOLD)


@lru_cache(maxsize=1)
def _product_detector():
    from ..detection import CenterFaceDetector

    return CenterFaceDetector()


class Measurers:
    """The metric networks, loaded on first use (once per process)."""

    @property
    def sim(self):
        return _image_similarity()

    @property
    def rec(self):
        return _face_recognizer()

    @property
    def det(self):
        """The detector of the `det` metric."""
        return _detector()

    @property
    def product_det(self):
        """The product's detector with its defaults: the boxes blur/mosaic use in --boxes detect."""
        return _product_detector()


def _small(img: np.ndarray, side: int = EXAMPLE_SIDE) -> np.ndarray:
    import cv2

    k = min(1.0, side / max(img.shape[:2]))
    if k >= 1:
        return img
    return cv2.resize(img, (max(1, round(img.shape[1] * k)), max(1, round(img.shape[0] * k))),
                      interpolation=cv2.INTER_AREA)


def _largest_face(img: np.ndarray, boxes_norm: np.ndarray, side: int = FACE_SIDE) -> np.ndarray:
    """The frame's largest labelled face with some margin, square, enlarged to side x side for the report."""
    import cv2

    h, w = img.shape[:2]
    boxes = boxes_to_pixels(boxes_norm, w, h)
    x1, y1, x2, y2 = boxes[int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))]
    half = max(x2 - x1, y2 - y1) * 0.65
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(max(0, cx - half)), int(max(0, cy - half))
    right, bottom = int(min(w, max(left + 1, cx + half))), int(min(h, max(top + 1, cy + half)))
    return cv2.resize(np.ascontiguousarray(img[top:bottom, left:right]), (side, side), interpolation=cv2.INTER_CUBIC)


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
        self.out = Path(args.output_dir)
        self.on_row = on_row
        self.client_factory = client_factory
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.measure = Measurers()
        self.urls = [u for chunk in (args.url or [DEFAULT_URL]) for u in chunk.split(",") if u]
        self.concurrency = args.concurrency or args.batch_size
        self.client = None
        self.server_info: dict = {}
        self.request_stats: dict = {}
        self.extra_metrics: dict = {}  # e.g. the `shard` record of a --shard run, `merged_from` of a --merge

    # -------------------------------------------------------------------------------------------- the run
    def run(self) -> dict:
        args = self.args
        if args.batch_size < 1:
            raise SystemExit("--batch_size must be >= 1")
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
            rows = list(results.rows)
        return self.finish(all_frames, rows, started)

    def _connect(self) -> None:
        from ..client import DeidClient, ensemble_name
        from ..client.triton import detection_settings_from

        factory = self.client_factory or DeidClient
        settings = {k: v for k, v in detection_settings_from(self.args).items() if v is not None}
        extra = {"settings": settings} if settings else {}
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
        bar = None
        if not self.args.no_progress and pending:
            from tqdm import tqdm

            bar = tqdm(total=len(pending), unit="frame", dynamic_ncols=True, desc="evaluating", file=sys.stderr)
        try:
            for start in range(0, len(pending), self.args.batch_size):
                chunk = pending[start : start + self.args.batch_size]
                self._chunk(chunk)
                if bar is not None:
                    bar.update(len(chunk))
                    bar.set_postfix(rows=len(self.results.rows), refresh=False)
        finally:
            if bar is not None:
                bar.close()

    def _chunk(self, chunk: list[Frame]) -> None:
        loaded: list[Loaded] = []
        for f in chunk:
            try:
                image = read_image(f.image_path)
            except ImageError as exc:
                self.log(f"skipped bad image: {exc}")
                for m in self.models:
                    self._emit(self._row(m, f, status="skipped:bad_image"))
                continue
            h, w = image.shape[:2]
            gt_px = boxes_to_pixels(f.boxes_norm, w, h)
            try:  # what the server would refuse (a face under 1 px in this image), refused here by label file
                check_boxes(gt_px, w, h)
            except ValueError as exc:
                f.error = f"bad_label: {f.label_path}: in the {w}x{h} image, {exc}"
                self.log(f"skipped {f.error}")
                for m in self.models:
                    self._emit(self._row(m, f, status="skipped:bad_label"))
                continue
            loaded.append(Loaded(f, image, gt_px))
        if not loaded:
            return
        # what the original frames give, once for every model
        feats = self.measure.sim.features([x.image for x in loaded])
        for x, feat in zip(loaded, feats):
            x.features = feat
            if len(x.gt_px):
                x.descriptors = self.measure.rec.descriptors(x.image, x.gt_px)
                if getattr(self.args, "identify", False):
                    from .identification import ORIGINAL, save

                    save(self.out, ORIGINAL, x.frame.key, x.descriptors, x.gt_px)
                from ..metrics import match_boxes

                x.orig_found = match_boxes(x.gt_px, self.measure.det(x.image)[0])
        for model in self.models:
            todo = [x for x in loaded if (model, x.frame.key) not in self.results.done]
            if not todo:
                continue
            outputs = self._deidentify(model, todo)
            deid_feats = self.measure.sim.features([o[0] for o in outputs if o[0] is not None])
            it = iter(deid_feats)
            for x, (deid, boxes, latency, share_s, url, error, blurred) in zip(todo, outputs):
                if deid is None:
                    self.log(f"{model}: {x.frame.image_path}: {error}")
                    if self.args.save and len(x.gt_px):  # fail closed: masked faces, never original pixels
                        self._save(model, x, pipeline.mask(x.image, x.gt_px))
                    self._emit(self._row(model, x.frame, status="skipped:server_error", width=x.image.shape[1],
                                         height=x.image.shape[0], url=url))
                    continue
                row = self._measure(model, x, deid, boxes, next(it), latency, share_s, url, blurred)
                if self.args.save:  # before the row: a row in per_frame.csv means "done", --resume skips it
                    self._save(model, x, deid)
                self._example(model, x, deid)
                self._emit(row)

    def _deidentify(self, model: str, todo: list[Loaded]):
        """[(deid frame | None, boxes used, latency s, busy seconds share, url, error)] in the order of todo."""
        out = []
        if model in BASELINES:
            from ..baselines import anonymize

            if model == "deface":
                return self._deface_cli(todo)
            for x in todo:
                t0 = time.perf_counter()
                boxes = x.gt_px if self.args.boxes == "gt" else self.measure.product_det(x.image)[0]
                deid = anonymize(model, x.image, boxes)
                dt = time.perf_counter() - t0
                out.append((deid, boxes, dt, dt, "local", None, None))
            return out
        from ..client import ensemble_name

        name = ensemble_name(model, self.args.boxes == "gt")
        t0 = time.perf_counter()
        futures = [self.client.submit(name, x.image, x.gt_px if self.args.boxes == "gt" else None) for x in todo]
        results = []
        for fut in futures:
            try:
                results.append(fut.result())
            except Exception as exc:  # noqa: BLE001 - recorded per frame
                results.append(exc)
        busy = (time.perf_counter() - t0) / len(todo)
        for r in results:
            if isinstance(r, Exception):
                message = str(r).splitlines()[0] if str(r) else type(r).__name__
                out.append((None, None, None, busy, getattr(r, "url", None), message, None))
            else:
                out.append((r.frame, r.boxes, r.latency_s, busy, r.url, None, r.blurred))
        return out

    def _deface_cli(self, todo: list[Loaded]):
        """deface's CLI with its defaults on the frames; its boxes (for recall / false positives) from the same
        CenterFace call the CLI makes. With --boxes gt the CLI still detects on its own: it takes no boxes."""
        from .. import deface_cli

        t0 = time.perf_counter()
        try:
            frames = deface_cli.anonymize([x.image for x in todo])
        except Exception as exc:  # noqa: BLE001 - recorded per frame
            busy = (time.perf_counter() - t0) / len(todo)
            return [(None, None, None, busy, "local", str(exc).splitlines()[0], None) for _ in todo]
        busy = (time.perf_counter() - t0) / len(todo)
        return [(deid, deface_cli.detect(x.image), busy, busy, "local", None, None) for x, deid in zip(todo, frames)]

    def _measure(self, model, x: Loaded, deid, boxes_used, deid_feat, latency, busy, url, blurred=None) -> dict:
        from ..metrics import REID_THRESHOLD, cosine, face_scores, iou_matrix, match_boxes, reid_distances

        h, w = x.image.shape[:2]
        row = self._row(model, x.frame, status="ok", width=w, height=h, url=url)
        row["image_sim"] = cosine(x.features, deid_feat)
        row["server_faces"] = int(len(boxes_used))
        row["latency_ms"] = None if latency is None else latency * 1000.0
        row["server_s"] = busy
        if self.args.boxes == "detect":
            blurred = np.zeros((0, 4), np.float32) if blurred is None else np.asarray(blurred, np.float32)
            anonymised = np.concatenate([np.asarray(boxes_used, np.float32).reshape(-1, 4), blurred])
            row["server_blurred"] = int(len(blurred))
            row["gt_recalled"] = int(match_boxes(x.gt_px, anonymised).sum())
            overlap = iou_matrix(anonymised, x.gt_px)
            row["false_pos"] = int((overlap.max(axis=1, initial=0.0) < FALSE_POSITIVE_IOU).sum())
        if len(x.gt_px):
            scores = face_scores(x.image, deid, x.gt_px, crop_size(model))
            if self.args.boxes == "detect":
                row["untouched"] = int((np.asarray(scores["ssim"]) >= UNTOUCHED_SSIM).sum())
            row["ssim"] = float(np.mean(scores["ssim"]))
            row["psnr"] = float(np.mean(scores["psnr"]))
            row["psnr_db"] = float(np.mean(scores["psnr_db"]))
            deid_descriptors = self.measure.rec.descriptors(deid, x.gt_px)
            if getattr(self.args, "identify", False):
                from .identification import save

                save(self.out, model, x.frame.key, deid_descriptors, x.gt_px)
            dist = reid_distances(x.descriptors, deid_descriptors)
            row["reid_matches"] = int((dist < REID_THRESHOLD).sum())
            row["reid_dist"] = float(dist.mean())
            row["det_found"] = int(match_boxes(x.gt_px, self.measure.det(deid)[0]).sum())
            row["orig_det_found"] = int(x.orig_found.sum())
        return row

    def _row(self, model: str, frame: Frame, status: str, **extra) -> dict:
        row = {"model": model, "key": frame.key, "status": status, "gt_faces": frame.n_faces}
        if frame.error is None:
            row["faces"] = frame.n_faces
            row["area_share"] = round(frame.area_share, 6)
            row["bin"] = frame.bin or "none"
        row.update(extra)
        return row

    def _emit(self, row: dict) -> None:
        self.results.append(row)
        if self.on_row is not None:
            self.on_row(row)

    def _save(self, model: str, x: Loaded, image: np.ndarray) -> None:
        folder = x.frame.bin or "noface"
        suffix = "" if len(self.models) == 1 else f".{model}"
        write_image(self.out / folder / f"{x.frame.key}{suffix}.jpg", image)

    def _example(self, model: str, x: Loaded, deid: np.ndarray) -> None:
        """First frame (in key order) of each bin: small before/after images for the report's grid."""
        b = x.frame.bin
        if b is None:
            return
        folder = self.out / "examples"
        marker = folder / f"{b}.key"
        if marker.exists():
            if marker.read_text().strip() != x.frame.key:
                return
        else:
            folder.mkdir(parents=True, exist_ok=True)
            marker.write_text(x.frame.key + "\n")
        orig = folder / f"{b}__original.jpg"
        if not orig.exists():
            write_image(orig, _small(x.image))
            write_image(folder / f"{b}__original__face.jpg", _largest_face(x.image, x.frame.boxes_norm))
        write_image(folder / f"{b}__{model}.jpg", _small(deid))
        write_image(folder / f"{b}__{model}__face.jpg", _largest_face(deid, x.frame.boxes_norm))

    # ---------------------------------------------------------------------------------------------- outputs
    def finish(self, frames: list[Frame], rows: list[dict], started: str) -> dict:
        summaries = {m: tables.aggregate([r for r in rows if r["model"] == m]) for m in self.models}
        if getattr(self.args, "identify", False):
            from .identification import by_bin

            for m in self.models:
                summaries[m]["identification"] = by_bin(self.out, rows, m)
        printed = []
        for m in self.models:
            s = summaries[m]
            source = ("deface CLI, its defaults" if m == "deface" else "local, same boxes as deface"
                      if m in BASELINES else ", ".join(self.urls))
            head = f"== {m} (boxes: {self.args.boxes}; {source}) =="
            block = [head, tables.format_table(s), tables.format_throughput(s)]
            if "identification" in s:
                from .identification import format_rows

                block.insert(2, format_rows(s["identification"]))
            notes = tables.format_notes(s)
            if notes:
                block.append(notes)
            printed.append("\n".join(block))
        if len(self.models) > 1:
            printed.append("== comparison (average column) ==\n" + tables.format_comparison(summaries))
        text = "\n\n".join(printed)
        print(text, flush=True)
        metrics = self._metrics_json(summaries, frames, started)
        from ..data.dna import atomic_write_bytes

        atomic_write_bytes(self.out / "metrics.json", (json.dumps(metrics, indent=2, allow_nan=False) + "\n").encode())
        if not self.args.no_report:
            from .report import write_report

            write_report(self.out, metrics, text)
        return metrics

    def _metrics_json(self, summaries: dict, frames: list[Frame], started: str) -> dict:
        from .. import metrics as M
        from ..models.registry import GENERATORS

        if not self.server_info and self.server_models and (self.out / "servers.json").exists():
            self.server_info = json.loads((self.out / "servers.json").read_text())
        generators = {}
        for m in self.server_models:
            if m not in GENERATORS:  # ksame: its bank's record instead of a training record
                from .. import ksame

                record = json.loads(ksame.RECORD_PATH.read_text()) if ksame.RECORD_PATH.exists() else {}
                generators[m] = {"crop_size": ksame.SIZE, "bank": {k: v for k, v in record.items() if k != "bank"}}
                continue
            spec = GENERATORS[m]
            record = spec.training_record()
            generators[m] = {"crop_size": spec.size, "checkpoint_shipped": spec.has_checkpoint(),
                             "training_record": {k: record[k] for k in list(record)[:20]} if record else {}}
        return {
            "command": " ".join(shlex.quote(a) for a in ["eval/triton_eval.py", *self.argv]),
            "argv": self.argv,
            "started": started,
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "facedeid_version": __version__,
            "python": platform.python_version(),
            "dataset_dir": str(Path(self.args.dataset_dir).resolve()),
            "frames_in_dataset": len(frames),
            "labels_without_image": getattr(self, "orphan_labels", []),
            "missing_labels": len(getattr(self, "missing_labels", [])),  # images without a label file
            "no_labels_ok": bool(getattr(self.args, "no_labels_ok", False)),
            "boxes": self.args.boxes,
            "models": self.models,
            "urls": self.urls if self.server_models else [],
            "servers": self.server_info,
            "requests_this_session": self.request_stats,
            "generators": generators,
            "bins": list(BINS),
            "definitions": {
                "ssim": "skimage structural_similarity(channel_axis=-1, data_range=255) of face crops, "
                        "clipped to [0,1]",
                "psnr": f"skimage peak_signal_noise_ratio(data_range=255), min(dB, {M.PSNR_CAP_DB:.4f}) / "
                        f"{M.PSNR_CAP_DB:.4f}; the printed table shows the capped dB (table.psnr_db)",
                "crops": "facedeid.crops.extract_crops at the label boxes, generator resolution "
                         "(128 for blur/mosaic)",
                "image_sim": f"cosine of L2-normalised average-pooled features, {M.FEATURE_NETWORK}",
                "reid": f"share of faces with dlib descriptor distance < {M.REID_THRESHOLD} at the same box",
                "det": f"share of faces the CenterFace detector finds on the de-identified frame (IoU >= {M.DET_IOU})",
                "recall": f"--boxes detect: share of labelled faces matched one-to-one (IoU >= {M.DET_IOU}) by a box "
                          "the pipeline anonymised (generated or blurred)",
                "untouched": f"--boxes detect: share of labelled faces whose crop came back with SSIM >= "
                             f"{UNTOUCHED_SSIM} (structurally unchanged: a leak)",
                "false_positives": f"--boxes detect: anonymised boxes overlapping no label with IoU >= "
                                   f"{FALSE_POSITIVE_IOU}",
                "deface": "the `deface` CLI with its defaults (threshold 0.2, full resolution, ellipse blur) on "
                          "lossless PNG copies of the frames; its boxes from the same CenterFace call",
            },
            "results": {m: _clean(s) for m, s in summaries.items()},
            **self.extra_metrics,
        }


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from ..config_files import parse_args_with_config  # `--config config/*.yml`: file values become defaults

    parser = build_parser()
    args, _notes = parse_args_with_config(parser, argv)
    args.argv = argv
    if args.merge:
        from .merge import main as merge_main

        return merge_main(args)
    missing = [flag for flag, value in (("--dataset-dir", args.dataset_dir), ("--model", args.model)) if not value]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    if getattr(args, "identify", False) and args.shard is not None:
        # the gallery is every original face of the data set; a shard holds only its own frames
        parser.error("--identify needs the whole data set as its gallery: run it without --shard")
    try:
        Evaluation(args).run()
    except ResumeError as exc:
        print(f"triton_eval: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"triton_eval: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
