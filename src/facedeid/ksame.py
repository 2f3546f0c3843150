"""`ksame`: replace a face with the average of k >= 10 aligned faces of other people (k-Same family).

k-Same (Newton, Sweeney & Malin 2005; Gross et al. 2006; k-Same-Net, Meden et al. 2018): every output face is the
average of at least k donor faces, none of whom is the target, so whatever identity the output carries belongs to
at least k people. This is a bound no trained generator gives.

How a crop is replaced (`KSame.generate`, the served `ksame` model runs exactly this):
1. landmarks: CenterFace (the detector already served) runs on the crop itself and gives the five landmarks of the
   face nearest the crop centre (so `deid_ksame_boxes`, where the caller gives only boxes, works the same way);
   a crop where none is found gets the bank's template landmarks at the crop's standard face position;
2. donor group: the bank average nearest to the target in pose (yaw from the landmarks), skin tone (Lab lightness
   of the skin around the inner face) and coarse appearance (a 16x16 grey thumbnail of the aligned inner face);
3. alignment: a similarity transform (least squares over the five landmarks) from the bank's template to the
   target's landmarks;
4. colour: Lab mean (and, bounded, spread) of the average's skin ring moved to the target's skin ring; chroma
   spread is never increased, so the transfer cannot over-saturate;
5. light unsharp mask, then a tight inner-face mask (eyebrows to chin, cheek to cheek, feathered): outside it the
   target's own crop is returned, so no donor hair or background can ghost in. Compose then blends the crop into
   the frame with its feathered window, as for every generator.

The bank (`weights/ksame_bank.npz`, built by `python -m facedeid.ksame build`) holds only the averages, never a
single donor's face; its record (`ksame_bank.json`) lists the donor files, k and the groups. Donors are UTKFace
crops (non-commercial research use only): the shared training crops, which were screened to hold none of the
evaluated people (../shared/data/faces/README.md, "Training set").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # = models.registry.WEIGHTS_DIR, without importing torch

NAME = "ksame"
SIZE = 128  # crop side, the same as every generator's
K_MIN = 10  # the guarantee: no average of fewer donors is ever built or served
DEFAULT_K = 12
BANK_PATH = WEIGHTS_DIR / "ksame_bank.npz"
RECORD_PATH = WEIGHTS_DIR / "ksame_bank.json"
LANDMARK_SIDE = 256  # crops are upscaled for CenterFace: landmarks on a 32x32 heatmap are too coarse
LANDMARK_MIN_SCORE = 0.1  # weaker peaks: keep the standard face position instead
THUMB = 16
UTKFACE_TERMS = ("UTKFace (Zhang, Song and Qi, CVPR 2017): non-commercial research use only; image copyright stays "
                 "with the original owners. The averages in this bank are derived from UTKFace crops and carry the "
                 "same terms.")


# ------------------------------------------------------------------------------------------------ geometry
def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity transform (Umeyama) mapping points src [N,2] onto dst [N,2]."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    var = (s ** 2).sum() / len(src)
    scale = float(np.trace(np.diag(sig) @ sign) / var) if var > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.asarray(pts, np.float64) @ m[:, :2].T + m[:, 2]


def yaw_of(landmarks: np.ndarray) -> float:
    """Pose proxy: nose offset from the eye midpoint along the eye axis, in inter-ocular distances (0 = frontal)."""
    le, re, nose = landmarks[0], landmarks[1], landmarks[2]
    axis = re - le
    iod = float(np.linalg.norm(axis))
    if iod < 1e-6:
        return 0.0
    return float(np.dot(nose - (le + re) / 2, axis / iod) / iod)


def face_masks(template: np.ndarray, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(inner, ring) float32 [S,S] masks in the template frame.

    inner: eyebrows to chin, cheek to cheek, 1 inside with a feathered edge: what is replaced.
    ring: the skin band just around it (hard), where the target's colour is measured.
    """
    le, re, _, lm, rm = template
    eye_mid, mouth_mid = (le + re) / 2, (lm + rm) / 2
    iod = float(np.linalg.norm(re - le))
    em = float(np.linalg.norm(mouth_mid - eye_mid))
    top, bottom = eye_mid[1] - 0.62 * em, mouth_mid[1] + 0.55 * em
    centre = (float((eye_mid[0] + mouth_mid[0]) / 2), float((top + bottom) / 2))
    axes = (0.98 * iod, (bottom - top) / 2)

    def ellipse(scale: float) -> np.ndarray:
        canvas = np.zeros((size * 4, size * 4), np.uint8)  # 4x supersampled, then area-averaged: smooth edge
        cv2.ellipse(canvas, (round(centre[0] * 4), round(centre[1] * 4)),
                    (round(axes[0] * scale * 4), round(axes[1] * scale * 4)), 0, 0, 360, 255, -1)
        return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255

    feather = max(1.0, 0.09 * iod)
    inner = cv2.GaussianBlur(ellipse(0.9), (0, 0), feather)
    inner = np.clip(inner * 1.15, 0, 1)  # flat 1 over the face, feathered only at the edge
    ring = ((ellipse(1.2) > 0.5) & (ellipse(0.95) < 0.5)).astype(np.float32)
    return inner, ring


