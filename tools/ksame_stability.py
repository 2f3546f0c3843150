"""How often ksame changes donor between video frames of one face: the flicker a viewer sees.

    python tools/ksame_stability.py [--identities DIR] [--people selection|report] [--frames 30] [--json FILE]

ksame is stateless: each crop gets the bank average nearest to it in pose, skin tone and coarse appearance. In video
the same face arrives with a slightly different box and exposure in every frame; when that moves it across a
boundary between two averages, the replacement face changes. This simulates it without a video: for the main face
of each photo, `--frames` copies with the box jittered (normal, 2 % of its side per coordinate) and the exposure
scaled (normal, 3 %), cropped like the server crops, and counts how often consecutive frames get different donors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from facedeid import cli_args

BOX_JITTER = 0.02  # of the face box's side, per coordinate
EXPOSURE_JITTER = 0.03


def jittered_crops(frame: np.ndarray, box: np.ndarray, frames: int, rng: np.random.Generator,
                   size: int) -> np.ndarray:
    from facedeid.crops import extract_crops

    side = float(max(box[2] - box[0], box[3] - box[1]))
    crops = []
    for _ in range(frames):
        moved = (box + rng.normal(0, BOX_JITTER * side, 4)).astype(np.float32)
        exposed = np.clip(frame.astype(np.float32) * (1 + rng.normal(0, EXPOSURE_JITTER)) + 0.5, 0, 255)
        crops.append(extract_crops(exposed.astype(np.uint8), moved[None], size)[0][0])
    return np.stack(crops)


def measure(identities: Path, people: str, frames: int, seed: int = 0) -> dict:
    from tqdm import tqdm

    from facedeid.detection import DEFAULT_GENERATE_THRESHOLD, CenterFaceDetector
    from facedeid.evaluation.faces import main_face, split_people
    from facedeid.ksame import SIZE, KSame
    from facedeid.train.data import list_images, read_rgb

    generator, rng = KSame(), np.random.default_rng(seed)
    detector = CenterFaceDetector(threshold=DEFAULT_GENERATE_THRESHOLD, threads=1)
    selection, report = split_people(sorted(p.name for p in identities.iterdir() if p.is_dir()))
    paths = [path for person in (selection if people == "selection" else report)
             for path in list_images(identities / person)]
    faces = []
    for path in tqdm(paths, desc="ksame stability", unit="photo", file=sys.stderr):
        frame = read_rgb(path)
        if frame is None:
            continue
        boxes, _ = detector(frame)
        if not len(boxes):
            continue
        donors = generator.donors(jittered_crops(frame, boxes[main_face(boxes)], frames, rng, SIZE))
        faces.append({"photo": f"{path.parent.name}/{path.name}", "switches": int((np.diff(donors) != 0).sum()),
                      "distinct_donors": int(len(set(donors.tolist())))})
    pairs = len(faces) * (frames - 1)
    switches = sum(f["switches"] for f in faces)
    return {"people": people, "faces": len(faces), "frames_per_face": frames, "box_jitter": BOX_JITTER,
            "exposure_jitter": EXPOSURE_JITTER, "seed": seed, "frame_pairs": pairs, "donor_switches": switches,
            "switch_rate": round(switches / pairs, 4) if pairs else None,
            "faces_with_a_switch": sum(1 for f in faces if f["switches"]),
            "max_distinct_donors": max((f["distinct_donors"] for f in faces), default=0), "per_face": faces}


def main(argv: list[str] | None = None) -> int:
    from facedeid.paths import SHARED_FACES

    p = argparse.ArgumentParser(prog="python tools/ksame_stability.py", description=__doc__.splitlines()[0])
    p.add_argument("--identities", type=Path, default=SHARED_FACES / "identities",
                   help="one folder of photos per person (default: the shared collection's identities/)")
    p.add_argument("--people", choices=("selection", "report"), default="selection",
                   help="which people of evaluation.faces' split to use (default selection)")
    p.add_argument("--frames", type=int, default=30, help="jittered frames per face (default 30)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the jitter")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = cli_args.finish(p).parse_args(argv)
    if args.frames < 2:
        p.error("--frames must be at least 2")
    if not args.identities.is_dir():
        p.error(f"{args.identities} is not a folder")
    result = measure(args.identities, args.people, args.frames, args.seed)
    result["command"] = "python tools/ksame_stability.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"ksame, {result['people']} people: {result['faces']} faces x {args.frames} jittered frames: donor "
          f"changes in {result['donor_switches']} of {result['frame_pairs']} consecutive pairs "
          f"({(result['switch_rate'] or 0):.1%}); {result['faces_with_a_switch']} faces change donor at least once, "
          f"up to {result['max_distinct_donors']} donors for one face")
    if args.json:
        from facedeid.data.files import write_json

        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
