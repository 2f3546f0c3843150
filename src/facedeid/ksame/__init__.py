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

The bank (`weights/ksame_bank.npz`, built by `python -m facedeid.ksame build`, facedeid/ksame/build.py) holds only
the averages, never a single donor's face; its record (`ksame_bank.json`) lists the donor files, k and the groups.
Donors are UTKFace crops (non-commercial research use only): the shared training crops, which were screened to
hold none of the evaluated people (../shared/data/faces/README.md, "Training set").
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from ..paths import WEIGHTS_DIR

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
        from ..onnx_runtime import cpu_session

        if model is None:
            from ..detection import dynamic_model_bytes

            model = dynamic_model_bytes()
        session = cpu_session(model, threads, spin=False)
        inputs, outputs = session.get_inputs()[0].name, [o.name for o in session.get_outputs()]
        # CenterFace's four maps for a blob; facedeid.runtime_torch swaps in its PyTorch detector here
        self.maps = lambda blob: session.run(outputs, {inputs: blob})

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
            heat, scale, offset, lms = self.maps(blob)
            for j in range(len(part)):
                out[start + j], score[start + j] = _decode_central(heat[j], scale[j], offset[j], lms[j])
        out /= k
        return out, score


def _decode_central(heat, scale, offset, lms) -> tuple[np.ndarray, float]:
    """Landmarks of the strongest peak, weighted towards the crop centre (neighbours' faces sit at the edges)."""
    from ..detection import decode_cells

    h, w = heat.shape[1:]
    ys, xs = np.mgrid[0:h, 0:w]
    dist = np.hypot((xs + 0.5) / w - 0.5, (ys + 0.5) / h - 0.5)
    y, x = np.unravel_index(np.argmax(heat[0] * np.exp(-(dist / 0.3) ** 2)), (h, w))
    _, score, marks = decode_cells(heat, scale, offset, lms, np.array([y]), np.array([x]))
    return marks[0].reshape(5, 2).astype(np.float64), float(score[0])


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
        from ..crops import from_tensor, to_tensor

        tensor = np.asarray(tensor, np.float32)
        if tensor.ndim != 4 or tensor.shape[1:] != (3, SIZE, SIZE):
            raise ValueError(f"INPUT must have shape [N, 3, {SIZE}, {SIZE}], got {list(tensor.shape)}")
        return to_tensor(self.generate(from_tensor(np.nan_to_num(tensor))))

    def generate(self, crops: np.ndarray) -> np.ndarray:
        """[N,S,S,3] uint8 crops -> [N,S,S,3] uint8 crops (same convention as facedeid.crops.extract_crops)."""
        points, scores = self.landmarks(crops)
        return np.stack([self.replace(c, p if s >= LANDMARK_MIN_SCORE else None) for c, p, s
                         in zip(crops, points, scores)]) if len(crops) else crops.copy()

    def donors(self, crops: np.ndarray) -> np.ndarray:
        """[N] index of the bank average each crop would get (what `generate` chooses)."""
        points, scores = self.landmarks(crops)
        return np.array([self._choose(c, p if s >= LANDMARK_MIN_SCORE else None)[2] for c, p, s
                         in zip(crops, points, scores)], np.int64)

    def _choose(self, crop: np.ndarray, points: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, int]:
        """(template -> crop transform, the crop aligned to the template, the chosen average's index)."""
        bank, size = self.bank, crop.shape[0]
        to_crop = similarity(bank.template, points) if points is not None else np.array([[1.0, 0, 0], [0, 1.0, 0]])
        to_template = cv2.invertAffineTransform(to_crop)
        aligned = cv2.warpAffine(crop, to_template, (size, size), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
        pose = yaw_of(bank.template if points is None else apply(to_template, points))
        return to_crop, aligned, bank.choose(pose, skin_tone(aligned, bank.ring), thumbnail(aligned, bank.inner))

    def replace(self, crop: np.ndarray, points: np.ndarray | None) -> np.ndarray:
        bank, size = self.bank, crop.shape[0]
        to_crop, aligned, index = self._choose(crop, points)
        face = match_colour(sharpen(bank.faces[index]), aligned, bank.ring)
        face = cv2.warpAffine(face, to_crop, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpAffine(bank.inner, to_crop, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)[..., None]
        out = crop.astype(np.float32) * (1 - mask) + face.astype(np.float32) * mask
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------- donor labels (used by the builder)
def utkface_labels(name: str) -> dict | None:
    """age, gender (0 male, 1 female), race (0 White, 1 Black, 2 Asian, 3 Indian, 4 Others) from the file name."""
    parts = name.split("_")
    try:
        return {"age": int(parts[0]), "gender": int(parts[1]), "race": int(parts[2])}
    except (IndexError, ValueError):
        return None


def held_apart(name: str, share: int = 5) -> bool:
    """Crops kept out of every bank (1 in `share`, by a hash of the name): the real reference set of fid_eff."""
    return int(hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest(), 16) % share == 0