# --------------------------------------------------------------------------------------------- landmarks
class Landmarks:
    """CenterFace (the served detector's network) on face crops -> five landmarks of the face nearest the centre."""

    def __init__(self, model: bytes | str | Path | None = None, threads: int = 1):
        from .serving.onnx_runner import cpu_session

        if model is None:
            from .detection import dynamic_model_bytes

            model = dynamic_model_bytes()
        self.session = cpu_session(model, threads, spin=False)
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, crops: np.ndarray, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """crops [N,S,S,3] uint8 RGB -> (landmarks [N,5,2] float in crop pixels, score [N])."""
        n, side = len(crops), crops.shape[1]
        out = np.zeros((n, 5, 2), np.float64)
        score = np.zeros(n, np.float64)
        k = LANDMARK_SIDE / side
        for start in range(0, n, batch):
            part = crops[start : start + batch]
            blob = np.stack([cv2.resize(c, (LANDMARK_SIDE, LANDMARK_SIDE), interpolation=cv2.INTER_LINEAR)
                             for c in part]).transpose(0, 3, 1, 2).astype(np.float32)
            heat, scale, offset, lms = self.session.run(self.outputs, {self.input: blob})
            for j in range(len(part)):
                out[start + j], score[start + j] = _decode_central(heat[j, 0], scale[j], offset[j], lms[j])
        out /= k
        return out, score


def _decode_central(heat, scale, offset, lms) -> tuple[np.ndarray, float]:
    """Landmarks of the strongest peak, weighted towards the crop centre (neighbours' faces sit at the edges)."""
    h, w = heat.shape
    ys, xs = np.mgrid[0:h, 0:w]
    dist = np.hypot((xs + 0.5) / w - 0.5, (ys + 0.5) / h - 0.5)
    y, x = np.unravel_index(np.argmax(heat * np.exp(-(dist / 0.3) ** 2)), heat.shape)
    s_h, s_w = np.exp(scale[0, y, x]) * 4, np.exp(scale[1, y, x]) * 4
    x1 = (x + offset[1, y, x] + 0.5) * 4 - s_w / 2
    y1 = (y + offset[0, y, x] + 0.5) * 4 - s_h / 2
    pts = np.array([[lms[2 * i + 1, y, x] * s_w + x1, lms[2 * i, y, x] * s_h + y1] for i in range(5)])
    return pts, float(heat[y, x])


# ---------------------------------------------------------------------------------------------- colour
def _lab(rgb_u8: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb_u8.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)


def _rgb(lab: np.ndarray) -> np.ndarray:
    lab = lab.copy()
    lab[..., 0] = np.clip(lab[..., 0], 0, 100)
    rgb = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)


def match_colour(face: np.ndarray, target: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """`face` recoloured so its skin ring has the target's Lab statistics; chroma spread is never increased."""
    sel = ring > 0.5
    if sel.sum() < 20:
        return face
    src, dst = _lab(face), _lab(target)
    out = src.copy()
    for c in range(3):
        mu_s, sd_s = src[..., c][sel].mean(), src[..., c][sel].std() + 1e-3
        mu_d, sd_d = dst[..., c][sel].mean(), dst[..., c][sel].std() + 1e-3
        lo, hi = (0.7, 1.3) if c == 0 else (0.5, 1.0)
        out[..., c] = (src[..., c] - mu_s) * float(np.clip(sd_d / sd_s, lo, hi)) + mu_d
    return _rgb(out)


def skin_tone(face: np.ndarray, ring: np.ndarray) -> float:
    """Lab lightness (0..100) of the skin ring."""
    return float(_lab(face)[..., 0][ring > 0.5].mean())


def thumbnail(face: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """16x16 grey thumbnail of the aligned inner face, zero mean, unit norm (coarse appearance only)."""
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY).astype(np.float32) * inner
    t = cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA).ravel()
    t -= t.mean()
    return (t / max(float(np.linalg.norm(t)), 1e-6)).astype(np.float32)


