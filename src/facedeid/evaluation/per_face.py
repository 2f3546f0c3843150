"""Per-face records of an evaluation, kept under OUT/faces/ as the run goes, and what the end of the run computes
from them: `fid_eff` per model (facedeid.evaluation.realism) and `reid` beside dlib's chance level per face-size band.

One file per model and frame, OUT/faces/<model>/<key>.npz, written atomically before the frame's row (so --resume
keeps it and --merge copies it): the label boxes, each face's reid distance (served models and baselines), the
fid_eff features of the faces the product generates (evaluation.realism.generated: short side >= 32 px) at the
same crops as ssim/psnr, and for `untouched` (the original frame) the dlib descriptors.

dlib's chance level (`impostor rate`): the share of pairs of *different* people's original faces within 0.6, per
face-size band (metrics.FACE_SIZE_BANDS, by the smaller face of the pair: its longer box side in native pixels, no
rescaling). Different people: two faces of one frame; with --identify also the named faces (a frame's largest, its
person the key's first folder, evaluation/identification.py) of two different persons across frames. `reid` per
band is the share of that band's faces a model's output still matches at the same box: beside the impostor rate it
says whether a match means anything at that size.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .. import metrics as M
from ..data.dna import atomic_write_bytes
from .identification import person_of

UNTOUCHED = "untouched"  # the original frames: fid_eff's reference row, and the descriptors of the chance level


def _path(out: Path, model: str, key: str) -> Path:
    return Path(out) / "faces" / model / (key.replace("/", "__") + ".npz")


def save(out: Path, model: str, key: str, boxes: np.ndarray, fid_features: np.ndarray,
         reid_dist: np.ndarray | None = None, descriptors: np.ndarray | None = None) -> None:
    arrays = {"boxes": np.asarray(boxes, np.float64).reshape(-1, 4),
              "fid_features": np.asarray(fid_features, np.float64).reshape(-1, 1280)}
    if reid_dist is not None:
        arrays["reid_dist"] = np.asarray(reid_dist, np.float64)
    if descriptors is not None:
        arrays["descriptors"] = np.asarray(descriptors, np.float64).reshape(-1, 128)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(_path(out, model, key), buffer.getvalue())


def _load(out: Path, model: str, key: str) -> dict | None:
    path = _path(out, model, key)
    if not path.exists():
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def copy(source: Path, target: Path) -> None:
    """--merge: a shard's records into the merged output (the keys of the shards are disjoint)."""
    import shutil

    folder = Path(source) / "faces"
    if folder.is_dir():
        shutil.copytree(folder, Path(target) / "faces", dirs_exist_ok=True)


def _side(boxes: np.ndarray) -> np.ndarray:
    """A face's size for the bands: its longer box side in pixels."""
    return np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def band_label(lo: int, hi: int) -> str:
    return f"{lo}-{hi}px" if hi < 100000 else f"{lo}px+"


def _band_masks(sides: np.ndarray) -> dict[str, np.ndarray]:
    return {band_label(lo, hi): (sides >= lo) & (sides < hi) for lo, hi in M.FACE_SIZE_BANDS}


def _keys(rows: list[dict], model: str | None = None) -> list[str]:
    """Keys of the ok rows with faces (of one model, or of any), sorted: sums run in one order however the run went."""
    return sorted({r["key"] for r in rows if r.get("status") == "ok" and int(float(r.get("faces") or 0)) > 0
                   and (model is None or r["model"] == model)})


def fid_eff(out: Path, rows: list[dict], models: list[str], reference: np.ndarray) -> dict:
    """{model: {'fid_eff': value or None, 'faces': n}} for every model and `untouched` (the originals' faces)."""
    from .realism import fid_eff as distance

    result = {}
    for model in [UNTOUCHED, *models]:
        records = [_load(out, model, k) for k in _keys(rows, None if model == UNTOUCHED else model)]
        features = [r["fid_features"] for r in records if r is not None]
        features = np.concatenate(features) if features else np.zeros((0, 1280))
        value = distance(features, reference)
        result[model] = {"fid_eff": None if value is None else round(value, 4), "faces": int(len(features))}
    return result


