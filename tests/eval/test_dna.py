"""DNA layout: area bins, labels (good and bad), scanning nested folders, box conversions, robust image reading."""

from __future__ import annotations

import numpy as np
import pytest

from facedeid.data import (
    BINS,
    ImageError,
    LabelError,
    area_bin,
    boxes_to_pixels,
    face_area_share,
    pixels_to_boxes_norm,
    read_image,
    read_labels,
    scan_dataset,
    write_labels,
)


@pytest.mark.parametrize("share, expected", [
    (0.0, "10"), (0.05, "10"), (0.10, "10"), (0.1000001, "30"), (0.30, "30"), (0.31, "50"), (0.50, "50"),
    (0.51, "70"), (0.70, "70"), (0.7000001, "70above"), (1.0, "70above"), (1.7, "70above"),
])
def test_area_bins(share, expected):
    assert BINS == ("10", "30", "50", "70", "70above")
    assert area_bin(share) == expected


@pytest.mark.parametrize("share", [-0.01, float("nan"), float("inf")])
def test_area_bin_rejects_nonsense(share):
    with pytest.raises(ValueError):
        area_bin(share)


def test_read_labels_ok(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("0 0.5 0.5 0.2 0.4\n\n0 0.1 0.2 0.1 0.1\n")
    rows = read_labels(p)
    assert rows.shape == (2, 5) and rows.dtype == np.float32
    assert np.allclose(rows[0], [0, 0.5, 0.5, 0.2, 0.4])


@pytest.mark.parametrize("text, line, words", [
    ("0 0.5 0.5 0.2\n", 1, "5 fields"),
    ("0 0.5 0.5 0.2 0.2\n0 0.5 x 0.2 0.2\n", 2, "not a number"),
    ("0 0.5 0.5 0.2 nan\n", 1, "NaN"),
    ("0 0.5 0.5 0 0.2\n", 1, "> 0"),
    ("0 1.5 0.5 0.2 0.2\n", 1, "[0, 1]"),
    ("0 0.95 0.5 0.2 0.2\n", 1, "leaves the frame"),
    ("-1 0.5 0.5 0.2 0.2\n", 1, "class"),
])
def test_read_labels_bad_names_file_and_line(tmp_path, text, line, words):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(LabelError) as info:
        read_labels(p)
    assert info.value.path == p and info.value.line == line
    assert f"{p}:{line}:" in str(info.value) and words in str(info.value)


def _jpg(path, h=40, w=60):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))


def test_scan_dataset_nested_missing_and_bad_labels(tmp_path):
    _jpg(tmp_path / "images/v1/sub/000.jpg")
    _jpg(tmp_path / "images/v1/001.jpg")
    _jpg(tmp_path / "images/v2/002.png")
    (tmp_path / "images/v2/notes.txt").write_text("not an image")
    (tmp_path / "labels/v1/sub").mkdir(parents=True)
    (tmp_path / "labels/v1/sub/000.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (tmp_path / "labels/v2").mkdir(parents=True)
    (tmp_path / "labels/v2/002.txt").write_text("0 0.5 0.5 0.5\n")
    frames = scan_dataset(tmp_path)
    assert [f.key for f in frames] == ["v1/001", "v1/sub/000", "v2/002"]
    no_label, labelled, bad = frames
    assert no_label.label_path is None and no_label.n_faces == 0 and no_label.bin is None and no_label.error is None
    assert labelled.n_faces == 1 and labelled.bin == "30" and abs(labelled.area_share - 0.25) < 1e-6
    assert bad.error is not None and "002.txt:1:" in bad.error


def test_scan_dataset_stems_with_dots_find_their_labels(tmp_path):
    _jpg(tmp_path / "images/clip/clip_t000012.000.jpg")
    (tmp_path / "labels/clip").mkdir(parents=True)
    (tmp_path / "labels/clip/clip_t000012.000.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (frame,) = scan_dataset(tmp_path)
    assert frame.key == "clip/clip_t000012.000" and frame.n_faces == 1


def test_scan_dataset_needs_images_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="images/"):
        scan_dataset(tmp_path)


def test_box_conversions_round_trip(tmp_path):
    px = np.array([[10, 20, 50, 100], [0, 0, 64, 48]], np.float32)
    norm = pixels_to_boxes_norm(px, 64, 128)
    assert np.allclose(boxes_to_pixels(norm, 64, 128), px, atol=1e-4)
    assert abs(face_area_share(norm) - (40 * 80 + 64 * 48) / (64 * 128)) < 1e-6
    write_labels(tmp_path / "l.txt", px, 64, 128)
    assert np.allclose(read_labels(tmp_path / "l.txt")[:, 1:], norm, atol=1e-5)
    write_labels(tmp_path / "empty.txt", np.zeros((0, 4)), 64, 128)
    assert read_labels(tmp_path / "empty.txt").shape == (0, 5)


# ------------------------------------------------------------------------------------------- image reading
def test_read_image_variants(tmp_path):
    import cv2
    from PIL import Image

    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "c.png"), rgb[:, :, ::-1])
    assert np.array_equal(read_image(tmp_path / "c.png"), rgb)
    cv2.imwrite(str(tmp_path / "g.png"), np.full((16, 24), 77, np.uint8))
    gray = read_image(tmp_path / "g.png")
    assert gray.shape == (16, 24, 3) and (gray == 77).all()
    rgba = np.dstack([rgb[:, :, ::-1], np.full((16, 24), 10, np.uint8)])
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    assert np.array_equal(read_image(tmp_path / "a.png"), rgb)
    cv2.imwrite(str(tmp_path / "d.png"), (rgb[:, :, ::-1].astype(np.uint16) * 257))
    assert np.array_equal(read_image(tmp_path / "d.png"), rgb)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "k.jpg", quality=100)
    cmyk = read_image(tmp_path / "k.jpg")
    assert cmyk.shape == (16, 24, 3) and abs(int(cmyk[..., 0].mean()) - 200) < 12 and cmyk[..., 1].mean() < 12


@pytest.mark.parametrize("name, content, words", [
    ("empty.jpg", b"", "empty file"),
    ("corrupt.jpg", b"\xff\xd8\xff\xe0 definitely not a jpeg", "not a decodable image"),
    ("text.png", b"hello, I am text\n", "not a decodable image"),
])
def test_read_image_errors_are_one_line_naming_the_file(tmp_path, name, content, words):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageError) as info:
        read_image(tmp_path / name)
    message = str(info.value)
    assert name in message and words in message and "\n" not in message


def test_read_image_pixel_limit(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ImageError, match="megapixel limit"):
        read_image(tmp_path / "big.png", max_pixels=5000)


def test_sample_has_every_bin_and_no_face_frames(sample_dir):
    frames = scan_dataset(sample_dir)
    bins = [f.bin for f in frames]
    assert all(b in bins for b in BINS)
    assert bins.count(None) == 2
    assert all(f.error is None for f in frames)
    assert any(f.label_path is None for f in frames) and any(f.label_path and f.n_faces == 0 for f in frames)


def test_sample_is_deterministic(sample_dir, tmp_path):
    from facedeid.data.sample import build

    build(tmp_path, shared=None)
    for path in sorted(p for p in sample_dir.rglob("*") if p.is_file()):
        assert path.read_bytes() == (tmp_path / path.relative_to(sample_dir)).read_bytes(), path