def sharpen(face: np.ndarray, amount: float = 0.6, sigma: float = 1.2) -> np.ndarray:
    f = face.astype(np.float32)
    return np.clip(f + amount * (f - cv2.GaussianBlur(f, (0, 0), sigma)) + 0.5, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ the bank
class Bank:
    """Donor averages in the template frame, with what a target is matched on."""

    def __init__(self, path: Path | str = BANK_PATH):
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"k-Same bank {path} is missing: build it with `python -m facedeid.ksame build`")
        with np.load(path) as data:
            self.faces = data["faces"]  # [G,S,S,3] uint8 averages
            self.template = data["template"].astype(np.float64)  # [5,2]
            self.yaw = data["yaw"].astype(np.float64)
            self.tone = data["tone"].astype(np.float64)
            self.thumbs = data["thumbs"].astype(np.float32)
            self.k = data["k"].astype(np.int64)
        if len(self.faces) == 0 or int(self.k.min()) < K_MIN:
            raise ValueError(f"k-Same bank {path} has an average of fewer than {K_MIN} donors")
        self.inner, self.ring = face_masks(self.template, self.faces.shape[1])

    def choose(self, yaw: float, tone: float, thumb: np.ndarray) -> int:
        """Nearest average in pose, skin tone and coarse appearance (weights: 0.1 yaw ~ 8 L* ~ 0.3 cosine)."""
        cost = ((self.yaw - yaw) / 0.1) ** 2 + ((self.tone - tone) / 8.0) ** 2 + ((1 - self.thumbs @ thumb) / 0.3) ** 2
        return int(np.argmin(cost))


class KSame:
    """The generator: crops [N,3,S,S] in [-1, 1] -> crops with the inner face replaced by a donor average."""

    def __init__(self, bank: Bank | Path | str = BANK_PATH, landmarks: Landmarks | None = None):
        self.bank = bank if isinstance(bank, Bank) else Bank(bank)
        self.landmarks = landmarks or Landmarks()

    def __call__(self, tensor: np.ndarray) -> np.ndarray:
        from .crops import from_tensor, to_tensor

        tensor = np.asarray(tensor, np.float32)
        if tensor.ndim != 4 or tensor.shape[1:] != (3, SIZE, SIZE):
            raise ValueError(f"INPUT must have shape [N, 3, {SIZE}, {SIZE}], got {list(tensor.shape)}")
        return to_tensor(self.generate(from_tensor(np.nan_to_num(tensor))))

    def generate(self, crops: np.ndarray) -> np.ndarray:
        """[N,S,S,3] uint8 crops -> [N,S,S,3] uint8 crops (same convention as facedeid.crops.extract_crops)."""
        points, scores = self.landmarks(crops)
        return np.stack([self.replace(c, p if s >= LANDMARK_MIN_SCORE else None) for c, p, s
                         in zip(crops, points, scores)]) if len(crops) else crops.copy()

    def replace(self, crop: np.ndarray, points: np.ndarray | None) -> np.ndarray:
        bank, size = self.bank, crop.shape[0]
        to_crop = similarity(bank.template, points) if points is not None else np.array([[1.0, 0, 0], [0, 1.0, 0]])
        to_template = cv2.invertAffineTransform(to_crop)
        aligned = cv2.warpAffine(crop, to_template, (size, size), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
        pose = yaw_of(bank.template if points is None else apply(to_template, points))
        index = bank.choose(pose, skin_tone(aligned, bank.ring), thumbnail(aligned, bank.inner))
        face = match_colour(sharpen(bank.faces[index]), aligned, bank.ring)
        face = cv2.warpAffine(face, to_crop, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpAffine(bank.inner, to_crop, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)[..., None]
        out = crop.astype(np.float32) * (1 - mask) + face.astype(np.float32) * mask
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ building a bank
def utkface_labels(name: str) -> dict | None:
    """age, gender (0 male, 1 female), race (0 White, 1 Black, 2 Asian, 3 Indian, 4 Others) from the file name."""
    parts = name.split("_")
    try:
        return {"age": int(parts[0]), "gender": int(parts[1]), "race": int(parts[2])}
    except (IndexError, ValueError):
        return None


def held_apart(name: str, share: int = 5) -> bool:
    """Crops kept out of every bank (1 in `share`, by a hash of the name): the real reference set of fid_eff."""
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % share == 0


def donor_crops(paths: list[Path], detector) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Each donor photo as a standard crop (facedeid.crops at CenterFace's box) and its landmarks in that crop."""
    from tqdm import tqdm

    from .crops import extract_crops
    from .data.dna import ImageError, read_image

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
    from .detection import CenterFaceDetector

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

    return os.path.relpath(path.absolute(), Path(__file__).resolve().parents[2])


def main(argv: list[str] | None = None) -> int:
    from .testing import SHARED_FACES

    parser = argparse.ArgumentParser(prog="python -m facedeid.ksame", description=__doc__.splitlines()[0])
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


if __name__ == "__main__":
    sys.exit(main())