def reid_by_band(out: Path, rows: list[dict], model: str) -> dict:
    """{band: {'reid': share or None, 'faces': n}}: same-box verification of the model's faces in each band."""
    sides, matched = [], []
    for key in _keys(rows, model):
        record = _load(out, model, key)
        if record is not None and "reid_dist" in record:
            sides.append(_side(record["boxes"]))
            matched.append(record["reid_dist"] < M.REID_THRESHOLD)
    sides = np.concatenate(sides) if sides else np.zeros(0)
    matched = np.concatenate(matched) if matched else np.zeros(0, bool)
    return {band: {"reid": round(float(matched[m].mean()), 4) if m.any() else None, "faces": int(m.sum())}
            for band, m in _band_masks(sides).items()}


def chance_level(out: Path, rows: list[dict], identify: bool, same_frame_pairs: bool = True) -> dict:
    """{band: {'impostor_rate', 'pairs', 'same_frame_pairs', 'across_people_pairs'}}: dlib's false match rate on
    pairs of different people's original faces, banded by the pair's smaller face. Two faces of one frame count as
    different people unless `same_frame_pairs` is false (data.dna.faces_of_one_frame_differ)."""
    same, across = [], []  # (distance, smaller side) of the pairs
    mains = []  # (person, descriptor, side) of each frame's named face (--identify)
    for key in _keys(rows):
        record = _load(out, UNTOUCHED, key)
        if record is None or "descriptors" not in record:
            continue
        desc, sides = record["descriptors"], _side(record["boxes"])
        i, j = np.triu_indices(len(desc) if same_frame_pairs else 0, 1)
        same += zip(np.linalg.norm(desc[i] - desc[j], axis=1), np.minimum(sides[i], sides[j]))
        if identify and person_of(key) is not None and len(desc):
            main = int(np.argmax((record["boxes"][:, 2] - record["boxes"][:, 0])
                                 * (record["boxes"][:, 3] - record["boxes"][:, 1])))
            mains.append((person_of(key), desc[main], sides[main]))
    for a in range(len(mains)):
        for b in range(a + 1, len(mains)):
            if mains[a][0] != mains[b][0]:
                across.append((float(np.linalg.norm(mains[a][1] - mains[b][1])), min(mains[a][2], mains[b][2])))
    result = {}
    for lo, hi in M.FACE_SIZE_BANDS:
        in_band = [(d, kind) for kind, pairs in (("same", same), ("across", across)) for d, s in pairs if lo <= s < hi]
        hits = [d < M.REID_THRESHOLD for d, _ in in_band]
        result[band_label(lo, hi)] = {
            "impostor_rate": round(float(np.mean(hits)), 4) if hits else None, "pairs": len(hits),
            "same_frame_pairs": sum(1 for _, kind in in_band if kind == "same"),
            "across_people_pairs": sum(1 for _, kind in in_band if kind == "across")}
    return result


def format_bands(chance: dict, reid: dict[str, dict]) -> str:
    """reid per model beside the impostor rate, one line per face-size band ('-' where a band has no pairs)."""
    models = list(reid)
    head = f"{'band':<10}\t{'impostor (pairs)':>18}\t" + "\t".join(f"{m[:14]:>14}" for m in models)
    lines = [head, "-" * (30 + 16 * len(models))]
    for band, c in chance.items():
        rate = "-" if c["impostor_rate"] is None else f"{c['impostor_rate']:.4f} ({c['pairs']})"
        cells = ["-" if reid[m][band]["reid"] is None else f"{reid[m][band]['reid']:.4f} ({reid[m][band]['faces']})"
                 for m in models]
        lines.append(f"{band:<10}\t{rate:>18}\t" + "\t".join(f"{c:>14}" for c in cells))
    return "\n".join(lines)
