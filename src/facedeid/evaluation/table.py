"""Aggregate per-frame rows into per-bin numbers, and print them in the original evaluation's table format.

Aggregation (the same whether the rows came from one run or from a resumed one):
* ssim, psnr, image sim: per frame the mean over its faces; per bin the mean over its frames; `average` the
  mean over all frames with faces.
* reid, det: share of faces (sum over frames of matched faces / sum of faces), per bin and overall.
* only rows with status `ok` and at least one labelled face enter the bins; frames without faces are counted
  apart (their image sim is reported on its own line); skipped rows are counted by reason.
"""

from __future__ import annotations

import math
from collections import Counter

from ..data.dna import BINS
from ..metrics import mean_or_nan, percentile

COLUMNS = ("10%", "30%", "50%", "70%", "70above", "average")
# The printed psnr row is in dB, as the original prints it (its inverter: 7.42 on average); the [0, 1] value
# stays in metrics.json under table.psnr.
PRINTED = {"ssim": "ssim", "psnr": "psnr_db", "image sim": "image sim", "reid": "reid", "det": "det",
           "recall": "recall", "untouched": "untouched"}
FRAME_METRICS = (("ssim", "ssim"), ("psnr", "psnr"), ("image sim", "image_sim"))
FACE_SHARES = (("reid", "reid_matches"), ("det", "det_found"))
EMPTY = "#"


def _f(row: dict, key: str) -> float:
    value = row.get(key, "")
    if value in ("", None):
        return float("nan")
    return float(value)


def _i(row: dict, key: str) -> int:
    value = row.get(key, "")
    return int(float(value)) if value not in ("", None) else 0


def aggregate(rows: list[dict]) -> dict:
    """Summary of one model's rows (dicts as read back from per_frame.csv).

    Rows are put in key order first, so sums run in the same order however the rows arrived (a resumed run gives
    bit-identical numbers).
    """
    rows = sorted(rows, key=lambda r: (r.get("key", ""), r.get("model", "")))
    ok = [r for r in rows if r.get("status") == "ok"]
    with_faces = [r for r in ok if _i(r, "faces") > 0 and r.get("bin") in BINS]
    no_faces = [r for r in ok if _i(r, "faces") == 0]
    groups = {b: [r for r in with_faces if r["bin"] == b] for b in BINS}
    groups["average"] = with_faces
    table: dict[str, dict[str, float | int | None]] = {}
    for label, key in FRAME_METRICS:
        table[label] = {b: _none(mean_or_nan(_f(r, key) for r in g)) for b, g in groups.items()}
    table["psnr_db"] = {b: _none(mean_or_nan(_f(r, "psnr_db") for r in g)) for b, g in groups.items()}
    for label, key in FACE_SHARES:
        table[label] = {b: _share(sum(_i(r, key) for r in g), sum(_i(r, "faces") for r in g))
                        for b, g in groups.items()}
    if any(r.get("gt_recalled") not in ("", None) for r in ok):  # --boxes detect: what the detector let through
        for label, key in (("recall", "gt_recalled"), ("untouched", "untouched")):
            table[label] = {b: _share(sum(_i(r, key) for r in g), sum(_i(r, "faces") for r in g))
                            for b, g in groups.items()}
    table["faces"] = {b: sum(_i(r, "faces") for r in g) for b, g in groups.items()}
    table["frames"] = {b: len(g) for b, g in groups.items()}
    n_faces = sum(_i(r, "faces") for r in with_faces)
    reid_dist = (sum(_f(r, "reid_dist") * _i(r, "faces") for r in with_faces) / n_faces) if n_faces else None
    skipped = Counter(r["status"].split(":", 1)[1] if ":" in r["status"] else r["status"]
                      for r in rows if r.get("status") != "ok")
    timed = [r for r in ok if r.get("server_s") not in ("", None)]
    busy = sum(_f(r, "server_s") for r in timed)
    faces_done = sum(max(_i(r, "faces"), _i(r, "server_faces")) for r in timed)
    latencies = [_f(r, "latency_ms") for r in ok if r.get("latency_ms") not in ("", None)]
    gt = sum(_i(r, "gt_faces") for r in ok)
    recalled = sum(_i(r, "gt_recalled") for r in ok if r.get("gt_recalled") not in ("", None))
    has_recall = any(r.get("gt_recalled") not in ("", None) for r in ok)
    return {
        "table": table,
        "reid_mean_distance": _none(reid_dist),
        "det_on_originals": _share(sum(_i(r, "orig_det_found") for r in with_faces), n_faces),
        "detector_recall": _share(recalled, gt) if has_recall else None,
        "untouched_faces": sum(_i(r, "untouched") for r in ok) if has_recall else None,
        "false_positives": sum(_i(r, "false_pos") for r in ok) if has_recall else None,
        "faces_blurred": sum(_i(r, "server_blurred") for r in ok) if has_recall else None,
        "faces_anonymised": sum(_i(r, "server_faces") + _i(r, "server_blurred") for r in ok) if has_recall else None,
        "labelled_faces": gt,
        "no_face_frames": len(no_faces),
        "no_face_image_sim": _none(mean_or_nan(_f(r, "image_sim") for r in no_faces)),
        "frames_total": len(rows),
        "frames_ok": len(ok),
        "skipped": dict(sorted(skipped.items())),
        "throughput": {
            "frames_per_s": _none(len(timed) / busy if busy > 0 else float("nan")),
            "faces_per_s": _none(faces_done / busy if busy > 0 else float("nan")),
            "latency_p50_ms": _none(percentile(latencies, 50)),
            "latency_p95_ms": _none(percentile(latencies, 95)),
            "requests": len(latencies),
        },
    }


