"""`facedeid train ksame-bank`: the ksame donor bank from UTKFace-named face crops, and its record.

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
    BANK_SIDE,
    DEFAULT_K,
    DEFAULT_TRIM,
    DENSE_MAX_OFFSET,
    K_MIN,
    UTKFACE_TERMS,
    Landmarks,
    apply,
    dense_rect,
    held_apart,
    ring_mask,
    similarity,
    skin_tone,
    thumbnail,
    utkface_labels,
    yaw_of,
)
from .warp import dense_landmarks, face_hull_mask, frame_points, triangulate, warp

RECT_SAMPLE = 400  # donors on which dlib's own detector fixes where its face rectangle sits relative to the 5 points


def donor_crops(paths: list[Path], detector, store: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Each donor photo as a standard crop at BANK_SIDE px (facedeid.crops at CenterFace's box; kept in a memory-
    mapped file: thousands of 256 px crops) and its five CenterFace landmarks in that crop."""
    from tqdm import tqdm

    from ..crops import extract_crops
    from ..data.dna import ImageError, read_image

    crops = np.lib.format.open_memmap(store, mode="w+", dtype=np.uint8, shape=(len(paths), BANK_SIDE, BANK_SIDE, 3))
    kept = []
    for path in tqdm(paths, desc="donor faces", unit="photo", file=sys.stderr):
        try:
            image = read_image(path)
        except ImageError:
            continue
        boxes, scores = detector(image)
        if len(boxes) != 1 or scores[0] < 0.7:  # one clear face, or not a donor
            continue
        crops[len(kept)] = extract_crops(image, boxes, BANK_SIDE)[0][0]
        kept.append(path)
    crops = crops[: len(kept)]
    return kept, crops, Landmarks(threads=1)(crops)[0]


def face_rect(crops: np.ndarray, points: np.ndarray, template: np.ndarray) -> np.ndarray:
    """dlib's frontal detector's face rectangle in the bank frame (mean over the donors where it finds one face):
    the rectangle its shape predictor was trained with, placed from CenterFace's five points at serving time."""
    import dlib

    detect = dlib.get_frontal_face_detector()
    rects = []
    for crop, p in zip(crops[:RECT_SAMPLE], points[:RECT_SAMPLE]):
        found = detect(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), 0)
        if len(found) != 1:
            continue
        r = found[0]
        m = similarity(p, template)
        corners = apply(m, [[r.left(), r.top()], [r.right(), r.bottom()]])
        centre, half = corners.mean(0), np.sqrt(abs(np.linalg.det(m[:, :2]))) * (r.right() - r.left()) / 2
        rects.append([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])
    if len(rects) < 20:
        raise SystemExit(f"dlib's detector found one face in only {len(rects)} of the first {RECT_SAMPLE} donors")
    return np.mean(rects, axis=0)


def trimmed_mean(stack: np.ndarray, trim: int) -> np.ndarray:
    """Per pixel and channel, the mean of the donors left after dropping the `trim` lowest and highest values: a
    feature only a few donors have (glasses, a shadow, an open mouth) is dropped instead of ghosting in half-strong.
    Every pixel is still the mean of len(stack) - 2 * trim donors."""
    ordered = np.sort(stack, axis=0)
    kept = ordered[trim: len(stack) - trim].astype(np.float64)
    return np.clip(kept.mean(0) + 0.5, 0, 255).astype(np.uint8)


# Face regions by dlib's 68 points (jaw thirds, each brow, nose, each eye, mouth): each region's fine detail comes from
# a different donor of the average, so no donor's detail covers more than one region.
DETAIL_REGIONS = ((0, 6), (6, 11), (11, 17), (17, 22), (22, 27), (27, 36), (36, 42), (42, 48), (48, 68))
DETAIL_BAND = 2.0  # px at BANK_SIDE: the detail is a donor less its Gaussian blur of this sigma (about 1 px of a
#                    face box shrunk to metrics.SHARPNESS_SIDE)
DETAIL_SEAM = 6.0  # px at BANK_SIDE: regions blend over about this (a blurred one-hot partition still sums to 1)
DETAIL_MATCH = 2.0  # px: a region's donor is the one whose blurred face agrees best with the average there (at 2 px a
#                    donor's glasses frames or misplaced eyelids count against it; at 6 px they did not)


