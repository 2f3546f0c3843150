"""The evaluation run: de-identify a DNA-format data set through Triton (and/or the blur/mosaic baselines) and
measure the result on the client side. Arguments and entry point: evaluation/cli.py.

Frames are read in chunks of --batch-size; each chunk is sent to the server(s) with up to --concurrency requests
in flight, then measured. Every (model, frame) row goes to OUT/per_frame.csv as soon as it is known (see
evaluation/resume.py); the tables, OUT/metrics.json and OUT/report.html are computed from that file at the end
(evaluation/outputs.py).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .. import pipeline
from ..crops import check_boxes, extract_crops
from ..data.dna import Frame, ImageError, boxes_to_pixels, read_image, scan_dataset
from ..settings import DEFAULT_URL
from .measure import (
    BASELINES,
    CROP_SIZE_BASELINE,
    FALSE_POSITIVE_IOU,
    UNTOUCHED_SSIM,
    Loaded,
    Measurers,
    crop_size,
    parse_models,
)
from .outputs import finish, save_frame, write_example
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
        self.out = Path(args.output_dir)
        self.on_row = on_row
        self.client_factory = client_factory
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.measure = Measurers()
        from .measure import limit_threads

        limit_threads()
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
        from ..client.detection_settings import detection_settings_from

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
                from ..metrics import face_features, match_boxes
                from . import per_face
                from .realism import generated

                x.orig_found = match_boxes(x.gt_px, self.measure.det(x.image)[0])
                # the untouched faces: fid_eff's reference row and the descriptors of dlib's chance level
                crops, _ = extract_crops(x.image, x.gt_px[generated(x.gt_px)], CROP_SIZE_BASELINE)
                per_face.save(self.out, per_face.UNTOUCHED, x.frame.key, x.gt_px,
                              face_features(self.measure.sim, crops), descriptors=x.descriptors)
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
                        save_frame(self.out, self.models, model, x, pipeline.mask(x.image, x.gt_px))
                    self._emit(self._row(model, x.frame, status="skipped:server_error", width=x.image.shape[1],
                                         height=x.image.shape[0], url=url))
                    continue
                row = self._measure(model, x, deid, boxes, next(it), latency, share_s, url, blurred)
                if self.args.save:  # before the row: a row in per_frame.csv means "done", --resume skips it
                    save_frame(self.out, self.models, model, x, deid)
                write_example(self.out, model, x, deid)
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
        from ..metrics import (
            REID_THRESHOLD,
            cosine,
            crop_scores,
            face_crops,
            face_features,
            iou_matrix,
            match_boxes,
            reid_distances,
        )
        from .realism import generated

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
            originals, faces = face_crops(x.image, deid, x.gt_px, crop_size(model))
            scores = crop_scores(originals, faces)
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
            from . import per_face  # fid_eff features and reid per face, before the row (--resume keeps them)

            per_face.save(self.out, model, x.frame.key, x.gt_px,
                          face_features(self.measure.sim, faces[generated(x.gt_px)]), reid_dist=dist)
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

    def finish(self, frames: list[Frame], rows: list[dict], started: str) -> dict:
        """Tables, metrics.json and report.html from all rows (also what --merge ends with)."""
        return finish(self, frames, rows, started)
