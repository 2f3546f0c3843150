"""One chunk of an evaluation (--batch-size frames): read, sent to the server(s), measured, in two steps so that
the runner can overlap them (evaluation/runner.py): `start` reads the frames and sends every server model's requests
without waiting; `finish` measures the originals, then each model's outputs as they come back, and emits the rows.
While one chunk is measured the server works on the next one's requests, so at most two chunks of frames (and
their de-identified copies) are in memory, however many frames the set has.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from .. import pipeline
from ..crops import check_boxes
from ..data.dna import Frame, ImageError, boxes_to_pixels, read_image
from .measure import FALSE_POSITIVE_IOU, UNTOUCHED_SSIM, Loaded, crop_size, det_found
from .outputs import save_frame, write_example


@dataclass
class Sent:
    """A model's requests for a chunk: futures in the order of `todo`, and when each came back."""

    todo: list[Loaded]
    futures: list[Future]
    sent_at: float
    done_at: list[float] = field(default_factory=list)


@dataclass
class Chunk:
    loaded: list[Loaded]
    sent: dict[str, Sent]  # server models only; baselines run locally in `finish`


def row_of(model: str, frame: Frame, status: str, **extra) -> dict:
    row = {"model": model, "key": frame.key, "status": status, "gt_faces": frame.n_faces}
    if frame.error is None:
        row["faces"] = frame.n_faces
        row["area_share"] = round(frame.area_share, 6)
        row["bin"] = frame.bin or "none"
    row.update(extra)
    return row


def _load(ev, frames: list[Frame]) -> list[Loaded]:
    loaded: list[Loaded] = []
    for f in frames:
        try:
            image = read_image(f.image_path)
        except ImageError as exc:
            ev.log(f"skipped bad image: {exc}")
            for m in ev.models:
                ev._emit(ev._row(m, f, status="skipped:bad_image"))
            continue
        h, w = image.shape[:2]
        gt_px = boxes_to_pixels(f.boxes_norm, w, h)
        try:  # what the server would refuse (a face under 1 px in this image), refused here by label file
            check_boxes(gt_px, w, h)
        except ValueError as exc:
            f.error = f"bad_label: {f.label_path}: in the {w}x{h} image, {exc}"
            ev.log(f"skipped {f.error}")
            for m in ev.models:
                ev._emit(ev._row(m, f, status="skipped:bad_label"))
            continue
        loaded.append(Loaded(f, image, gt_px))
    return loaded


def start(ev, frames: list[Frame]) -> Chunk:
    """Read the frames and send their requests to the server(s); returns at once."""
    from ..client import ensemble_name

    loaded = _load(ev, frames)
    sent = {}
    for model in ev.server_models:
        todo = [x for x in loaded if (model, x.frame.key) not in ev.results.done]
        if not todo:
            continue
        name = ensemble_name(model, ev.args.boxes == "gt")
        s = Sent(todo, [], time.perf_counter())
        for x in todo:
            fut = ev.client.submit(name, x.image, x.gt_px if ev.args.boxes == "gt" else None)
            fut.add_done_callback(lambda _, times=s.done_at: times.append(time.perf_counter()))
            s.futures.append(fut)
        sent[model] = s
    return Chunk(loaded, sent)


def finish(ev, chunk: Chunk) -> None:
    """Measure the chunk's originals and every model's outputs (here, or in ev.pool's worker processes), and emit
    the rows in the order of the models, then the frames."""
    loaded = chunk.loaded
    if not loaded:
        return
    outputs = {}  # model: (todo, [output tuple per frame of todo])
    for model in ev.models:
        if model in chunk.sent:
            outputs[model] = (chunk.sent[model].todo, _collect(ev, chunk.sent[model]))
            continue
        todo = [x for x in loaded if (model, x.frame.key) not in ev.results.done]
        if todo:
            outputs[model] = (todo, _baseline(ev, model, todo))
    from .workers import measure_in_pool, measure_in_threads

    if ev.pool is not None:
        rows = measure_in_pool(ev, loaded, outputs)
    elif ev.threads is not None:
        rows = measure_in_threads(ev, loaded, outputs)
    else:
        rows = measure_frames(ev, loaded, outputs)
    for model, (todo, results) in outputs.items():
        for x, (deid, _, _, _, url, error, _) in zip(todo, results):
            if deid is None:
                ev.log(f"{model}: {x.frame.image_path}: {error}")
                if ev.args.save and len(x.gt_px):  # fail closed: masked faces, never original pixels
                    save_frame(ev.out, ev.models, model, x, pipeline.mask(x.image, x.gt_px))
                ev._emit(ev._row(model, x.frame, status="skipped:server_error", width=x.image.shape[1],
                                 height=x.image.shape[0], url=url))
                continue
            if ev.args.save:  # before the row: a row in per_frame.csv means "done", --resume skips it
                save_frame(ev.out, ev.models, model, x, deid)
            write_example(ev.out, model, x, deid)
            ev._emit(rows[(model, x.frame.key)])


def measure_frames(ev, loaded: list[Loaded], outputs: dict) -> dict:
    """{(model, key): row} of the frames' de-identified outputs, after the originals' values (chunk or worker)."""
    _originals(ev, loaded)
    rows = {}
    for model, (todo, results) in outputs.items():
        done = [(x, r) for x, r in zip(todo, results) if r[0] is not None]
        feats = ev.measure.sim.features([r[0] for _, r in done])
        for (x, (deid, boxes, latency, share_s, url, _, blurred)), feat in zip(done, feats):
            rows[(model, x.frame.key)] = measure(ev, model, x, deid, boxes, feat, latency, share_s, url, blurred)
    return rows