def detail_regions(shape: np.ndarray, side: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per DETAIL_REGIONS group of the mean shape's 68 points: (hard [R,R] mask of the pixels nearest one of its
    points, the same blurred over DETAIL_SEAM for blending). The same for every average of a bank."""
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    nearest = np.argmin((xs[..., None] - shape[:, 0]) ** 2 + (ys[..., None] - shape[:, 1]) ** 2, axis=2)
    region_of_point = np.zeros(len(shape), np.int64)
    for r, (a, b) in enumerate(DETAIL_REGIONS):
        region_of_point[a:b] = r
    regions = region_of_point[nearest]
    hard = [(regions == r).astype(np.float32) for r in range(len(DETAIL_REGIONS))]
    return [(h, cv2.GaussianBlur(h, (0, 0), DETAIL_SEAM)) for h in hard]


def detail_mosaic(stack: np.ndarray, average: np.ndarray, shape: np.ndarray, inner: np.ndarray,
                  regions: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """int8 [R,R] grey fine detail for an average of the aligned donors `stack` [k,R,R,3]: per face region
    (`regions`, detail_regions of the mean `shape`) the high-pass of a different donor. Of the len(DETAIL_REGIONS)
    donors least likely to wear glasses (framed_last), those with no more detail there than the median donor, and of
    them the one whose blurred face agrees best with the average's there (its edges then sit on the average's
    features); inside the inner face `inner` only. An average has no detail of its own (each donor's pores and
    eyelashes fall elsewhere); this gives it real skin and feature detail without any donor's whole face."""
    if len(stack) < len(DETAIL_REGIONS):
        raise ValueError(f"a detail mosaic needs at least {len(DETAIL_REGIONS)} donors, got {len(stack)}")
    grey = stack.astype(np.float32).mean(axis=3)
    high = np.stack([g - cv2.GaussianBlur(g, (0, 0), DETAIL_BAND) for g in grey])
    low = np.stack([cv2.GaussianBlur(g, (0, 0), DETAIL_MATCH) for g in grey])
    avg_low = cv2.GaussianBlur(average.astype(np.float32).mean(axis=2), (0, 0), DETAIL_MATCH)
    detail, free = np.zeros(grey.shape[1:], np.float32), framed_last(high, shape)[: len(DETAIL_REGIONS)]
    for one_hot, blend in regions:
        # not the donors with the most detail there (glasses frames, a beard's edge, a strong shadow), then the one
        # whose blurred face agrees best with the average
        energy = np.array([float(((high[i] ** 2) * one_hot).sum()) for i in free])
        calm = [i for i, e in zip(free, energy) if e <= np.median(energy)]
        misfit = [float((((low[i] - avg_low) ** 2) * one_hot).sum()) for i in calm]
        donor = calm[int(np.argmin(misfit))]
        free.remove(donor)
        detail += blend * high[donor]
    return np.clip(np.round(detail * inner), -127, 127).astype(np.int8)


def framed_last(high: np.ndarray, shape: np.ndarray) -> list[int]:
    """Donor indices, fewest glasses first: by the detail (`high`, [k,R,R]) where a frame runs and skin is smooth
    (the nose bridge between the inner eye corners, and beside each outer eye corner), its share of the eyes' own
    detail. Glasses frames are the one feature a region's donor carries into the mosaic that the average lacks."""
    eye_w = float(np.linalg.norm(shape[39] - shape[36]))
    r = max(2, round(0.25 * eye_w))
    spots = [(shape[39] + shape[42]) / 2 - [0, 0.3 * eye_w],  # the bridge, a little above the inner eye corners
             shape[36] - [0.45 * eye_w, 0], shape[45] + [0.45 * eye_w, 0]]  # the frame's sides

    def at(c: np.ndarray) -> tuple[slice, slice]:
        return slice(int(c[1]) - r, int(c[1]) + r + 1), slice(int(c[0]) - r, int(c[0]) + r + 1)

    eyes = [shape[36:42].mean(0), shape[42:48].mean(0)]
    frame = np.array([sum(float((h[at(c)] ** 2).mean()) for c in spots) for h in high])
    own = np.array([sum(float((h[at(c)] ** 2).mean()) for c in eyes) for h in high])
    return [int(i) for i in np.argsort(frame / np.maximum(own, 1e-6), kind="stable")]