def _none(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _share(num: int, den: int) -> float | None:
    return num / den if den else None


def _cell(value, integer: bool = False) -> str:
    if value is None:
        return EMPTY
    return str(int(value)) if integer else f"{value:.4f}"


def format_table(summary: dict) -> str:
    """The original's table (ssim, psnr in dB, image sim) plus reid, det, faces, frames rows."""
    t = summary["table"]
    keys = list(BINS) + ["average"]
    lines = ["\t        " + " \t".join(COLUMNS[:4]) + " \t" + COLUMNS[4] + "\t" + COLUMNS[5],
             "-" * 59]
    for label in ("ssim", "psnr", "image sim", "reid", "det", "recall", "untouched"):
        if label not in t:
            continue
        name = f"{label:<8}" if len(label) < 8 else label
        lines.append(name + "\t" + "\t".join(_cell(t[PRINTED[label]][k]) for k in keys))
    for label in ("faces", "frames"):
        lines.append(f"{label:<8}\t" + "\t".join(_cell(t[label][k], integer=True) for k in keys))
    return "\n".join(lines)


def format_throughput(summary: dict) -> str:
    tp = summary["throughput"]

    def num(v, fmt):
        return EMPTY if v is None else format(v, fmt)

    return (f"throughput: {num(tp['frames_per_s'], '.2f')} frames/s, {num(tp['faces_per_s'], '.2f')} faces/s, "
            f"request latency p50 {num(tp['latency_p50_ms'], '.1f')} ms, p95 {num(tp['latency_p95_ms'], '.1f')} ms "
            f"({tp['requests']} requests)")


def format_notes(summary: dict) -> str:
    lines = []
    if summary.get("reid_mean_distance") is not None:
        lines.append(f"reid mean descriptor distance {summary['reid_mean_distance']:.4f} (re-identified if < 0.6)")
    if summary.get("det_on_originals") is not None:
        lines.append(f"det on the original frames (reference): {summary['det_on_originals']:.4f}")
    if summary.get("detector_recall") is not None:
        lines.append(f"detector recall against the labels (served detector, IoU >= 0.5): "
                     f"{summary['detector_recall']:.4f}")
    if summary.get("untouched_faces") is not None:
        lines.append(f"labelled faces returned unchanged (SSIM >= 0.9): {summary['untouched_faces']} of "
                     f"{summary.get('labelled_faces')}; anonymised boxes: {summary.get('faces_anonymised')} "
                     f"({summary.get('faces_blurred')} blurred: low score or small), false positives: "
                     f"{summary['false_positives']}")
    if summary.get("no_face_frames"):
        sim = summary.get("no_face_image_sim")
        lines.append(f"frames without faces: {summary['no_face_frames']} (image sim "
                     f"{EMPTY if sim is None else format(sim, '.4f')})")
    if summary.get("skipped"):
        lines.append("skipped frames: " + ", ".join(f"{k}: {v}" for k, v in summary["skipped"].items()))
    return "\n".join(lines)


def format_comparison(summaries: dict[str, dict], untouched_fid: dict | None = None) -> str:
    """One line per model: the `average` column of each metric, fid_eff, and frames/s; with untouched_fid
    ({'fid_eff', 'faces'} of the original faces) an `untouched` line: fid_eff's reference row."""
    keys = ["ssim", "psnr", "image sim", "reid", "det"]
    if all("recall" in s["table"] for s in summaries.values()):  # --boxes detect: the leak, side by side
        keys += ["recall", "untouched"]
    short = {"psnr": "psnr dB", "image sim": "img sim"}
    ident = all("identification" in s for s in summaries.values())  # --identify
    head = (f"{'model':<14}\t" + "\t".join(f"{short.get(k, k)[:9]:>7}" for k in keys)
            + ("\t  ident" if ident else "") + f"\t{'fid_eff':>7}\t{'frames/s':>8}")
    lines = [head, "-" * (78 + 16 * (len(keys) - 5) + 8 * ident)]
    fid = lambda v: EMPTY if v is None else f"{v:.2f}"  # noqa: E731
    for name, s in summaries.items():
        t = s["table"]
        cells = [_cell(t[PRINTED[k]]["average"]) for k in keys]
        cells += [_cell(s["identification"]["ident"]["average"])] if ident else []
        cells += [fid(s.get("fid_eff"))]
        fps = s["throughput"]["frames_per_s"]
        fps_text = EMPTY if fps is None else f"{fps:.2f}"
        lines.append(f"{name:<14}\t" + "\t".join(f"{c:>7}" for c in cells) + f"\t{fps_text:>8}")
    if untouched_fid is not None:
        cells = [EMPTY] * (len(keys) + ident) + [fid(untouched_fid["fid_eff"])]
        lines.append(f"{'untouched':<14}\t" + "\t".join(f"{c:>7}" for c in cells) + f"\t{EMPTY:>8}")
    return "\n".join(lines)


def bin_values(summary: dict, label: str) -> list[float | None]:
    return [summary["table"][label][b] for b in list(BINS) + ["average"]]


__all__ = ["aggregate", "format_table", "format_throughput", "format_notes", "format_comparison", "bin_values",
           "COLUMNS"]
