"""`--identify` for eval/triton_eval.py: closed-set identification of the de-identified faces against a gallery.

A frame's person is the first folder of its key (`facedeid data photos identities/ OUT` gives keys
`<person>/<photo>`) and is the largest labelled face of the frame; other faces there are nobody's (bystanders:
never probes, and in the gallery only as distractors). The gallery is every original labelled face of the data set;
a face is identified when the nearest gallery face from another image is of the same person and within 0.6
(facedeid.metrics.identification).
Only faces of people with another image in the set count. Descriptors are kept under OUT/descriptors/ as the run
goes (so --resume keeps them); the shares are computed at the end, per bin like every other row.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .. import metrics as M
from ..data.dna import BINS, atomic_write_bytes

ORIGINAL = "original"


def _path(out: Path, model: str, key: str) -> Path:
    return Path(out) / "descriptors" / model / (key.replace("/", "__") + ".npz")


def save(out: Path, model: str, key: str, descriptors: np.ndarray, boxes: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, descriptors=np.asarray(descriptors, np.float64), boxes=np.asarray(boxes, np.float64))
    atomic_write_bytes(_path(out, model, key), buffer.getvalue())


def _load(path: Path) -> tuple[np.ndarray, int]:
    """Descriptors [N,128] and the index of the largest face (the named person's)."""
    with np.load(path) as data:
        boxes = data["boxes"].reshape(-1, 4)
        return data["descriptors"], int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))


def person_of(key: str) -> str | None:
    return key.split("/", 1)[0] if "/" in key else None


def by_bin(out: Path, rows: list[dict], model: str) -> dict:
    """{'ident': {bin: share or None}, 'ident_faces': {bin: faces counted}} for one model's rows; model ORIGINAL:
    the untouched faces themselves, the ceiling (one probe per frame that has an ok row)."""
    ok = [r for r in rows if r.get("status") == "ok" and int(float(r.get("faces") or 0)) > 0]
    gallery, g_person, g_photo = [], [], []
    for key in sorted({r["key"] for r in ok}):
        path = _path(out, ORIGINAL, key)
        if path.exists() and person_of(key) is not None:
            desc, main = _load(path)
            gallery.append(desc)
            g_person += [person_of(key) if i == main else f"{key}#{i}" for i in range(len(desc))]
            g_photo += [key] * len(desc)
    if not gallery:
        return {"ident": {b: None for b in (*BINS, "average")}, "ident_faces": {b: 0 for b in (*BINS, "average")}}
    g_desc = np.concatenate(gallery)
    photos_of: dict[str, set] = {}
    for p, ph in zip(g_person, g_photo):
        photos_of.setdefault(p, set()).add(ph)
    hits: dict[str, list[bool]] = {b: [] for b in (*BINS, "average")}
    probes = {r["key"]: r for r in ok}.values() if model == ORIGINAL else (r for r in ok if r["model"] == model)
    for r in sorted(probes, key=lambda r: r["key"]):
        person, path = person_of(r["key"]), _path(out, model, r["key"])
        if person is None or len(photos_of.get(person, ())) < 2 or not path.exists():
            continue
        probe, main = _load(path)
        found = bool(M.identification(probe[main][None], [person], [r["key"]], g_desc, g_person, g_photo)[0])
        hits[r["bin"]].append(found)
        hits["average"].append(found)
    return {"ident": {b: (float(np.mean(v)) if v else None) for b, v in hits.items()},
            "ident_faces": {b: len(v) for b, v in hits.items()}}


def format_rows(summary: dict) -> str:
    cells = [("#" if summary["ident"][b] is None else f"{summary['ident'][b]:.4f}") for b in (*BINS, "average")]
    faces = [str(summary["ident_faces"][b]) for b in (*BINS, "average")]
    return "ident   \t" + "\t".join(cells) + "\nnamed   \t" + "\t".join(faces)
