"""Training targets other than the input crop: `ksame` donor averages (learned k-Same, issue 15 item 2).

Trained with L1 towards the original face through an identity bottleneck, a generator learns the mean face for a
pose and tone: a smear. With `--target ksame` the target of each crop is instead what `facedeid.ksame.KSame` makes
of it (an aligned, colour-matched average of k >= 10 donors pasted into the inner face; outside its inner mask the
crop itself), so the generator learns to paint a sharp, face-like average.

The targets of a whole crop set are computed once (minutes: CenterFace landmarks and a warp per crop) and cached
beside the crop cache as a `.npy` that is memory-mapped when read. Its name holds a hash of the donor bank and of
the ksame code, so a new bank or a changed algorithm builds new targets; the crop cache directory it sits in is
keyed by the crop set's own fingerprint (facedeid.train.data).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .data import CropSet

TARGETS = ("original", "ksame")
CHUNK = 256  # crops per KSame.generate call while building


def _file_hash(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes(), usedforsecurity=False).hexdigest()[:12]


def ksame_cache_name(bank_path: Path) -> str:
    """`ksame_<bank hash>_<code hash>.npy`: a new bank or a changed ksame algorithm gives new targets."""
    from .. import ksame

    return f"ksame_{_file_hash(bank_path)}_{_file_hash(Path(ksame.__file__))}.npy"


def build_ksame(crops: np.ndarray, out: np.ndarray, bank_path: Path, progress: bool = True) -> np.ndarray:
    """Fill `out` [N,S,S,3] uint8 with KSame(bank).generate of `crops`, chunk by chunk, with a progress bar."""
    from ..ksame import KSame

    generator = KSame(bank_path)
    starts = range(0, len(crops), CHUNK)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(crops), desc="ksame targets", unit="crop", mininterval=5)
    for start in starts:
        part = np.asarray(crops[start : start + CHUNK])
        out[start : start + len(part)] = generator.generate(part)
        if bar is not None:
            bar.update(len(part))
    if bar is not None:
        bar.close()
    return out


def ksame_targets(data: CropSet, bank_path: Path | None = None, progress: bool = True) -> np.ndarray:
    """KSame targets of every crop of `data` (same order and crop convention), from the cache when it is there."""
    from ..ksame import BANK_PATH

    bank_path = Path(bank_path or BANK_PATH)
    if not bank_path.exists():
        raise FileNotFoundError(f"--target ksame needs the donor bank {bank_path} "
                                "(build it with `facedeid train ksame-bank`)")
    if data.cache is None:  # --no-cache: build in memory
        return build_ksame(data.crops, np.empty(data.crops.shape, np.uint8), bank_path, progress)
    path = data.cache / ksame_cache_name(bank_path)
    if not path.exists():
        tmp = path.with_suffix(".tmp.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=data.crops.shape)
        build_ksame(data.crops, out, bank_path, progress)
        out.flush()
        del out
        tmp.replace(path)  # only a complete file ever has the final name
    targets = np.load(path, mmap_mode="r")
    if targets.shape != data.crops.shape:
        raise ValueError(f"cached ksame targets {path} have shape {targets.shape}, crops {data.crops.shape}: "
                         "delete the file to rebuild it")
    return targets


def held_apart_mask(data: CropSet) -> np.ndarray:
    """[N] bool: crops whose source file is in the fid_eff real-face reference (facedeid.ksame.held_apart)."""
    from ..ksame import held_apart

    return np.array([held_apart(Path(s).name) for s in data.sources], dtype=bool)
