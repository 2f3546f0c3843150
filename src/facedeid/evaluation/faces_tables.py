"""The report-set evaluation's summaries (facedeid.evaluation.faces): per-method and per-face-size tables, the
Markdown it prints and the face grids it writes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .. import metrics as M
from ..data.dna import BINS

COLUMNS = (*BINS, "average")


def band_name(lo: int, hi: int) -> str:
    return f"{lo}-{hi if hi < 100000 else ''}px"


def box_side(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1]))


def summarise_bands(per_face: list[tuple]) -> dict:
    """Per face-size band (box side, M.FACE_SIZE_BANDS): faces, det, ident by dlib and by the second recognizer
    (faceres) on the face and on the context crop, and sharpness over the untouched face's (at SHARPNESS_SIDE px: mean
    and median; at native size: mean)."""
    out = {}
    for lo, hi in M.FACE_SIZE_BANDS:
        faces = [f for f in per_face if lo <= f[7] < hi]
        named = [f[1] for f in faces if f[1] is not None]
        mean = lambda v: round(float(np.nanmean(v)), 4) if len(v) else None  # noqa: E731
        named_at = lambda k, faces=faces: [f[k] for f in faces if f[k] is not None]  # noqa: E731
        out[band_name(lo, hi)] = {
            "faces": len(faces), "ident_faces": len(named), "ident": mean(named), "ident_context": mean(named_at(8)),
            "ident_second": mean(named_at(11)), "ident_second_context": mean(named_at(12)),
            "det": mean([f[3] for f in faces]), "sharpness_ratio": mean([f[9] for f in faces]),
            # the mean is carried by a few faces whose original is out of focus; the median face beside it
            "sharpness_ratio_median": round(float(np.nanmedian([f[9] for f in faces])), 4) if faces else None,
            "sharpness_ratio_native": mean([f[10] for f in faces])}
    return out


def summarise(per_face: list[tuple]) -> dict:
    out: dict[str, dict] = {k: {} for k in ("ident", "ident_faces", "reid", "det", "ssim", "psnr_db", "psnr",
                                             "image_sim", "faces")}
    for col in COLUMNS:
        faces = [f for f in per_face if col == "average" or f[0] == col]
        named = [f[1] for f in faces if f[1] is not None]
        out["faces"][col] = len(faces)
        out["ident_faces"][col] = len(named)
        out["ident"][col] = round(float(np.mean(named)), 4) if named else None
        for key, i in (("reid", 2), ("det", 3), ("ssim", 4), ("psnr_db", 5), ("image_sim", 6)):
            out[key][col] = round(float(np.mean([f[i] for f in faces])), 4) if faces else None
        out["psnr"][col] = None if out["psnr_db"][col] is None else round(M.psnr_norm(out["psnr_db"][col]), 4)
    return out


def write_grid(path: Path, crops: np.ndarray, cols: int = 6, cell: int = 96) -> None:
    cells = [cv2.resize(c, (cell, cell), interpolation=cv2.INTER_AREA) for c in crops]
    cells += [np.full((cell, cell, 3), 255, np.uint8)] * (-len(cells) % cols)
    rows = [np.concatenate(cells[i : i + cols], 1) for i in range(0, len(cells), cols)]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


def markdown(result: dict, key: str = "results") -> str:
    lines = ["| method | ident | reid | det | det retention | fid_eff | ssim | psnr | image sim |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    pct = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
    num = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for name, r in result[key].items():
        a = "average"
        fid = result["results"][name]["fid_eff"]
        lines.append(f"| {name} | {pct(r['ident'][a])} | {pct(r['reid'][a])} | {pct(r['det'][a])} | "
                     f"{num(r['det_retention'][a])} | {fid:.1f} | {num(r['ssim'][a])} | {num(r['psnr'][a])} "
                     f"| {num(r['image_sim'][a])} |")
    return "\n".join(lines)


def per_bin(result: dict, key: str, table: str = "results") -> str:
    head = "| method | " + " | ".join(COLUMNS) + " |"
    lines = [head, "| --- |" + " ---: |" * len(COLUMNS)]
    for name, r in result[table].items():
        lines.append(f"| {name} | " + " | ".join("-" if r[key][c] is None else f"{r[key][c]:.3f}" for c in COLUMNS)
                     + " |")
    faces = result[table]["untouched"]["faces"]
    lines.append("| faces | " + " | ".join(str(faces[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)


def bands_table(result: dict) -> str:
    lines = ["| method | band | faces | named | dlib face | dlib context | faceres face | faceres context "
             "| det retention | sharpness | sharpness median | sharpness native |", "| --- | --- |" + " ---: |" * 10]
    pct = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
    num = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    base = result["results"]["untouched"]["by_face_size"]
    for name, r in result["results"].items():
        for band, v in r["by_face_size"].items():
            ret = None if v["det"] is None or not base[band]["det"] else v["det"] / base[band]["det"]
            lines.append(f"| {name} | {band} | {v['faces']} | {v['ident_faces']} | {pct(v['ident'])} | "
                         f"{pct(v['ident_context'])} | {pct(v['ident_second'])} | {pct(v['ident_second_context'])} | "
                         f"{num(ret)} | {num(v['sharpness_ratio'])} | {num(v.get('sharpness_ratio_median'))} | "
                         f"{num(v['sharpness_ratio_native'])} |")
    return "\n".join(lines)


def report(result: dict, people: str) -> str:
    """What `facedeid eval people` prints: the tables of a result, per bin, per face size, impostor rates."""
    lines = []
    measured = result["selection_people" if people == "selection" else "report_people"]
    lines.append(f"measured on the {people} people ({', '.join(measured)})")
    lines.append(markdown(result))
    for key in ("ident", "det_retention", "image_sim"):
        lines.append(f"\n{key} per bin (identities, {people} set):\n" + per_bin(result, key))
    if result["scene_results"]:
        lines.append("\nscenes (CenterFace boxes; ident: no names there; fid_eff: both sets together):\n"
                     + markdown(result, "scene_results"))
        for key in ("det_retention", "image_sim"):
            lines.append(f"\n{key} per bin (scenes):\n" + per_bin(result, key, "scene_results"))
    lines.append("\nby face size (box side; ident by dlib and by faceres, each on the face and on the 1.6x context "
                 "crop; sharpness: over the untouched face's at 96 px, mean and median / at native size):\n"
                 + bands_table(result))
    lines.append("\nfaceres impostor rate (face / context) by face size: "
                 + ", ".join(f"{band} {v['impostor_rate']:.1%} / {v['impostor_rate_context']:.1%} ({v['pairs']} pairs)"
                             for band, v in result["second_impostor_rate_by_face_size"].items()))
    lines.append("\ndlib impostor rate (different people within 0.6) by face size: "
                 + ", ".join(f"{band} {v['impostor_rate']:.1%} ({v['pairs']} pairs)"
                             for band, v in result["impostor_rate_by_face_size"].items()))
    return "\n".join(lines)
