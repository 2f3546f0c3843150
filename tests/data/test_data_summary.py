"""`facedeid data summary`: the original's data-set table, checked against hand counts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facedeid.data.dna import write_image
from facedeid.data.summary import format_table, main, summarize

# key -> label lines (None: no label file). Shares by hand: w*h summed over a frame's boxes.
FRAMES = {
    "v1/v1_t000000s000": ["0 0.5 0.5 0.2 0.25"],                        # 0.05  -> 0~10%
    "v1/v1_t000001s000": ["0 0.3 0.3 0.5 0.4", "0 0.8 0.8 0.1 0.1"],    # 0.21  -> 10~30%, 2 boxes
    "v1/v1_t000002s000": [],                                            # empty label file: no face
    "v1/v1_t000003s000": None,                                          # no label file: no face
    "v1/v1_t000004s000": ["0 0.5 0.5 nan 0.1"],                         # label error
    "v2/v2_t000000s000": ["0 0.5 0.5 0.8 0.9"],                         # 0.72  -> 70% and above
    "v2/v2_t000002s000": ["0 0.5 0.5 0.6 0.7"],                         # 0.42  -> 30~50%
    "v2/v2_t000004s000": ["0 0.5 0.5 0.75 0.8"],                        # 0.60  -> 50~70%
    "flat/other": ["0 0.5 0.5 0.1 0.1"],                                # 0.01  -> 0~10%, no video in its name
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("hand")
    image = np.full((48, 64, 3), 90, np.uint8)
    for key, lines in FRAMES.items():
        write_image(root / "images" / f"{key}.jpg", image)
        if lines is not None:
            label = root / "labels" / f"{key}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(line + "\n" for line in lines))
    return root


def test_hand_counts(dataset):
    s = summarize(dataset)
    assert s["frames"] == 9
    assert s["frames_with_faces"] == 6
    assert s["frames_without_faces"] == 2
    assert len(s["label_errors"]) == 1 and "v1_t000004s000.txt:1" in s["label_errors"][0]
    assert s["face_boxes"] == 7
    shares = s["face_area_share"]
    assert shares["max"] == pytest.approx(0.72, abs=1e-6)
    assert shares["min"] == pytest.approx(0.01, abs=1e-6)
    assert shares["mean"] == pytest.approx((0.05 + 0.21 + 0.72 + 0.42 + 0.60 + 0.01) / 6, abs=1e-6)
    assert s["bins"] == {"10": 2, "30": 1, "50": 1, "70": 1, "70above": 1}
    assert sum(s["bins"].values()) == s["frames_with_faces"]
    assert s["videos"] == 2 and s["frames_without_video_name"] == 1
    # v1: frames at 0..4 s, step 1 -> 5 s; v2: 0, 2, 4 s, step 2 -> 6 s
    assert s["video_length_s"] == {"max": 6.0, "min": 5.0, "mean": 5.5}


def test_text_and_json(dataset, tmp_path, capsys):
    out = tmp_path / "summary.json"
    assert main([str(dataset), "--json", str(out)]) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "label errors" in text and "v1_t000004s000" in captured.err
    rows = dict(line.rsplit(None, 1) for line in text.splitlines()[2:] if not line.startswith(("videos",
                                                                                           "label errors")))
    assert rows["frames"] == "9" and rows["frames with faces"] == "6" and rows["face boxes"] == "7"
    assert rows["face-area share max"] == "72.00%" and rows["face-area share min"] == "1.00%"
    assert rows["face-area share mean"] == "33.50%"
    assert [rows[f"frames {b}"] for b in ("0~10%", "10~30%", "30~50%", "50~70%", "70% and above")] == \
        ["2", "1", "1", "1", "1"]
    assert rows["video length max"] == "6.00s"
    assert json.loads(out.read_text()) == json.loads(json.dumps(summarize(dataset)))

    assert main([str(dataset), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["face_boxes"] == 7


def test_sample_set_and_no_video_names(tmp_path):
    from facedeid.data.sample import build

    build(tmp_path, shared=None)  # scikit-image photos only: two frames per bin, two without faces
    s = summarize(tmp_path)
    assert (s["frames"], s["frames_with_faces"], s["frames_without_faces"]) == (12, 10, 2)
    assert s["bins"] == {"10": 2, "30": 2, "50": 2, "70": 2, "70above": 2}
    assert s["videos"] is None
    assert "unknown" in format_table(s).splitlines()[2]


def test_not_a_dataset(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "images/" in capsys.readouterr().err
