"""Where things are: the checkout's model repository, the shipped weights and the shared data beside the checkout.

The shared data (`../shared/data/faces`: identities for the privacy check, multi-face scenes for the benchmark and
the tests) lives beside the checkout on developer and CI machines; `$FACEDEID_SHARED_FACES` points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parents[1]  # src/facedeid -> the checkout (editable install)
DEFAULT_REPOSITORY = REPO_ROOT / "model_repository"
WEIGHTS_DIR = PACKAGE_DIR / "weights"


def _shared_faces() -> Path:
    env = os.environ.get("FACEDEID_SHARED_FACES")
    if env:
        return Path(env)
    for candidate in (REPO_ROOT.parent / "shared" / "data" / "faces", REPO_ROOT / "shared" / "data" / "faces"):
        if candidate.is_dir():
            return candidate
    return REPO_ROOT.parent / "shared" / "data" / "faces"


SHARED_FACES = _shared_faces()  # may not exist: callers check (shared_faces_dir) and say so
IDENTITIES = SHARED_FACES / "identities"  # held-out people: never used for training
SCENES = SHARED_FACES / "scenes"  # multi-face photos


def shared_faces_dir() -> Path | None:
    """The shared faces folder when it is present on this machine."""
    return SHARED_FACES if (SHARED_FACES / "identities").is_dir() else None


def cache_dir(name: str) -> Path:
    """$FACEDEID_CACHE/<name> (default ~/.cache/facedeid/<name>): computed data worth keeping between runs."""
    import os

    return Path(os.environ.get("FACEDEID_CACHE", Path.home() / ".cache" / "facedeid")) / name
