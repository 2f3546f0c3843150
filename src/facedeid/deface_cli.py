"""`deface` as users run it: its command line with its defaults (threshold 0.2, full resolution, ellipse blur).

The bar for recall and speed. `anonymize` runs the real `deface` CLI on frames (written as lossless PNG, read
back); `detect` gives the boxes that CLI blurs (deface's own CenterFace call with the CLI's threshold), so the
evaluation can count recall and false positives for deface with the same metric code as for our pipeline.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

CLI_THRESHOLD = 0.2  # deface --thresh default


def executable() -> str:
    beside = Path(sys.executable).with_name("deface")
    found = str(beside) if beside.exists() else shutil.which("deface")
    if not found:
        raise RuntimeError("the `deface` command is not installed (pip install deface)")
    return found


def anonymize(frames: list[np.ndarray], args: tuple[str, ...] = ()) -> list[np.ndarray]:
    """Each RGB uint8 frame through `deface FILE...` (defaults unless `args`), in one CLI call."""
    from .data.dna import read_image, write_image

    if not frames:
        return []
    with tempfile.TemporaryDirectory(prefix="deface_cli_") as tmp:
        paths = [Path(tmp) / f"frame{i:05d}.png" for i in range(len(frames))]
        for path, frame in zip(paths, frames):
            write_image(path, frame)
        done = subprocess.run([executable(), *map(str, paths), *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"deface failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        return [read_image(p.with_name(f"{p.stem}_anonymized{p.suffix}")) for p in paths]


@lru_cache(maxsize=1)
def _centerface():
    from deface.centerface import CenterFace

    return CenterFace(in_shape=None, backend="auto")  # what the CLI builds without --scale / --backend


def detect(frame: np.ndarray, threshold: float = CLI_THRESHOLD) -> np.ndarray:
    """The boxes deface's CLI anonymises in `frame` ([N,4] pixels, before its mask-scale growth)."""
    dets, _ = _centerface()(frame, threshold=threshold)
    return np.asarray(dets, np.float32).reshape(-1, 5)[:, :4]
