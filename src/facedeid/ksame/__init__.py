"""`ksame`: replace a face with the average of k >= 10 aligned faces of other people (k-Same family).

k-Same (Newton, Sweeney & Malin 2005; Gross et al. 2006; k-Same-Net, Meden et al. 2018): every output face is the
average of at least k donor faces, none of whom is the target, so whatever identity the output carries belongs to
at least k people. This is a bound no trained generator gives.

How a crop is replaced (`KSame.generate`, the served `ksame` model runs exactly this):
1. landmarks: CenterFace (the detector already served) runs on the crop itself and gives the five landmarks of the
   face nearest the crop centre (so `deid_ksame_boxes`, where the caller gives only boxes, works the same way);
   a crop where none is found gets the bank's template landmarks at the crop's standard face position. From the
   five points the bank's face rectangle is placed and dlib's 68-point shape predictor (face_recognition_models)
   gives the dense landmarks (facedeid.ksame.warp; a few ms);
2. donor group: the bank average nearest to the target in pose (yaw from the landmarks), skin tone (Lab lightness
   of the skin band just inside the face outline) and coarse appearance (a 16x16 grey thumbnail of the face);
3. geometry: the average (every donor warped piecewise-affinely onto one mean shape of 68 landmarks, so features
   line up and the average stays sharp) is warped triangle by triangle onto the crop: onto the mean shape placed
   by a 5-point similarity (`geometry="mean"`), or onto the target's own 68 landmarks (`"target"`: expression and
   face shape kept), or a blend;
4. colour: Lab mean (and, bounded, spread) of the average's skin band moved to the target's; chroma spread is
   never increased, so the transfer cannot over-saturate; optional `detail`: the target's fine skin texture on
   cheeks, forehead and chin (not on brows, eyes, nose or mouth);
5. light unsharp mask, then the inner-face mask from the landmarks (jaw line to just above the brows, shrunk and
   feathered; `cover="head"`: an ellipse over forehead, hair and ears too): outside it the target's own crop is
   returned. Compose then blends the crop into the frame with its feathered window, as for every generator.

The bank (`weights/ksame_bank.npz`, built by `facedeid train ksame-bank`, facedeid/ksame/build.py) holds only
the averages at 256 px (trimmed means: per pixel the k = 14 donors less the 2 lowest and 2 highest values, so every
pixel averages 10 donors and a feature few donors have, such as glasses, is dropped, not ghosted), never a single
donor's face; its record (`ksame_bank.json`) lists the donor files, k and the groups.
Donors are UTKFace crops (non-commercial research use only): the shared training crops, which were screened to
hold none of the evaluated people (../shared/data/faces/README.md, "Training set").
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from ..paths import WEIGHTS_DIR
from .warp import dense_landmarks, face_hull_mask, frame_points, piecewise_map

NAME = "ksame"
SIZE = 128  # crop side, the same as every generator's
SIZES = (128, 256)  # crop sides the generator takes: 128 (every ensemble's) and 256 (large faces)
BANK_SIDE = 256  # the averages' side: the standard crop's frame at 256 px, detail for faces of 256 px and less
DEFAULT_GEOMETRY = "mean"
COVERS = ("face", "head")
DENSE_MAX_OFFSET = 0.15  # of the face rectangle: dlib's landmarks further than this from the placed mean are refused
SHARPEN = 0.5
DEFAULT_DETAIL = 0.0  # share of the target's fine skin texture laid on the average (0: none)
DETAIL_SIGMA = 1.0  # px at SIZE: the texture is the crop less its Gaussian blur of this sigma
K_MIN = 10  # the guarantee: no average of fewer donors is ever built or served
DEFAULT_K = 14
DEFAULT_TRIM = 2  # trimmed-mean averages: every pixel the mean of DEFAULT_K - 2 * DEFAULT_TRIM donors
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


def skin_mask(shape: np.ndarray, side: int) -> np.ndarray:
    """Cheeks, forehead and chin: the inner face less the brows, eyes, nose and mouth (grown, feathered), where
    `detail` lays the target's fine texture; the features themselves stay the average's."""
    p = np.asarray(shape, np.float64)
    width = float(p[16, 0] - p[0, 0])
    holes = np.zeros((side, side), np.uint8)
    for part, grow in ((slice(17, 22), 0.06), (slice(22, 27), 0.06), (slice(36, 42), 0.07), (slice(42, 48), 0.07),
                       (slice(27, 36), 0.05), (slice(48, 60), 0.06)):
        hull = cv2.convexHull(p[part].astype(np.float32))[:, 0]
        cv2.fillConvexPoly(holes, np.round(hull).astype(np.int32), 255)
        cv2.polylines(holes, [np.round(hull).astype(np.int32)], True, 255, max(1, round(2 * grow * width)))
    holes = cv2.GaussianBlur(holes.astype(np.float32) / 255, (0, 0), max(1.0, 0.03 * width))
    return face_hull_mask(shape, side) * np.clip(1 - 1.5 * holes, 0, 1)


def head_mask(shape: np.ndarray, side: int) -> np.ndarray:
    """`--cover head`: the face, forehead, hairline, hair and ears (an ellipse from the chin to well above the brows,
    1.4x the jaw's width), feathered; the replacement then carries no hair or ear of the target."""
    p = np.asarray(shape, np.float64)
    width = float(p[16, 0] - p[0, 0])
    chin, brow = float(p[8, 1]), float(p[17:27, 1].min())
    top = brow - 0.75 * (chin - brow)
    centre = (float(p[27:31, 0].mean()), (top + chin) / 2)
    axes = (0.7 * width, (chin - top) / 2)
    canvas = np.zeros((side * 4, side * 4), np.uint8)
    cv2.ellipse(canvas, (round(centre[0] * 4), round(centre[1] * 4)), (round(axes[0] * 4), round(axes[1] * 4)),
                0, 0, 360, 255, -1)
    mask = cv2.resize(canvas, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.06 * width))
    return np.clip((mask - 0.5) * 2.2 + 0.5, 0, 1)


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
    """Donor averages in the mean-shape frame (BANK_SIDE px), with what a target is matched on and placed by."""

    def __init__(self, path: Path | str = BANK_PATH):
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"k-Same bank {path} is missing: build it with `facedeid train ksame-bank`")
        with np.load(path) as data:
            if "shape" not in data:
                raise ValueError(f"k-Same bank {path} predates dense alignment: rebuild it with "
                                 "`facedeid train ksame-bank`")
            self.faces = data["faces"]  # [G,R,R,3] uint8 averages, every donor warped onto `shape`
            self.template = data["template"].astype(np.float64)  # [5,2] CenterFace's points, mean over donors
            self.shape = data["shape"].astype(np.float64)  # [68,2] dlib's points, mean over donors
            self.rect = data["rect"].astype(np.float64)  # dlib's face rectangle (x1, y1, x2, y2) for the predictor
            self.triangles = data["triangles"].astype(np.int32)  # Delaunay of shape + warp.frame_points
            self.yaw = data["yaw"].astype(np.float64)
            self.tone = data["tone"].astype(np.float64)
            self.thumbs = data["thumbs"].astype(np.float32)
            self.k = data["k"].astype(np.int64)
            self.trim = int(data["trim"])  # per pixel, the trim lowest and highest donor values were dropped
        if len(self.faces) == 0 or int(self.k.min()) - 2 * self.trim < K_MIN:
            raise ValueError(f"k-Same bank {path} has an average of fewer than {K_MIN} donors")
        self.side = int(self.faces.shape[1])
        self.points = np.concatenate([self.shape, frame_points(self.side)])
        self.inner = face_hull_mask(self.shape, self.side)
        self.ring = ring_mask(self.shape, self.side)
        # half resolution for crops where the face is small: remap reads a level near the output's scale
        self.half = np.stack([cv2.resize(f, (self.side // 2, self.side // 2), interpolation=cv2.INTER_AREA)
                              for f in self.faces])

    def choose(self, yaw: float, tone: float, thumb: np.ndarray) -> int:
        """Nearest average in pose, skin tone and coarse appearance (weights: 0.1 yaw ~ 8 L* ~ 0.3 cosine)."""
        cost = ((self.yaw - yaw) / 0.1) ** 2 + ((self.tone - tone) / 8.0) ** 2 + ((1 - self.thumbs @ thumb) / 0.3) ** 2
        return int(np.argmin(cost))


def ring_mask(shape: np.ndarray, side: int) -> np.ndarray:
    """The skin band (hard 0/1) inside the jaw line and across the forehead, straddling the replaced face's edge:
    where the target's colour is measured (inside the face outline, so no background or hair enters it)."""
    outer = face_hull_mask(shape, side, brow_lift=0.3, shrink=1.0, feather=0.0) > 0.5
    inner = face_hull_mask(shape, side, brow_lift=0.0, shrink=0.82, feather=0.0) > 0.5
    return (outer & ~inner).astype(np.float32)


def dense_rect(to_crop: np.ndarray, rect: np.ndarray) -> np.ndarray:
    """The bank's face rectangle placed on a crop by the bank -> crop similarity: a square of the same area."""
    corners = apply(to_crop, [[rect[0], rect[1]], [rect[2], rect[1]], [rect[2], rect[3]], [rect[0], rect[3]]])
    centre = corners.mean(0)
    half = float(np.sqrt(abs(np.linalg.det(to_crop[:, :2])))) * (rect[2] - rect[0]) / 2
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])


