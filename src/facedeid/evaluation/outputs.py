"""What an evaluation writes besides per_frame.csv: saved de-identified frames (--save), the report's example
images, the printed tables, OUT/metrics.json and OUT/report.html."""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import shlex
from pathlib import Path

import numpy as np

from .. import __version__
from ..data.dna import BINS, Frame, boxes_to_pixels, faces_of_one_frame_differ, write_image
from . import per_face
from . import table as tables
from .measure import BASELINES, FALSE_POSITIVE_IOU, UNTOUCHED_SSIM, Loaded

EXAMPLE_SIDE = 600  # report thumbnails: large enough to see a face in the 10% bin
FACE_SIDE = 192  # report's enlarged face crops


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


def save_frame(out: Path, models: list[str], model: str, x: Loaded, image: np.ndarray) -> None:
    folder = x.frame.bin or "noface"
    suffix = "" if len(models) == 1 else f".{model}"
    write_image(out / folder / f"{x.frame.key}{suffix}.jpg", image)


def write_example(out: Path, model: str, x: Loaded, deid: np.ndarray) -> None:
    """First frame (in key order) of each bin: small before/after images for the report's grid."""
    b = x.frame.bin
    if b is None:
        return
    folder = out / "examples"
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


def finish(ev, frames: list[Frame], rows: list[dict], started: str) -> dict:
    """The printed tables, OUT/metrics.json and OUT/report.html of an Evaluation (ev) from all its rows."""
    summaries = {m: tables.aggregate([r for r in rows if r["model"] == m]) for m in ev.models}
    if getattr(ev.args, "identify", False):
        from .identification import ORIGINAL, by_bin

        for m in ev.models:
            summaries[m]["identification"] = by_bin(ev.out, rows, m)
        ceiling = by_bin(ev.out, rows, ORIGINAL)
    faces = per_face_summary(ev, rows)
    for m in ev.models:
        summaries[m]["fid_eff"] = faces["fid_eff"]["models"][m]["fid_eff"]
        summaries[m]["fid_faces"] = faces["fid_eff"]["models"][m]["faces"]
        summaries[m]["reid_by_face_size"] = faces["reid_by_face_size"][m]
    printed = []
    for m in ev.models:
        s = summaries[m]
        source = ("deface CLI, its defaults" if m == "deface" else "local, same boxes as deface"
                  if m in BASELINES else ", ".join(ev.urls))
        head = f"== {m} (boxes: {ev.args.boxes}; {source}) =="
        block = [head, tables.format_table(s), tables.format_throughput(s)]
        if "identification" in s:
            from .identification import format_rows

            block.insert(2, format_rows(s["identification"]))
        notes = tables.format_notes(s)
        if notes:
            block.append(notes)
        printed.append("\n".join(block))
    if getattr(ev.args, "identify", False):
        from .identification import format_rows

        printed.append("== identification of the untouched faces (the ceiling) ==\n" + format_rows(ceiling))
    fid = faces["fid_eff"]
    if len(ev.models) > 1:
        printed.append("== comparison (average column) ==\n"
                       + tables.format_comparison(summaries, fid["models"][per_face.UNTOUCHED]))
    printed.append("== fid_eff (realism), and reid beside dlib's chance level by face size ==\n"
                   + "fid_eff: " + ", ".join(f"{m} {'#' if v['fid_eff'] is None else format(v['fid_eff'], '.2f')} "
                                             f"({v['faces']} faces)" for m, v in fid["models"].items())
                   + f"\n  real reference: {fid['reference']}\n"
                   + "impostor rate: different people's original faces within 0.6, by the smaller face's longer box "
                     "side (native px)\n"
                   + per_face.format_bands(faces["impostor_rate_by_face_size"], faces["reid_by_face_size"]))
    text = "\n\n".join(printed)
    print(text, flush=True)
    metrics = metrics_json(ev, summaries, frames, started)
    if getattr(ev.args, "identify", False):
        metrics["identification_untouched"] = ceiling
    metrics["fid_eff"] = faces["fid_eff"]
    metrics["impostor_rate_by_face_size"] = faces["impostor_rate_by_face_size"]
    from ..data.dna import atomic_write_bytes

    atomic_write_bytes(ev.out / "metrics.json", (json.dumps(metrics, indent=2, allow_nan=False) + "\n").encode())
    if not ev.args.no_report:
        from .report import write_report

        write_report(ev.out, metrics, text)
    return metrics


