"""Fixtures for the evaluation tests: a small DNA-format sample and a runner helper (no server needed).

Server tests use the session fixture `triton` from tests/conftest.py (an exported repository served by the real
`tritonserver`); they are marked and skip with a reason when the server cannot be started here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from facedeid.data.sample import build


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """The scikit-image-only sample (12 frames: two per bin, two without faces), as on a fresh machine."""
    root = tmp_path_factory.mktemp("sample")
    build(root, shared=None)
    return root


@pytest.fixture(scope="session")
def small_dir(tmp_path_factory, sample_dir) -> Path:
    """5 frames of the sample (one per bin, no-face frame included) for the runner tests: keeps them fast."""
    import shutil

    root = tmp_path_factory.mktemp("small")
    keys = ["skimage/bin10/astronaut_00", "skimage/bin30/astronaut_02", "skimage/bin70above/astronaut_08",
            "skimage/noface/no_label_file", "skimage/noface/empty_label_file"]
    for key in keys:
        for sub, ext in (("images", ".jpg"), ("labels", ".txt")):
            src = sample_dir / sub / f"{key}{ext}"
            if src.exists():
                dst = root / sub / f"{key}{ext}"
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
    return root


@pytest.fixture(autouse=True)
def _own_originals_cache(tmp_path_factory, monkeypatch):
    """The evaluation tests keep what they measure on original frames (evaluation/originals.py) in a cache of the
    test session, never in the developer's: a stale record there could not hide a change here."""
    monkeypatch.setenv("FACEDEID_CACHE", str(tmp_path_factory.getbasetemp() / "facedeid-cache"))
