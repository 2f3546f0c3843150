"""`python -m facedeid.ksame build`: the ksame donor bank from UTKFace-named face crops, and its record.

Kept apart from the served generator (facedeid.ksame) so the server image needs none of its imports.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from ..paths import REPO_ROOT
from . import (
    BANK_PATH,
    DEFAULT_K,
    K_MIN,
    SIZE,
    UTKFACE_TERMS,
    Landmarks,
    apply,
    face_masks,
    held_apart,
    similarity,
    skin_tone,
    thumbnail,
    utkface_labels,
    yaw_of,
)


def donor_crops(paths: list[Path], detector) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Each donor photo as a standard crop (facedeid.crops at CenterFace's box) and its landmarks in that crop."""
    from tqdm import tqdm

    from ..crops import extract_crops
    from ..data.dna import ImageError, read_image

    kept, crops = [], []
    for path in tqdm(paths, desc="donor faces", unit="photo", file=sys.stderr):
        try:
            image = read_image(path)
        except ImageError:
            continue
        boxes, scores = detector(image)
        if len(boxes) != 1 or scores[0] < 0.7:  # one clear face, or not a donor
            continue
        crop, _ = extract_crops(image, boxes, SIZE)
        kept.append(path)
        crops.append(crop[0])
    crops = np.stack(crops)
    return kept, crops, Landmarks(threads=1)(crops)[0]


