"""Every kind of broken input in one DNA-format set, evaluated once through the real server.

One run of `eval/triton_eval.py` (a subprocess, as users run it) over a set that mixes good frames with every bad
image and bad label case of the hardening issue. The run must finish (exit 0), give each bad frame its status in
per_frame.csv, print a one-line error naming the file, count skipped frames by reason in metrics.json, and
evaluate every good frame (odd formats, a 1x1 frame, a non-ASCII name, the same stem in two folders).
"""

from __future__ import annotations

import csv
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from facedeid.data.dna import LABEL_BYTES_PER_FACE, MAX_LABEL_FACES, MAX_PIXELS

from helpers import ASTRONAUT_FACE

ROOT = Path(__file__).resolve().parents[2]
SIDE = 256  # astronaut scaled down: small frames keep the run short
FACE = ASTRONAUT_FACE * SIDE / 512
LABEL = "0 {:.6f} {:.6f} {:.6f} {:.6f}\n".format(
    (FACE[0] + FACE[2]) / 2 / SIDE, (FACE[1] + FACE[3]) / 2 / SIDE, (FACE[2] - FACE[0]) / SIDE,
    (FACE[3] - FACE[1]) / SIDE)
UNICODE_KEY = "unicode/visage_é_日本"

# key -> (expected status, reason fragment printed on the frame's error line)
GOOD = ["good/astronaut", "good/no_label_file", "same_stem/cam1/000", "same_stem/cam2/000", UNICODE_KEY,
        "formats/png16", "formats/gray", "formats/rgba", "formats/cmyk", "formats/tiny_1x1"]
BAD_IMAGES = {
    "bad_image/zero_bytes": "empty file (0 bytes)",
    "bad_image/truncated": "not a decodable image",
    "bad_image/corrupt": "not a decodable image",
    "bad_image/not_an_image": "not a decodable image",
    "bad_image/huge_12000x8000": f"12000x8000 is over the {MAX_PIXELS / 1e6:.0f}-megapixel limit",
}
BAD_LABELS = {  # key -> (label text, reason fragment)
    "bad_label/wrong_columns": ("0 0.5 0.5 0.2\n", "expected 5 fields"),
    "bad_label/not_a_number": ("0 0.5 abc 0.2 0.2\n", "not a number"),
    "bad_label/nan": ("0 nan 0.5 0.2 0.2\n", "NaN or infinite"),
    "bad_label/inf": ("0 0.5 0.5 inf 0.2\n", "NaN or infinite"),
    "bad_label/outside": ("0 1.4 0.5 0.2 0.2\n", "coordinates must be in [0, 1]"),
    "bad_label/leaves_frame": ("0 0.95 0.5 0.3 0.2\n", "box leaves the frame"),
    "bad_label/zero_size": ("0 0.5 0.5 0 0.2\n", "width and height must be > 0"),
    "bad_label/negative_size": ("0 0.5 0.5 -0.2 0.2\n", "width and height must be > 0"),
    "bad_label/second_line_bad": (LABEL + "0 0.5 0.5 0.1\n", ":2: expected 5 fields"),
    # the 10 MB file that hung the client: refused from its size, before parsing
    "bad_label/10mb_500000_faces": ("0 0.5 0.5 0.01 0.01\n" * 500_000,
                                    f"over {MAX_LABEL_FACES * LABEL_BYTES_PER_FACE} bytes"),
    "bad_label/one_face_too_many": (LABEL * (MAX_LABEL_FACES + 1),
                                    f":{MAX_LABEL_FACES + 1}: more than {MAX_LABEL_FACES} faces"),
    # valid numbers, but under 1 px in this 256 px image: the server would refuse it, so the client does
    "bad_label/sub_pixel_face": ("0 0.5 0.5 0.002 0.2\n", "under 1 px"),
}
ORPHAN_LABEL = "labels/orphans/label_without_image.txt"