class KSame:
    """The generator: crops [N,3,S,S] in [-1, 1] -> crops with the inner face replaced by a donor average.

    `geometry`: where the average's features are pasted. "mean": the bank's mean shape placed by the 5-point
    similarity (the target's face shape and expression are not carried over); "target": the target's own 68
    landmarks (expression and pose kept, and with them its face shape); a number in between blends the two.
    """

    def __init__(self, bank: Bank | Path | str = BANK_PATH, landmarks: Landmarks | None = None,
                 geometry: str | float = DEFAULT_GEOMETRY, cover: str = "face", detail: float = DEFAULT_DETAIL):
        self.bank = bank if isinstance(bank, Bank) else Bank(bank)
        self.landmarks = landmarks or Landmarks()
        self.alpha = {"mean": 0.0, "target": 1.0}.get(geometry, geometry) if isinstance(geometry, str) else geometry
        self.alpha = float(self.alpha)
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"geometry must be 'mean', 'target' or a number in [0, 1], got {geometry!r}")
        if cover not in COVERS:
            raise ValueError(f"cover must be one of {', '.join(COVERS)}, got {cover!r}")
        self.cover = cover
        self.detail = float(detail)
        self.skin_mask = skin_mask(self.bank.shape, self.bank.side)
        self.cover_mask = self.bank.inner if cover == "face" else head_mask(self.bank.shape, self.bank.side)

    def __call__(self, tensor: np.ndarray, donors: np.ndarray | None = None) -> np.ndarray:
        return self.tracked(tensor, donors)[0]

    def tracked(self, tensor: np.ndarray, donors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Served form: (crops [N,3,S,S] in [-1, 1] -> replaced crops, [N] donor index each got). `donors` [N]: a
        fixed average per crop (a video track's, so its face never changes), -1 where the crop chooses its own."""
        from ..crops import from_tensor, to_tensor

        tensor = np.asarray(tensor, np.float32)
        if tensor.ndim != 4 or tensor.shape[1] != 3 or tensor.shape[2:] not in [(s, s) for s in SIZES]:
            raise ValueError(f"INPUT must have shape [N, 3, S, S] with S in {SIZES}, got {list(tensor.shape)}")
        out, used = self.generate_with_donors(from_tensor(np.nan_to_num(tensor)), donors)
        return to_tensor(out), used

    def generate(self, crops: np.ndarray, donors: np.ndarray | None = None) -> np.ndarray:
        """[N,S,S,3] uint8 crops -> [N,S,S,3] uint8 crops (same convention as facedeid.crops.extract_crops)."""
        return self.generate_with_donors(crops, donors)[0]

    def generate_with_donors(self, crops: np.ndarray,
                             donors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`generate`, and the [N] bank index each crop got (`donors` >= 0 are kept, -1 chooses)."""
        donors = self.check_donors(donors, len(crops))
        if not len(crops):
            return crops.copy(), donors
        points, scores = self.landmarks(crops)
        out, used = [], donors.copy()
        for i, (c, p, s) in enumerate(zip(crops, points, scores)):
            face, used[i] = self.replace_with_donor(c, p if s >= LANDMARK_MIN_SCORE else None, int(donors[i]))
            out.append(face)
        return np.stack(out), used

    def check_donors(self, donors: np.ndarray | None, n: int) -> np.ndarray:
        """[N] int64 donor indices, -1 = choose; anything else outside the bank is refused (ValueError)."""
        if donors is None:
            return np.full(n, -1, np.int64)
        donors = np.asarray(donors).reshape(-1)
        if len(donors) != n or not np.issubdtype(donors.dtype, np.integer):
            raise ValueError(f"DONOR must hold one integer per crop ({n}), got {donors.dtype} {list(donors.shape)}")
        if ((donors < -1) | (donors >= len(self.bank.faces))).any():
            raise ValueError(f"DONOR must be -1 (choose) or a bank index in 0..{len(self.bank.faces) - 1}, got "
                             f"{sorted(set(donors.tolist()))}")
        return donors.astype(np.int64)

    def donors(self, crops: np.ndarray) -> np.ndarray:
        """[N] index of the bank average each crop would get (what `generate` chooses)."""
        points, scores = self.landmarks(crops)
        return np.array([self._choose(c, p if s >= LANDMARK_MIN_SCORE else None)[2] for c, p, s
                         in zip(crops, points, scores)], np.int64)

    def masks(self, crops: np.ndarray) -> np.ndarray:
        """[N,S,S] float: where `generate` replaces each crop (1) and where the crop stays itself (0)."""
        points, scores = self.landmarks(crops)
        out = []
        for c, p, s in zip(crops, points, scores):
            to_crop, _, _ = self._choose(c, p if s >= LANDMARK_MIN_SCORE else None)
            map_x, map_y = self._map(c, p if s >= LANDMARK_MIN_SCORE else None, to_crop)
            out.append(cv2.remap(self.cover_mask, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT))
        return np.stack(out) if out else np.zeros(crops.shape[:3], np.float32)

    def _choose(self, crop: np.ndarray, points: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, int]:
        """(bank -> crop similarity, the crop aligned to the bank frame, the chosen average's index)."""
        bank, size = self.bank, crop.shape[0]
        to_crop = (similarity(bank.template, points) if points is not None
                   else np.array([[size / bank.side, 0, 0], [0, size / bank.side, 0]]))
        to_template = cv2.invertAffineTransform(to_crop)
        aligned = cv2.warpAffine(crop, to_template, (bank.side, bank.side), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
        pose = yaw_of(bank.template if points is None else apply(to_template, points))
        return to_crop, aligned, bank.choose(pose, skin_tone(aligned, bank.ring), thumbnail(aligned, bank.inner))

    def target_shape(self, crop: np.ndarray, points: np.ndarray | None, to_crop: np.ndarray) -> np.ndarray:
        """Where the average's 68 landmarks go on the crop (see `geometry`)."""
        placed = apply(to_crop, self.bank.shape)
        if points is None or self.alpha == 0:
            return placed
        found = dense_landmarks(crop, dense_rect(to_crop, self.bank.rect))
        scale = float(np.sqrt(abs(np.linalg.det(to_crop[:, :2])))) * (self.bank.rect[2] - self.bank.rect[0])
        if np.median(np.linalg.norm(found - placed, axis=1)) > DENSE_MAX_OFFSET * scale:
            return placed  # dlib and CenterFace disagree about where the face is: trust neither's details
        return placed + self.alpha * (found - placed)

    def _map(self, crop: np.ndarray, points: np.ndarray | None, to_crop: np.ndarray):
        bank, size = self.bank, crop.shape[0]
        dst = np.concatenate([self.target_shape(crop, points, to_crop), apply(to_crop, frame_points(bank.side))])
        return piecewise_map(bank.points, dst, bank.triangles, (size, size), cv2.invertAffineTransform(to_crop))

    def replace(self, crop: np.ndarray, points: np.ndarray | None, donor: int = -1) -> np.ndarray:
        return self.replace_with_donor(crop, points, donor)[0]

    def replace_with_donor(self, crop: np.ndarray, points: np.ndarray | None,
                           donor: int = -1) -> tuple[np.ndarray, int]:
        """(the crop with its inner face replaced, the bank index used: `donor`, or the nearest if -1)."""
        bank = self.bank
        to_crop, aligned, index = self._choose(crop, points)
        index = index if donor < 0 else donor
        map_x, map_y = self._map(crop, points, to_crop)
        face = match_colour(bank.faces[index], aligned, bank.ring)
        mask = cv2.remap(self.cover_mask, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
        skin = (cv2.remap(self.skin_mask, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
                if self.detail > 0 else None)
        if float(np.sqrt(abs(np.linalg.det(to_crop[:, :2])))) <= 0.6:  # half the average's resolution or less:
            face = cv2.resize(face, (bank.side // 2, bank.side // 2), interpolation=cv2.INTER_AREA)  # read a level
            map_x, map_y = map_x * 0.5, map_y * 0.5  # near the output's scale
        face = cv2.remap(sharpen(face, SHARPEN), map_x, map_y, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        target = crop.astype(np.float32)
        if skin is not None:  # the target's own fine skin texture (pores, stubble) on cheeks, forehead and chin
            texture = target - cv2.GaussianBlur(target, (0, 0), DETAIL_SIGMA * crop.shape[0] / SIZE)
            face = face + self.detail * skin * texture
        out = target * (1 - mask) + face * mask
        return np.clip(out + 0.5, 0, 255).astype(np.uint8), index


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
