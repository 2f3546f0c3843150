"""Training data: DNA layout and plain photo folders become facedeid.crops crops; the cache round-trips."""

from __future__ import annotations

import numpy as np

from facedeid.crops import extract_crops
from facedeid.data import boxes_to_pixels, read_labels
from facedeid.train.data import load_crops, read_rgb, split_is_val


def test_dna_layout_uses_labels_and_server_crops(dna_dir, tmp_path):
    data = load_crops(dna_dir, 128, use_cache=False, progress=False)
    assert data.crops.shape == (2, 128, 128, 3) and data.crops.dtype == np.uint8
    assert sorted(data.sources) == ["clip1/f0001.jpg", "clip2/f0001.jpg"]  # unlabeled frame = no faces
    frame = read_rgb(dna_dir / "images" / "clip1" / "f0001.jpg")
    labels = read_labels(dna_dir / "labels" / "clip1" / "f0001.txt")[:, 1:]
    boxes = boxes_to_pixels(labels, frame.shape[1], frame.shape[0])
    expected, _ = extract_crops(frame, boxes, 128)  # the server's crop code
    assert np.array_equal(data.crops[data.sources.index("clip1/f0001.jpg")], expected[0])
    assert data.is_val.any() and (~data.is_val).any()


def test_plain_folder_detects_faces_and_cache_round_trips(plain_dir, tmp_path):
    first = load_crops(plain_dir, 128, cache_dir=tmp_path, progress=False)
    assert len(first) == 2  # one astronaut face per photo
    assert list(tmp_path.glob("*/crops.npy"))
    second = load_crops(plain_dir, 128, cache_dir=tmp_path, progress=False)
    assert np.array_equal(np.asarray(first.crops), np.asarray(second.crops))
    assert first.sources == second.sources


def test_split_is_deterministic_and_near_requested_share():
    keys = [f"img{i}.jpg" for i in range(5000)]
    share = np.mean([split_is_val(k, 2.0) for k in keys])
    assert 0.01 < share < 0.03
    assert [split_is_val(k, 2.0) for k in keys[:50]] == [split_is_val(k, 2.0) for k in keys[:50]]