def per_face_summary(ev, rows: list[dict]) -> dict:
    """fid_eff per model (and of the untouched faces), reid per face-size band and dlib's chance level, from the
    per-face records under OUT/faces/ (evaluation/per_face.py)."""
    from .realism import description, reference_features

    reference = reference_features()  # the shipped features: no network to load here
    return {
        "fid_eff": {"reference": description(reference),
                    "models": per_face.fid_eff(ev.out, rows, ev.models, reference)},
        "reid_by_face_size": {m: per_face.reid_by_band(ev.out, rows, m) for m in ev.models},
        "impostor_rate_by_face_size": per_face.chance_level(
            ev.out, rows, bool(getattr(ev.args, "identify", False)), faces_of_one_frame_differ(ev.args.dataset_dir)),
    }


def metrics_json(ev, summaries: dict, frames: list[Frame], started: str) -> dict:
    from .. import metrics as M
    from ..models.registry import GENERATORS

    if not ev.server_info and ev.server_models and (ev.out / "servers.json").exists():
        ev.server_info = json.loads((ev.out / "servers.json").read_text())
    generators = {}
    for m in ev.server_models:
        if m not in GENERATORS:  # ksame: its bank's record instead of a training record
            from .. import ksame

            record = json.loads(ksame.RECORD_PATH.read_text()) if ksame.RECORD_PATH.exists() else {}
            from ..models.registry import crop_size

            generators[m] = {"crop_size": crop_size(m), "bank": {k: v for k, v in record.items() if k != "bank"}}
            continue
        spec = GENERATORS[m]
        record = spec.training_record()
        generators[m] = {"crop_size": spec.size, "checkpoint_shipped": spec.has_checkpoint(),
                         "training_record": {k: record[k] for k in list(record)[:20]} if record else {}}
    return {
        "command": " ".join(shlex.quote(a) for a in ["eval/triton_eval.py", *ev.argv]),
        "argv": ev.argv,
        "started": started,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "facedeid_version": __version__,
        "python": platform.python_version(),
        "dataset_dir": str(Path(ev.args.dataset_dir).resolve()),
        "frames_in_dataset": len(frames),
        "labels_without_image": getattr(ev, "orphan_labels", []),
        "missing_labels": len(getattr(ev, "missing_labels", [])),  # images without a label file
        "no_labels_ok": bool(getattr(ev.args, "no_labels_ok", False)),
        "boxes": ev.args.boxes,
        "models": ev.models,
        "urls": ev.urls if ev.server_models else [],
        "servers": ev.server_info,
        "requests_this_session": ev.request_stats,
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
            "fid_eff": "Fréchet distance of EfficientNet-Lite0 pooled features of the de-identified face crops "
                       "(the ssim/psnr crops) of faces with box short side >= 32 px (detection.MIN_GENERATE_SIDE: "
                       "the faces the product generates; smaller ones are blurred) vs real face crops "
                       "(facedeid.evaluation.realism); `untouched` = the original faces; depends on the face count",
            "reid_by_face_size": "reid of the faces whose longer box side (native px) lies in each band of "
                                 "metrics.FACE_SIZE_BANDS",
            "impostor_rate_by_face_size": "dlib's chance level: share of pairs of different people's original faces "
                                          f"within {M.REID_THRESHOLD} (two faces of one frame; with --identify also "
                                          "the named faces of two different persons), banded by the smaller face",
            "deface": "the `deface` CLI with its defaults (threshold 0.2, full resolution, ellipse blur) on "
                      "lossless PNG copies of the frames; its boxes from the same CenterFace call",
        },
        "results": {m: _clean(s) for m, s in summaries.items()},
        **ev.extra_metrics,
    }


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