def build(train_dir: Path, out: Path, k: int = DEFAULT_K, max_per_group: int = 3, ages: tuple[int, int] = (16, 70),
          seed: int = 0, log=print) -> dict:
    """Group adult donors by gender, pose and skin tone; average k aligned donors per bank entry."""
    from ..detection import CenterFaceDetector

    if k < K_MIN:
        raise ValueError(f"k must be >= {K_MIN}")
    start = time.time()
    paths = sorted(p for p in Path(train_dir).glob("*.jpg"))
    labelled = [(p, utkface_labels(p.name)) for p in paths]
    candidates = [p for p, lab in labelled
                  if lab and ages[0] <= lab["age"] <= ages[1] and lab["gender"] in (0, 1) and not held_apart(p.name)]
    if not candidates:
        raise SystemExit(f"no UTKFace-named crops (age_gender_race_*.jpg) in {train_dir}")
    log(f"{len(paths)} crops, {len(candidates)} adult donor candidates (ages {ages[0]}-{ages[1]}, held-apart excluded)")
    kept, crops, points = donor_crops(candidates, CenterFaceDetector(threads=1))
    template = np.median(points, axis=0)
    for _ in range(2):  # refine: mean of the donors aligned to the current template
        template = np.mean([apply(similarity(p, template), p) for p in points], axis=0)
    inner, ring = face_masks(template)
    aligned = np.stack([cv2.warpAffine(c, similarity(p, template), (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REPLICATE) for c, p in zip(crops, points)])
    yaw = np.array([yaw_of(apply(similarity(p, template), p)) for p in points])
    tone = np.array([skin_tone(a, ring) for a in aligned])
    labels = [utkface_labels(p.name) for p in kept]
    gender = np.array([lab["gender"] for lab in labels])
    age = np.array([lab["age"] for lab in labels])
    yaw_edges = np.quantile(yaw, [1 / 3, 2 / 3])
    tone_edges = np.quantile(tone, [0.25, 0.5, 0.75])
    yaw_bin, tone_bin = np.digitize(yaw, yaw_edges), np.digitize(tone, tone_edges)
    entries = []
    for g in (0, 1):
        for yb in range(3):
            for tb in range(4):
                members = np.flatnonzero((gender == g) & (yaw_bin == yb) & (tone_bin == tb))
                members = members[np.argsort(age[members], kind="stable")]  # age-homogeneous averages: crisper
                n_avg = min(max_per_group, len(members) // k)
                if n_avg == 0:
                    continue
                # n_avg disjoint, age-ordered runs of k donors spread over the group's age range
                for chunk in np.array_split(members[: (len(members) // k) * k].reshape(-1, k), n_avg):
                    donors = chunk[len(chunk) // 2]
                    entries.append({"gender": g, "yaw_bin": yb, "tone_bin": tb, "donors": donors})
    faces, records = [], []
    for e in entries:
        d = e["donors"]
        avg = np.clip(aligned[d].astype(np.float64).mean(0) + 0.5, 0, 255).astype(np.uint8)
        faces.append(avg)
        records.append({"gender": ["male", "female"][e["gender"]], "yaw_bin": int(e["yaw_bin"]),
                        "tone_bin": int(e["tone_bin"]), "k": int(len(d)),
                        "ages": [int(age[d].min()), int(age[d].max())],
                        "races": sorted({int(labels[i]["race"]) for i in d}),
                        "sources": [kept[i].name for i in d]})
    faces = np.stack(faces)
    arrays = {
        "faces": faces, "template": template.astype(np.float32),
        "yaw": np.array([float(np.mean(yaw[e["donors"]])) for e in entries], np.float32),
        "tone": np.array([skin_tone(f, ring) for f in faces], np.float32),
        "thumbs": np.stack([thumbnail(f, inner) for f in faces]),
        "k": np.array([len(e["donors"]) for e in entries], np.int64),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out)
    record = {
        "command": f"python -m facedeid.ksame build --k {k} --max-per-group {max_per_group}",
        "train_dir": _shown(Path(train_dir)), "k": k, "entries": len(faces), "min_k": int(arrays["k"].min()),
        "donor_candidates": len(candidates), "donors_with_one_clear_face": len(kept),
        "donors_used": int(sum(len(e["donors"]) for e in entries)),
        "ages": list(ages), "held_apart": "1 in 5 crops by sha1(file name) % 5 == 0 (facedeid.ksame.held_apart): "
        "never a donor; the real reference of fid_eff",
        "groups": "gender (file name) x 3 yaw bins (terciles of the donors' yaw, edges "
                  f"{[round(float(v), 3) for v in yaw_edges]}) x 4 skin-tone bins (quartiles of Lab L* of the skin "
                  f"ring, edges {[round(float(v), 1) for v in tone_edges]}); within a group donors sorted by age, "
                  f"up to {max_per_group} disjoint runs of k",
        "identity_note": "UTKFace has no identity labels: k counts donor photos. The shared training crops were "
                         "screened with dlib against every evaluated person (identities, scenes, held-out set B), "
                         "so no evaluated person is a donor.",
        "terms": UTKFACE_TERMS, "bank_bytes": out.stat().st_size, "wall_s": round(time.time() - start, 1),
        "bank": records,
    }
    record_path = out.with_suffix(".json")
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    log(f"{len(faces)} averages of k={k} donors ({record['donors_used']} donors) -> {out} "
        f"({out.stat().st_size / 1e6:.2f} MB), record {record_path}")
    return record


def _shown(path: Path) -> str:
    """A path as the record shows it: relative to the checkout where it is beside it (../shared/...)."""
    import os

    return os.path.relpath(path.absolute(), REPO_ROOT)


def main(argv: list[str] | None = None) -> int:
    from ..paths import SHARED_FACES

    parser = argparse.ArgumentParser(prog="python -m facedeid.ksame", description=__doc__.splitlines()[0],
                                     epilog="python tools/ksame_stability.py --help: how often the donor changes "
                                            "between video frames of one face")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the donor bank from UTKFace-named face crops")
    b.add_argument("--train-dir", type=Path, default=SHARED_FACES / "train" / "utkface")
    b.add_argument("--out", type=Path, default=BANK_PATH)
    b.add_argument("--k", type=int, default=DEFAULT_K, help=f"donors per average (>= {K_MIN}; default {DEFAULT_K})")
    b.add_argument("--max-per-group", type=int, default=3, help="averages per (gender, pose, tone) group")
    args = parser.parse_args(argv)
    if not args.train_dir.is_dir():
        parser.error(f"{args.train_dir} is not a folder")
    build(args.train_dir, args.out, args.k, args.max_per_group)
    return 0