def huge_png(path: Path, width: int, height: int) -> None:
    """A valid RGB PNG of width x height written row by row (a few hundred KB; never held in memory)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(3 * width)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def build_bad_set(root: Path, astronaut: np.ndarray) -> None:
    rgb = cv2.resize(astronaut, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    images, labels = root / "images", root / "labels"

    def image(key: str, ext: str = ".jpg") -> Path:
        path = images / f"{key}{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def label(key: str, text: str = LABEL) -> None:
        path = labels / f"{key}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    jpeg = cv2.imencode(".jpg", rgb[:, :, ::-1])[1].tobytes()
    for key in ("good/astronaut", "good/no_label_file", "same_stem/cam1/000", UNICODE_KEY):
        image(key).write_bytes(jpeg)
    image("same_stem/cam2/000").write_bytes(cv2.imencode(".jpg", rgb[:, ::-1, ::-1])[1].tobytes())  # mirrored
    for key in ("good/astronaut", "same_stem/cam1/000", "same_stem/cam2/000", UNICODE_KEY):
        label(key)
    flipped = LABEL.split()
    flipped[1] = f"{1 - float(flipped[1]):.6f}"
    label("same_stem/cam2/000", " ".join(flipped) + "\n")
    # odd but valid formats: processed as RGB uint8
    cv2.imwrite(str(image("formats/png16", ".png")), rgb[:, :, ::-1].astype(np.uint16) * 257)
    cv2.imwrite(str(image("formats/gray", ".png")), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]), "RGBA").save(image("formats/rgba", ".png"))
    Image.fromarray(rgb).convert("CMYK").save(image("formats/cmyk"), "JPEG")
    Image.fromarray(rgb[:1, :1]).save(image("formats/tiny_1x1", ".png"))
    for key in ("formats/png16", "formats/gray", "formats/rgba", "formats/cmyk"):
        label(key)
    label("formats/tiny_1x1", "0 0.5 0.5 1 1\n")  # a face filling the single pixel
    # broken images (each with a valid label: the image is what fails)
    image("bad_image/zero_bytes").write_bytes(b"")
    image("bad_image/truncated").write_bytes(jpeg[: len(jpeg) // 2])
    image("bad_image/corrupt").write_bytes(jpeg[:300] + bytes(range(256)) * 16)
    image("bad_image/not_an_image").write_text("this is a text file with an image extension\n")
    huge_png(image("bad_image/huge_12000x8000", ".png"), 12000, 8000)
    for key in BAD_IMAGES:
        label(key)
    # broken labels (each with a valid image: the label is what fails)
    for key, (text, _) in BAD_LABELS.items():
        image(key).write_bytes(jpeg)
        label(key, text)
    (root / ORPHAN_LABEL).parent.mkdir(parents=True, exist_ok=True)
    (root / ORPHAN_LABEL).write_text(LABEL)


@pytest.fixture(scope="module")
def bad_run(triton, astronaut, tmp_path_factory):
    """(per_frame rows by key, metrics.json, stderr, stdout, output dir) of one evaluation over the bad set."""
    root = tmp_path_factory.mktemp("bad_inputs")
    data, out = root / "data", root / "out"
    build_bad_set(data, astronaut)
    argv = ["--dataset_dir", data, "--model", "mobileunet", "--output_dir", out, "--batch_size", "8",
            "--url", triton.grpc_url, "--no_progress", "--no_report", "--save", "--retries", "2"]
    proc = subprocess.run([sys.executable, ROOT / "eval/triton_eval.py", *map(str, argv)], capture_output=True,
                          text=True, encoding="utf-8", timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(out / "per_frame.csv", newline="", encoding="utf-8") as fh:
        rows = {r["key"]: r for r in csv.DictReader(fh)}
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    return rows, metrics, proc.stderr, proc.stdout, out


def test_every_frame_has_one_row_with_its_status(bad_run):
    rows, *_ = bad_run
    expected = {k: "ok" for k in GOOD} | {k: "skipped:bad_image" for k in BAD_IMAGES} | {
        k: "skipped:bad_label" for k in BAD_LABELS}
    assert {k: r["status"] for k, r in rows.items()} == expected


def test_good_frames_are_deidentified(bad_run):
    rows, *_ = bad_run
    for key in GOOD:
        row = rows[key]
        if key in ("good/no_label_file",):
            assert row["faces"] == "0" and row["bin"] == "none"
            continue
        assert int(row["faces"]) == 1 and int(row["server_faces"]) == 1, row
        if key != "formats/tiny_1x1":
            assert float(row["ssim"]) < 0.9, f"{key}: face barely changed ({row['ssim']})"
    assert (rows["formats/tiny_1x1"]["width"], rows["formats/tiny_1x1"]["height"]) == ("1", "1")


def test_same_stem_in_two_folders_is_two_frames(bad_run):
    rows, _, _, _, out = bad_run
    assert rows["same_stem/cam1/000"]["status"] == rows["same_stem/cam2/000"]["status"] == "ok"
    saved = sorted(p.relative_to(out).as_posix() for p in out.glob("*/same_stem/*/000.jpg"))
    assert len(saved) == 2 and saved[0] != saved[1]


def test_non_ascii_file_name_is_evaluated_and_saved(bad_run):
    rows, _, _, _, out = bad_run
    assert rows[UNICODE_KEY]["status"] == "ok"
    (saved,) = out.glob(f"*/{UNICODE_KEY}.jpg")
    assert cv2.imdecode(np.fromfile(saved, np.uint8), cv2.IMREAD_COLOR) is not None


def test_each_bad_input_gets_one_line_naming_the_file(bad_run):
    _, _, stderr, _, _ = bad_run
    lines = stderr.splitlines()
    for key, reason in BAD_IMAGES.items():
        hits = [line for line in lines if f"{key}." in line]
        assert len(hits) == 1 and reason in hits[0] and hits[0].startswith("skipped bad image:"), (key, hits)
    for key, (_, reason) in BAD_LABELS.items():
        hits = [line for line in lines if f"labels/{key}.txt" in line]
        assert len(hits) == 1 and reason in hits[0] and hits[0].startswith("skipped bad_label:"), (key, hits)


def test_huge_frame_refused_with_the_limit_not_decoded(bad_run):
    rows, _, stderr, _, _ = bad_run
    assert rows["bad_image/huge_12000x8000"]["status"] == "skipped:bad_image"
    assert "12000x8000 is over the 50-megapixel limit" in stderr


def test_image_without_label_file_is_warned_about_and_counted(bad_run):
    _, metrics, stderr, _, _ = bad_run
    warnings = [line for line in stderr.splitlines() if "without a label file" in line]
    assert len(warnings) == 1 and "good/no_label_file.jpg" in warnings[0] and "--no-labels-ok" in warnings[0]
    assert metrics["missing_labels"] == 1 and metrics["no_labels_ok"] is False


def test_no_labels_ok_silences_the_warning_but_keeps_the_count(astronaut, tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    cv2.imwrite(str(data / "images" / "empty_street.jpg"), cv2.resize(astronaut, (64, 64))[:, :, ::-1])
    argv = ["--dataset_dir", data, "--model", "mosaic", "--output_dir", tmp_path / "out", "--no_progress",
            "--no_report", "--no-labels-ok"]
    proc = subprocess.run([sys.executable, ROOT / "eval/triton_eval.py", *map(str, argv)], capture_output=True,
                          text=True, encoding="utf-8", timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "without a label file" not in proc.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["missing_labels"] == 1 and metrics["no_labels_ok"] is True


def test_label_without_image_is_reported(bad_run):
    _, metrics, stderr, _, _ = bad_run
    assert [line for line in stderr.splitlines() if "label file without an image" in line and ORPHAN_LABEL in line]
    assert metrics["labels_without_image"] == [ORPHAN_LABEL]


def test_summary_counts_skipped_frames_by_reason(bad_run):
    _, metrics, _, stdout, _ = bad_run
    result = metrics["results"]["mobileunet"]
    assert result["skipped"] == {"bad_image": len(BAD_IMAGES), "bad_label": len(BAD_LABELS)}
    assert metrics["frames_in_dataset"] == len(GOOD) + len(BAD_IMAGES) + len(BAD_LABELS)
    assert f"skipped frames: bad_image: {len(BAD_IMAGES)}, bad_label: {len(BAD_LABELS)}" in stdout


def test_no_original_or_partial_file_saved_for_skipped_frames(bad_run):
    rows, _, _, _, out = bad_run
    saved = {p.relative_to(out).as_posix() for p in out.rglob("*.jpg") if "examples" not in p.parts}
    assert not [p for p in saved if "/bad_image/" in p or "/bad_label/" in p]
    assert not list(out.rglob("*.tmp"))