def build(train_dir: Path, out: Path, k: int = DEFAULT_K, max_per_group: int = 3, ages: tuple[int, int] = (16, 70),
          seed: int = 0, log=print, max_donors: int = 0, trim: int = DEFAULT_TRIM) -> dict:
    """Group adult donors by gender, pose and skin tone; warp k donors onto one mean shape and average them."""
    import tempfile

    from tqdm import tqdm

    from ..detection import CenterFaceDetector

    if k - 2 * trim < K_MIN:
        raise ValueError(f"k must be >= {K_MIN + 2 * trim} (every pixel averages k - 2 x trim >= {K_MIN} donors)")
    start = time.time()
    paths = sorted(p for p in Path(train_dir).glob("*.jpg"))
    labelled = [(p, utkface_labels(p.name)) for p in paths]
    candidates = [p for p, lab in labelled
                  if lab and ages[0] <= lab["age"] <= ages[1] and lab["gender"] in (0, 1) and not held_apart(p.name)]
    if not candidates:
        raise SystemExit(f"no UTKFace-named crops (age_gender_race_*.jpg) in {train_dir}")
    if max_donors:
        candidates = candidates[:: max(1, len(candidates) // max_donors)][:max_donors]
    log(f"{len(paths)} crops, {len(candidates)} adult donor candidates (ages {ages[0]}-{ages[1]}, held-apart excluded)")
    side = BANK_SIDE
    with tempfile.TemporaryDirectory(prefix="ksame_build_") as tmp:
        kept, crops, points = donor_crops(candidates, CenterFaceDetector(threads=1), Path(tmp) / "crops.npy")
        template = np.median(points, axis=0)
        for _ in range(2):  # refine: mean of the donors aligned to the current template
            template = np.mean([apply(similarity(p, template), p) for p in points], axis=0)
        rect = face_rect(crops, points, template)
        to_crop = [similarity(template, p) for p in points]
        dense, good = [], []
        for crop, m in zip(tqdm(crops, desc="dense landmarks", unit="face", file=sys.stderr), to_crop):
            dense.append(dense_landmarks(crop, dense_rect(m, rect)))
        dense = np.stack(dense)
        in_bank = np.stack([apply(cv2.invertAffineTransform(m), d) for m, d in zip(to_crop, dense)])
        shape = np.median(in_bank, axis=0)
        offset = np.median(np.linalg.norm(in_bank - shape, axis=2), axis=1)
        good = offset <= DENSE_MAX_OFFSET * (rect[2] - rect[0])  # landmarks far off the mean: a misfit, not a donor
        shape = in_bank[good].mean(0)
        bank_points = np.concatenate([shape, frame_points(side)])
        triangles = triangulate(bank_points)
        inner, ring = face_hull_mask(shape, side), ring_mask(shape, side)
        aligned = [cv2.warpAffine(c, cv2.invertAffineTransform(m), (side, side), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE) for c, m in zip(crops, to_crop)]
        yaw = np.array([yaw_of(apply(similarity(p, template), p)) for p in points])
        tone = np.array([skin_tone(a, ring) for a in aligned])
        del aligned
        labels = [utkface_labels(p.name) for p in kept]
        gender = np.array([lab["gender"] for lab in labels])
        age = np.array([lab["age"] for lab in labels])
        yaw_edges = np.quantile(yaw[good], [1 / 3, 2 / 3])
        tone_edges = np.quantile(tone[good], [0.25, 0.5, 0.75])
        yaw_bin, tone_bin = np.digitize(yaw, yaw_edges), np.digitize(tone, tone_edges)
        entries = []
        for g in (0, 1):
            for yb in range(3):
                for tb in range(4):
                    members = np.flatnonzero(good & (gender == g) & (yaw_bin == yb) & (tone_bin == tb))
                    members = members[np.argsort(age[members], kind="stable")]  # age-homogeneous averages: crisper
                    n_avg = min(max_per_group, len(members) // k)
                    if n_avg == 0:
                        continue
                    # n_avg disjoint, age-ordered runs of k donors spread over the group's age range
                    for chunk in np.array_split(members[: (len(members) // k) * k].reshape(-1, k), n_avg):
                        donors = chunk[len(chunk) // 2]
                        entries.append({"gender": g, "yaw_bin": yb, "tone_bin": tb, "donors": donors})
        faces, details, records = [], [], []
        regions = detail_regions(shape, side)
        for e in tqdm(entries, desc="averages", unit="average", file=sys.stderr):
            d = e["donors"]
            stack = np.stack([warp(crops[i], np.concatenate([dense[i], apply(to_crop[i], frame_points(side))]),
                                   bank_points, triangles, (side, side)) for i in d])
            faces.append(trimmed_mean(stack, trim))
            details.append(detail_mosaic(stack, faces[-1], shape, inner, regions))
            records.append({"gender": ["male", "female"][e["gender"]], "yaw_bin": int(e["yaw_bin"]),
                            "tone_bin": int(e["tone_bin"]), "k": int(len(d)),
                            "ages": [int(age[d].min()), int(age[d].max())],
                            "races": sorted({int(labels[i]["race"]) for i in d}),
                            "sources": [kept[i].name for i in d]})
        del crops
    faces = np.stack(faces)
    arrays = {
        "faces": faces, "detail": np.stack(details), "template": template.astype(np.float32),
        "shape": shape.astype(np.float32),
        "rect": rect.astype(np.float32), "triangles": triangles,
        "yaw": np.array([float(np.mean(yaw[e["donors"]])) for e in entries], np.float32),
        "tone": np.array([skin_tone(f, ring) for f in faces], np.float32),
        "thumbs": np.stack([thumbnail(f, inner) for f in faces]),
        "k": np.array([len(e["donors"]) for e in entries], np.int64), "trim": np.int64(trim),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp_out, **arrays)
    tmp_out.replace(out)
    record = {
        "command": f"facedeid train ksame-bank --k {k} --trim {trim} --max-per-group {max_per_group}"
                   + (f" --max-donors {max_donors}" if max_donors else ""),
        "train_dir": _shown(Path(train_dir)), "k": k, "trim": trim,
        "per_pixel_donors": k - 2 * trim, "average": f"per pixel, the mean of the k donors less the {trim} lowest and "
        f"{trim} highest values (a trimmed mean): every pixel averages {k - 2 * trim} >= {K_MIN} donors",
        "entries": len(faces), "min_k": int(arrays["k"].min()),
        "detail": f"per average, int8 grey fine detail (each donor less its Gaussian blur of {DETAIL_BAND} px) laid "
        f"as a mosaic: each of {len(DETAIL_REGIONS)} face regions (dlib's 68-point groups) from a different donor of "
        "the average: of the donors least likely to wear glasses and with at most the median donor's detail there, "
        "the one whose blurred face agrees best with the average there; inner face only",
        "side": side, "alignment": "dlib 68-point landmarks (face_recognition_models' shape predictor, face rectangle "
        "placed from CenterFace's 5 points), every donor warped piecewise-affinely (Delaunay) onto the donors' mean "
        "shape; donors whose landmarks sit far from it (median > "
        f"{DENSE_MAX_OFFSET} of the face rectangle) are left out",
        "donor_candidates": len(candidates), "donors_with_one_clear_face": len(kept),
        "donors_with_good_landmarks": int(good.sum()),
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
    from .. import cli_args
    from ..paths import SHARED_FACES

    parser = argparse.ArgumentParser(prog="facedeid train ksame-bank", description=__doc__.splitlines()[0],
                                     epilog="python tools/ksame_stability.py --help: how often the donor changes "
                                            "between video frames of one face")
    parser.add_argument("--train-dir", type=Path, default=SHARED_FACES / "train" / "utkface",
                   help="UTKFace-named face crops (age_gender_race_*.jpg; default: the shared collection's)")
    parser.add_argument("--out", type=Path, default=BANK_PATH, help="bank file to write (default: the shipped one)")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help=f"donors per average (default {DEFAULT_K})")
    parser.add_argument("--trim", type=int, default=DEFAULT_TRIM, help="per pixel, drop this many lowest and highest "
                   f"donor values (k - 2 x trim >= {K_MIN}; default {DEFAULT_TRIM})")
    parser.add_argument("--max-per-group", type=int, default=3, help="averages per (gender, pose, tone) group")
    parser.add_argument("--max-donors", type=int, default=0, help="use at most this many candidates, evenly spread "
                   "(0: all; for quick trials)")
    cli_args.finish(parser)
    args = parser.parse_args(argv)
    if not args.train_dir.is_dir():
        parser.error(f"{args.train_dir} is not a folder")
    build(args.train_dir, args.out, args.k, args.max_per_group, max_donors=args.max_donors, trim=args.trim)
    return 0