def _originals(ev, loaded: list[Loaded]) -> None:
    """What the original frames give, once for every model (and, through the cache, for every run)."""
    from . import originals, per_face

    originals.measure(ev, loaded, ev.originals_cache)
    for x in loaded:
        if not len(x.gt_px):
            continue
        if getattr(ev.args, "identify", False):
            from .identification import ORIGINAL, save

            save(ev.out, ORIGINAL, x.frame.key, x.descriptors, x.gt_px)
        # the untouched faces: fid_eff's reference row and the descriptors of dlib's chance level
        per_face.save(ev.out, per_face.UNTOUCHED, x.frame.key, x.gt_px, x.untouched, descriptors=x.descriptors)


def _collect(ev, sent: Sent) -> list[tuple]:
    """[(deid frame | None, boxes used, latency s, server seconds share, url, error, blurred)] in the order of todo.

    The server seconds of a frame: the time these requests had the server (from when they were sent, or from when
    the requests collected before them had all come back if that was later, to their own last reply) over the
    frames. Requests are collected in the order they were sent; with one server model this is the chunk's time on
    the server while the previous chunk is measured."""
    results = []
    for fut in sent.futures:
        try:
            results.append(fut.result())
        except Exception as exc:  # noqa: BLE001 - recorded per frame
            # only its message is used: without the traceback (which holds the client coroutine's frames, and with
            # them the request's arrays) a failed request's memory goes with the chunk, not at the next collection
            results.append(exc.with_traceback(None))
    sent.futures = []  # the replies live in `out` only, until measured
    last = max(sent.done_at, default=time.perf_counter())
    began = max(sent.sent_at, ev.server_free_at)
    ev.server_free_at = max(ev.server_free_at, last)
    busy = max(0.0, last - began) / len(sent.todo)
    out = []
    for r in results:
        if isinstance(r, Exception):
            message = str(r).splitlines()[0] if str(r) else type(r).__name__
            out.append((None, None, None, busy, getattr(r, "url", None), message, None))
        else:
            out.append((r.frame, r.boxes, r.latency_s, busy, r.url, None, r.blurred))
    return out


def _baseline(ev, model: str, todo: list[Loaded]) -> list[tuple]:
    """The same tuples as `_collect` for a baseline computed here (blur, mosaic) or by deface's CLI."""
    from ..baselines import anonymize

    if model == "deface":
        return _deface_cli(todo)
    out = []
    for x in todo:
        t0 = time.perf_counter()
        boxes = x.gt_px if ev.args.boxes == "gt" else ev.measure.product_det(x.image)[0]
        deid = anonymize(model, x.image, boxes)
        dt = time.perf_counter() - t0
        out.append((deid, boxes, dt, dt, "local", None, None))
    return out


def _deface_cli(todo: list[Loaded]) -> list[tuple]:
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


def measure(ev, model, x: Loaded, deid, boxes_used, deid_feat, latency, busy, url, blurred=None) -> dict:
    """One (model, frame) row: the frame's metrics and, per labelled face, ssim/psnr, reid, det, fid_eff features."""
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

    args = ev.args
    h, w = x.image.shape[:2]
    row = ev._row(model, x.frame, status="ok", width=w, height=h, url=url)
    row["image_sim"] = cosine(x.features, deid_feat)
    row["server_faces"] = int(len(boxes_used))
    row["latency_ms"] = None if latency is None else latency * 1000.0
    row["server_s"] = busy
    if args.boxes == "detect":
        blurred = np.zeros((0, 4), np.float32) if blurred is None else np.asarray(blurred, np.float32)
        anonymised = np.concatenate([np.asarray(boxes_used, np.float32).reshape(-1, 4), blurred])
        row["server_blurred"] = int(len(blurred))
        row["gt_recalled"] = int(match_boxes(x.gt_px, anonymised).sum())
        overlap = iou_matrix(anonymised, x.gt_px)
        row["false_pos"] = int((overlap.max(axis=1, initial=0.0) < FALSE_POSITIVE_IOU).sum())
    if len(x.gt_px):
        originals, faces = face_crops(x.image, deid, x.gt_px, crop_size(model))
        scores = crop_scores(originals, faces)
        if args.boxes == "detect":
            row["untouched"] = int((np.asarray(scores["ssim"]) >= UNTOUCHED_SSIM).sum())
        row["ssim"] = float(np.mean(scores["ssim"]))
        row["psnr"] = float(np.mean(scores["psnr"]))
        row["psnr_db"] = float(np.mean(scores["psnr_db"]))
        deid_descriptors = ev.measure.rec.descriptors(deid, x.gt_px)
        if getattr(args, "identify", False):
            from .identification import save

            save(ev.out, model, x.frame.key, deid_descriptors, x.gt_px)
        dist = reid_distances(x.descriptors, deid_descriptors)
        from . import per_face  # fid_eff features and reid per face, before the row (--resume keeps them)

        per_face.save(ev.out, model, x.frame.key, x.gt_px,
                      face_features(ev.measure.sim, faces[generated(x.gt_px)]), reid_dist=dist)
        row["reid_matches"] = int((dist < REID_THRESHOLD).sum())
        row["reid_dist"] = float(dist.mean())
        row["det_found"] = int(det_found(ev.measure.det, deid, x.gt_px).sum())
        row["orig_det_found"] = int(x.orig_found.sum())
    return row
