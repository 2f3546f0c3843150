"""`KSame`, the generator: a crop's inner face replaced by the nearest donor average (see facedeid.ksame)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..settings import COVERS
from .bank import BANK_PATH, Bank
from .colour import match_colour, sharpen, skin_tone, thumbnail
from .geometry import (
    apply,
    average_skin,
    brows_and_eyes,
    dense_rect,
    extend,
    head_mask,
    own_skin,
    similarity,
    skin_mask,
    yaw_of,
)
from .landmarks import LANDMARK_MIN_SCORE, Landmarks
from .warp import dense_landmarks, face_hull_mask, frame_points, piecewise_map

SIZE = 128  # KSame's default crop side in process (the served ensembles use models.registry.KSAME_CROP_SIZE)
SIZES = (128, 256)  # crop sides the generator takes: 128 (every ensemble's) and 256 (large faces)
DEFAULT_GEOMETRY = "mean"
DENSE_MAX_OFFSET = 0.15  # of the face rectangle: dlib's landmarks further than this from the placed mean are refused
SHARPEN = 0.5
MASKS = ("target", "mean")
DEFAULT_DETAIL = 0.0  # share of the target's fine skin texture laid on the average (0: none)
DETAIL_SIGMA = 1.0  # px at SIZE: the texture is the crop less its Gaussian blur of this sigma
# Share of the bank's donor-detail mosaic laid on the average, by cover (0: the average alone). Chosen on the selection
# people (docs/crisp-faces.md, "Crisp detail"): with the target's hair and outline kept (face), a crisp inner face let
# dlib identify 3 of 27 faces (0 without); with the head replaced it did not, and more faces were found again.
DONOR_DETAIL = {"face": 0.0, "head": 1.0}
DEFAULT_TEXTURE = 0.0  # synthetic skin grain, in units of the target's own fine-texture strength (0: none)
FILLS = ("skin", "own", "none")
NO_FACES = ("blur", "paste")
PLACES = ("five", "dense")
# Placed-face scale (bank -> crop, 1 = the standard face position) under which the crop's five points describe no
# face of the detector's box: a back of a head, an ear. Chosen on the selection people (docs/crisp-faces.md).
MIN_FACE_SCALE = 0.55
BLUR_FACTOR = 2  # deface's: box filter of half the box's side (facedeid.baselines)


class KSame:
    """The generator: crops [N,3,S,S] in [-1, 1] -> crops with the inner face replaced by a donor average.

    `geometry`: where the average's features are pasted. "mean": the bank's mean shape placed by the 5-point
    similarity (the target's face shape and expression are not carried over); "target": the target's own 68
    landmarks (expression and pose kept, and with them its face shape); a number in between blends the two.
    `mask`: "target" (default) pastes through the union of the placed average's mask and one drawn on the
    target's own 68 landmarks, so the target's brows, eyes and glasses are covered even where they sit away from
    the mean shape (close-ups, tilted heads); "mean" uses the placed average's mask only.
    `donor_detail`: the average with this share of its donors' fine detail (the bank's mosaic: each face region's
    high-pass from a different one of its donors, build.detail_mosaic), so large faces are not soft; 0: none;
    None: DONOR_DETAIL of the cover.
    `texture`: synthetic skin grain (noise seeded by the average's index, so a track keeps its grain) on cheeks,
    forehead and chin, as strong as `texture` times the target's own fine texture there: an average has none, and
    only the target's strength (one number), not its pattern, is carried over.
    `fill`: "skin" (default) pastes the average with its skin extended outward wherever the grown mask reaches past
    the average's own face (close-ups, where the target's face is larger than the placed mean), so neither the
    average's hair and background nor the target's pixels show there; the skin is the same region for every
    average (geometry.average_skin), so a fringe or temple hair of its donors inside it stays (dark forehead
    corners). "own" extends from the average's own skin (geometry.own_skin: that hair extended over too); measured,
    not the default: more faces identified on the context crop (docs/crisp-faces.md, "Forehead bands"). "none"
    pastes the average as it is.
    `relight`: the pasted face's lighting made to meet the target's along the paste's edge (boundary_offset); not
    the default, for the same reason as "own".
    `no_face`: "blur" (default) blurs the crop as deface does where its five points place a face far smaller than
    the detector's box (MIN_FACE_SCALE: the box holds hair or an ear, no frontal face to replace); "paste" pastes
    the average there too.
    `place`: "dense" (default) places the mean shape by the similarity that best maps it onto the target's own 68
    landmarks where those are trusted and the five points were found on the crop (given LANDMARKS, a track's
    smoothed points, place it themselves) (position, size and roll of the target's whole face; its shape is not
    carried over), so a close-up whose five points undersize the face gets an average as large as the face;
    "five" by the 5-point similarity alone.
    `own_shrink`: the mask drawn on the target's landmarks shrunk towards its centre by this (0.94, default: as the
    mean's mask, the target's own outline kept and not redrawn in skin; 1: out to its jaw line); its brows and
    eyes are covered whole either way, with a margin that may reach the temples (geometry.brows_and_eyes).
    """

    def __init__(self, bank: Bank | Path | str = BANK_PATH, landmarks: Landmarks | None = None,
                 geometry: str | float = DEFAULT_GEOMETRY, cover: str = "face", detail: float = DEFAULT_DETAIL,
                 mask: str = "target", texture: float = DEFAULT_TEXTURE, fill: str = "skin",
                 no_face: str = "blur", place: str = "dense", own_shrink: float = 0.94,
                 donor_detail: float | None = None, relight: bool = False):
        self.bank = bank if isinstance(bank, Bank) else Bank(bank)
        self.landmarks = landmarks or Landmarks()
        self.alpha = {"mean": 0.0, "target": 1.0}.get(geometry, geometry) if isinstance(geometry, str) else geometry
        self.alpha = float(self.alpha)
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"geometry must be 'mean', 'target' or a number in [0, 1], got {geometry!r}")
        if cover not in COVERS:
            raise ValueError(f"cover must be one of {', '.join(COVERS)}, got {cover!r}")
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {', '.join(MASKS)}, got {mask!r}")
        if fill not in FILLS:
            raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
        if no_face not in NO_FACES:
            raise ValueError(f"no_face must be one of {', '.join(NO_FACES)}, got {no_face!r}")
        if place not in PLACES:
            raise ValueError(f"place must be one of {', '.join(PLACES)}, got {place!r}")
        self.cover, self.mask, self.fill, self.no_face, self.place = cover, mask, fill, no_face, place
        self.own_shrink, self.relight = float(own_shrink), bool(relight)
        self.donor_detail = float(DONOR_DETAIL[cover] if donor_detail is None else donor_detail)
        if self.donor_detail < 0:
            raise ValueError(f"donor_detail must be >= 0, got {donor_detail!r}")
        if self.donor_detail > 0 and self.bank.detail is None:
            raise ValueError("donor_detail > 0 needs a bank with its donors' detail mosaic: rebuild it with "
                             "`facedeid train ksame-bank`")
        self._pasted: dict[int, np.ndarray] = {}
        self.detail, self.texture = float(detail), float(texture)
        self.skin_mask = skin_mask(self.bank.shape, self.bank.side)
        self.cover_mask = self.bank.inner if cover == "face" else head_mask(self.bank.shape, self.bank.side)
        self.average_skin = average_skin(self.bank.shape, self.bank.side)

    def __call__(self, tensor: np.ndarray, donors: np.ndarray | None = None,
                 landmarks: np.ndarray | None = None) -> np.ndarray:
        return self.tracked(tensor, donors, landmarks)[0]

    def tracked(self, tensor: np.ndarray, donors: np.ndarray | None = None,
                landmarks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Served form: (crops [N,3,S,S] in [-1, 1] -> replaced crops, [N] donor index each got). `donors` [N]: a
        fixed average per crop (a video track's, so its face never changes), -1 where the crop chooses its own.
        `landmarks` [N,10]: five points per crop in crop pixels (a video track's smoothed ones, so the pasted face
        does not follow the landmark network's jitter); rows of NaN, or None, find them on the crop."""
        from ..crops import from_tensor, to_tensor

        tensor = np.asarray(tensor, np.float32)
        if tensor.ndim != 4 or tensor.shape[1] != 3 or tensor.shape[2:] not in [(s, s) for s in SIZES]:
            raise ValueError(f"INPUT must have shape [N, 3, S, S] with S in {SIZES}, got {list(tensor.shape)}")
        out, used = self.generate_with_donors(from_tensor(np.nan_to_num(tensor)), donors, landmarks)
        return to_tensor(out), used

    def generate(self, crops: np.ndarray, donors: np.ndarray | None = None,
                 landmarks: np.ndarray | None = None) -> np.ndarray:
        """[N,S,S,3] uint8 crops -> [N,S,S,3] uint8 crops (same convention as facedeid.crops.extract_crops)."""
        return self.generate_with_donors(crops, donors, landmarks)[0]

    def generate_with_donors(self, crops: np.ndarray, donors: np.ndarray | None = None,
                             landmarks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`generate`, and the [N] bank index each crop got (`donors` >= 0 are kept, -1 chooses)."""
        donors = self.check_donors(donors, len(crops))
        if not len(crops):
            return crops.copy(), donors
        points = self.points(crops, landmarks)
        given = check_landmarks(landmarks, len(crops), crops.shape[1])
        out, used = [], donors.copy()
        for i, (c, p) in enumerate(zip(crops, points)):
            # a track's smoothed points place its face (the 68 found per frame would bring their jitter back)
            own = given is None or not np.isfinite(given[i]).all()
            face, used[i] = self.replace_with_donor(c, p, int(donors[i]), dense=own)
            out.append(face)
        return np.stack(out), used

    def points(self, crops: np.ndarray, landmarks: np.ndarray | None = None) -> list[np.ndarray | None]:
        """The five landmarks [5,2] each crop is aligned by: the given ones, else CenterFace's on the crop (None
        where it finds no face: the bank's standard face position)."""
        given = check_landmarks(landmarks, len(crops), crops.shape[1])
        out: list[np.ndarray | None] = [None] * len(crops)
        find = [i for i in range(len(crops)) if given is None or not np.isfinite(given[i]).all()]
        if find:
            found, scores = self.landmarks(crops[find])
            for i, p, s in zip(find, found, scores):
                out[i] = p if s >= LANDMARK_MIN_SCORE else None
        for i in set(range(len(crops))) - set(find):
            out[i] = given[i].astype(np.float64)
        return out

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
        return np.array([self._choose(c, p)[2] for c, p in zip(crops, self.points(crops))], np.int64)

    def masks(self, crops: np.ndarray) -> np.ndarray:
        """[N,S,S] float: where `generate` replaces each crop (1) and where the crop stays itself (0)."""
        out = []
        for c, p in zip(crops, self.points(crops)):
            to_crop, _, _ = self._choose(c, p)
            if self.faceless(to_crop, p, c.shape[0]):
                out.append(np.ones(c.shape[:2], np.float32))
                continue
            to_crop, found = self._place(c, p, to_crop)
            map_x, map_y = self._map(c, to_crop, found)
            out.append(self._paste_mask(map_x, map_y, found, c.shape[0]))
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

    def _place(self, crop: np.ndarray, points: np.ndarray | None, to_crop: np.ndarray,
               dense: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """(bank -> crop similarity the mean shape is placed by, the target's trusted 68 landmarks or None)."""
        found = self.found_shape(crop, points, to_crop)
        if dense and self.place == "dense" and found is not None:
            return similarity(self.bank.shape, found), found
        return to_crop, found

    def faceless(self, to_crop: np.ndarray, points: np.ndarray | None, side: int) -> bool:
        """True where the crop is blurred (`no_face="blur"`): its five points place a face far smaller than the
        detector's box, whose crop would otherwise get a small frontal face pasted on hair."""
        scale = float(np.sqrt(abs(np.linalg.det(to_crop[:, :2])))) * self.bank.side / side
        return self.no_face == "blur" and points is not None and scale < MIN_FACE_SCALE

    def face_of(self, index: int) -> np.ndarray:
        """The average `index` as pasted: with `fill` its skin extended over its hair and background, with
        `donor_detail` its donors' fine detail laid on."""
        if index not in self._pasted:
            face = self.bank.faces[index]
            if self.fill != "none" and self.cover != "head":
                face = extend(face, own_skin(face, self.bank.shape, self.bank.side) if self.fill == "own"
                              else self.average_skin)
            if self.donor_detail > 0:
                detail = self.donor_detail * self.bank.detail[index].astype(np.float32)[..., None]
                face = np.clip(face.astype(np.float32) + detail + 0.5, 0, 255).astype(np.uint8)
            self._pasted[index] = face
        return self._pasted[index]

    def found_shape(self, crop: np.ndarray, points: np.ndarray | None, to_crop: np.ndarray) -> np.ndarray | None:
        """The target's own 68 landmarks on the crop, or None where they are not needed (mean geometry and mean
        mask), not sought (no five points) or not trusted (dlib and CenterFace disagree about where the face is)."""
        if points is None or (self.alpha == 0 and self.mask == "mean"):
            return None
        placed = apply(to_crop, self.bank.shape)
        found = dense_landmarks(crop, dense_rect(to_crop, self.bank.rect))
        scale = float(np.sqrt(abs(np.linalg.det(to_crop[:, :2])))) * (self.bank.rect[2] - self.bank.rect[0])
        return None if np.median(np.linalg.norm(found - placed, axis=1)) > DENSE_MAX_OFFSET * scale else found

    def target_shape(self, crop: np.ndarray, points: np.ndarray | None, to_crop: np.ndarray) -> np.ndarray:
        """Where the average's 68 landmarks go on the crop (see `geometry`)."""
        return self._shape(to_crop, self.found_shape(crop, points, to_crop) if self.alpha > 0 else None)

    def _shape(self, to_crop: np.ndarray, found: np.ndarray | None) -> np.ndarray:
        placed = apply(to_crop, self.bank.shape)
        return placed if found is None else placed + self.alpha * (found - placed)

    def _map(self, crop: np.ndarray, to_crop: np.ndarray, found: np.ndarray | None):
        bank, size = self.bank, crop.shape[0]
        dst = np.concatenate([self._shape(to_crop, found), apply(to_crop, frame_points(bank.side))])
        return piecewise_map(bank.points, dst, bank.triangles, (size, size), cv2.invertAffineTransform(to_crop))

    def _paste_mask(self, map_x: np.ndarray, map_y: np.ndarray, found: np.ndarray | None, side: int) -> np.ndarray:
        """[S,S] float: the cover mask carried by the warp, grown by the same mask drawn on the target's own
        landmarks (`mask="target"`, not shrunk: the ends of its brows and frames of its glasses are covered too) so
        none of the target's features shows beside the pasted ones."""
        out = cv2.remap(self.cover_mask, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        if found is None or self.mask == "mean":
            return out
        if self.cover == "head":
            return np.maximum(out, head_mask(found, side))
        own = np.maximum(face_hull_mask(found, side, shrink=self.own_shrink), brows_and_eyes(found, side))
        return np.maximum(out, own)

    def replace(self, crop: np.ndarray, points: np.ndarray | None, donor: int = -1) -> np.ndarray:
        return self.replace_with_donor(crop, points, donor)[0]

    def replace_with_donor(self, crop: np.ndarray, points: np.ndarray | None, donor: int = -1,
                           dense: bool = True) -> tuple[np.ndarray, int]:
        """(the crop with its inner face replaced, the bank index used: `donor`, or the nearest if -1). `dense`:
        False keeps the placement by `points` (a caller's smoothed landmarks) whatever `place` says."""
        bank = self.bank
        to_crop, aligned, index = self._choose(crop, points)
        index = index if donor < 0 else donor
        if self.faceless(to_crop, points, crop.shape[0]):
            return blur_crop(crop), index
        to_crop, found = self._place(crop, points, to_crop, dense)
        map_x, map_y = self._map(crop, to_crop, found)
        face = match_colour(self.face_of(index), aligned, bank.ring)
        mask = self._paste_mask(map_x, map_y, found, crop.shape[0])[..., None]
        skin = (cv2.remap(self.skin_mask, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
                if self.detail > 0 or self.texture > 0 else None)
        if float(np.sqrt(abs(np.linalg.det(to_crop[:, :2])))) <= 0.6:  # half the average's resolution or less:
            face = cv2.resize(face, (bank.side // 2, bank.side // 2), interpolation=cv2.INTER_AREA)  # read a level
            map_x, map_y = map_x * 0.5, map_y * 0.5  # near the output's scale
        face = cv2.remap(sharpen(face, SHARPEN), map_x, map_y, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        target = crop.astype(np.float32)
        if skin is not None:  # the target's own fine skin texture (pores, stubble) on cheeks, forehead and chin
            texture = target - cv2.GaussianBlur(target, (0, 0), DETAIL_SIGMA * crop.shape[0] / SIZE)
            face = face + self.detail * skin * texture
            if self.texture > 0:
                face = face + self.texture * skin * grain(texture, skin[..., 0], index, crop.shape[0])
        if self.relight:
            face = face + boundary_offset(target, face, mask[..., 0])
        out = target * (1 - mask) + face * mask
        return np.clip(out + 0.5, 0, 255).astype(np.uint8), index


RELIGHT_MAX = 40.0  # grey levels: a boundary pixel further than this from the pasted face is hair or shadow, not skin


def boundary_offset(target: np.ndarray, face: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[S,S,3] float: the smooth correction that makes the pasted face's low frequencies meet the target's along the
    paste's feathered edge (where the two agree within RELIGHT_MAX), carried inward (push-pull) and blurred: the
    lighting across the target's forehead and cheeks, not its features."""
    side = target.shape[0]
    sigma = 0.03 * side
    diff = cv2.GaussianBlur(target, (0, 0), sigma) - cv2.GaussianBlur(face, (0, 0), sigma)
    edge = (mask > 0.35) & (mask < 0.85) & (np.abs(diff).max(axis=2) < RELIGHT_MAX)
    if edge.sum() < 20:
        return np.zeros_like(face)
    offset = extend(diff.astype(np.float32), edge.astype(np.float32))
    return cv2.GaussianBlur(offset, (0, 0), 0.06 * side)


def blur_crop(crop: np.ndarray) -> np.ndarray:
    """The crop blurred as deface blurs a box (a box filter of half the box's side; the box is the crop's centre,
    1 / crops.EXPAND of its side), inside a disc feathered to the crop's edge (compose feathers the window too)."""
    from ..crops import EXPAND

    side = crop.shape[0]
    k = max(1, round(side / EXPAND / BLUR_FACTOR))
    blurred = cv2.blur(crop, (k, k), borderType=cv2.BORDER_REPLICATE).astype(np.float32)
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    r = np.hypot(xs - (side - 1) / 2, ys - (side - 1) / 2) / (side / 2)
    disc = np.clip((1.0 - r) / 0.15, 0, 1)[..., None]  # 1 inside 0.85 of the half side, 0 at the edge
    out = crop.astype(np.float32) * (1 - disc) + blurred * disc
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def grain(texture: np.ndarray, skin: np.ndarray, seed: int, side: int) -> np.ndarray:
    """[S,S,1] grey noise with the fine scale and strength of `texture` (the target's high-pass) on `skin`, its
    pattern drawn from `seed` alone (nothing of the target's own pattern)."""
    noise = np.random.default_rng(seed).standard_normal((side, side)).astype(np.float32)
    noise = noise - cv2.GaussianBlur(noise, (0, 0), DETAIL_SIGMA * side / SIZE)
    noise = cv2.GaussianBlur(noise, (0, 0), 0.5 * side / SIZE)
    sel = skin > 0.5
    if sel.sum() < 20:
        return np.zeros((side, side, 1), np.float32)
    strength = float(texture.mean(axis=2)[sel].std())
    return (noise * strength / max(float(noise[sel].std()), 1e-6))[..., None]


def check_landmarks(landmarks: np.ndarray | None, n: int, side: int) -> np.ndarray | None:
    """LANDMARKS [N,10] (or [N,5,2]) crop pixels -> [N,5,2] float64, rows of NaN where the crop finds its own; a
    row partly NaN, far outside the crop or with both eyes at one point is refused (ValueError)."""
    if landmarks is None:
        return None
    points = np.asarray(landmarks, np.float64)
    if points.size == 0:
        return None
    if points.size != n * 10:
        raise ValueError(f"LANDMARKS must hold 10 values (five x, y points) per crop ({n}), got {list(points.shape)}")
    points = points.reshape(n, 5, 2)
    finite = np.isfinite(points).reshape(n, -1)
    if (finite.any(1) & ~finite.all(1)).any():
        raise ValueError("LANDMARKS rows must be all finite (given) or all NaN (found on the crop)")
    rows = finite.all(1)
    if (np.abs(points[rows] - side / 2) > side).any():
        raise ValueError(f"LANDMARKS must lie near the {side} px crop (crop pixels, not frame pixels)")
    if (np.linalg.norm(points[rows, 1] - points[rows, 0], axis=1) < 1).any():
        raise ValueError("LANDMARKS must have the two eyes at least 1 px apart")
    return points
