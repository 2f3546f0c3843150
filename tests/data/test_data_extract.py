"""`facedeid data extract` on short videos made from real photos (tests/data/videos.py)."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from facedeid.data.dna import boxes_to_pixels, read_image, read_labels, scan_dataset
from facedeid.data.extract import frame_stem, main, parse_frame_stem
from facedeid.data.summary import summarize
from facedeid.data.video import open_video, sample_frames

sys.path.insert(0, str(Path(__file__).parent))
from video_fixtures import expected_face, iou, pan_frames, write_video_ffmpeg, write_video_opencv  # noqa: E402

LABEL_LINE = re.compile(r"^0 [01]\.\d{6} [01]\.\d{6} [01]\.\d{6} [01]\.\d{6}$")
PAN = {"fps": 10, "frames": 50, "step": 16}  # 5 s: face in view at t=0 and t=1 only
PAN2 = {"fps": 8, "frames": 24, "step": 4}  # 3 s: face in view throughout


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("videos")
    write_video_opencv(src / "pan.avi", pan_frames(PAN["frames"], PAN["step"]), PAN["fps"])
    (src / "more").mkdir()
    write_video_ffmpeg(src / "more" / "pan2.mp4", pan_frames(PAN2["frames"], PAN2["step"]), PAN2["fps"])
    (src / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)  # not decodable
    return src


@pytest.fixture(scope="module")
def extracted(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("dna")
    report = out.parent / f"{out.name}_report.json"
    rc = main([str(videos), str(out), "--fps", "1", "--local", "--threads", "1", "--no-progress",
               "--report", str(report)])
    return out, rc, json.loads(report.read_text())


def expected_keys():
    keys = {f"pan/{frame_stem('pan', t)}": (PAN, t) for t in range(5)}
    keys |= {f"more/pan2/{frame_stem('pan2', t)}": (PAN2, t) for t in range(3)}
    return keys


def test_frame_count_names_and_timestamps(extracted):
    out, rc, report = extracted
    frames = scan_dataset(out)
    assert {f.key for f in frames} == set(expected_keys())
    assert (out / "images" / "pan" / "pan_t000001s000.jpg").is_file()
    assert (out / "labels" / "more" / "pan2" / "pan2_t000002s000.txt").is_file()
    times = sorted(parse_frame_stem(f.key.rsplit("/", 1)[1]) for f in frames)
    assert times == [("pan", float(t)) for t in range(5)] + [("pan2", float(t)) for t in range(3)]
    by_video = {v["rel"]: v for v in report["videos"]}
    assert by_video["pan"]["frames"] == 5 and by_video["more/pan2"]["frames"] == 3


def test_broken_video_is_reported_and_the_others_done(extracted):
    out, rc, report = extracted
    assert rc == 1
    status = {v["rel"]: v["status"] for v in report["videos"]}
    assert status == {"broken": "failed", "more/pan2": "done", "pan": "done"}
    failed = next(v for v in report["videos"] if v["rel"] == "broken")
    assert "broken.mp4" in failed["error"]
    assert not (out / "images" / "broken").exists()


def test_frames_are_the_ones_at_their_timestamps(extracted):
    out, _, _ = extracted
    frames = pan_frames(PAN["frames"], PAN["step"])
    for t in (1, 3):
        image = read_image(out / "images" / "pan" / f"{frame_stem('pan', t)}.jpg").astype(np.float32)
        diffs = {i: np.abs(image - frames[i]).mean() for i in (t * 10 - 1, t * 10, t * 10 + 1)}
        assert diffs[t * 10] < 6, diffs  # the frame at t seconds (10 fps), not a neighbour
        assert min(diffs[t * 10 - 1], diffs[t * 10 + 1]) > 2 * diffs[t * 10], diffs


def test_labels_are_dna_format_and_find_the_face(extracted):
    out, _, _ = extracted
    for key, (video, t) in expected_keys().items():
        label = out / "labels" / f"{key}.txt"
        lines = label.read_text().splitlines()
        assert all(LABEL_LINE.match(line) for line in lines), lines
        rows = read_labels(label)
        want = expected_face(t * video["fps"], video["step"])
        if want is None:
            assert len(rows) == 0, f"{key}: no face in view, got {rows}"
        else:
            assert len(rows) == 1, f"{key}: {rows}"
            got = boxes_to_pixels(rows[:, 1:], 320, 240)[0]
            assert iou(got, want) > 0.8, (key, got, want)


def test_summary_of_the_extracted_set_matches_hand_counts(extracted):
    out, _, _ = extracted
    s = summarize(out)
    assert s["videos"] == 2 and s["frames_without_video_name"] == 0
    assert s["video_length_s"] == {"max": 5.0, "min": 3.0, "mean": 4.0}  # last timestamp + 1 s step
    assert (s["frames"], s["frames_with_faces"], s["frames_without_faces"], s["face_boxes"]) == (8, 5, 3, 5)
    # the face box is 88x120 of a 320x240 frame (0.1375); the detector's box is a little larger
    assert s["bins"] == {"10": 0, "30": 5, "50": 0, "70": 0, "70above": 0}
    assert 0.13 < s["face_area_share"]["min"] <= s["face_area_share"]["mean"] <= s["face_area_share"]["max"] < 0.16


def test_rerun_resumes(extracted, tmp_path):
    out = tmp_path / "dna"
    shutil.copytree(extracted[0], out)
    keep = out / "images" / "pan" / "pan_t000000s000.jpg"
    before = keep.stat().st_mtime_ns
    report = tmp_path / "report.json"
    src_dir = Path(json.loads((out / ".extract" / "pan.json").read_text())["source"]).parent
    args = [str(src_dir), str(out), "--local", "--threads", "1", "--no-progress", "--report", str(report)]

    assert main(args) == 1  # still the broken video
    videos = {v["rel"]: v for v in json.loads(report.read_text())["videos"]}
    assert videos["pan"]["status"] == videos["more/pan2"]["status"] == "skipped"
    assert sum(v["written"] for v in videos.values()) == 0

    # an interrupted video: one frame's label missing, the video not marked finished
    (out / "labels" / "pan" / "pan_t000001s000.txt").unlink()
    (out / ".extract" / "pan.json").unlink()
    assert main(args) == 1
    pan = {v["rel"]: v for v in json.loads(report.read_text())["videos"]}["pan"]
    assert (pan["status"], pan["written"], pan["resumed"], pan["faces"]) == ("done", 1, 4, 1)
    assert keep.stat().st_mtime_ns == before
    assert len(read_labels(out / "labels" / "pan" / "pan_t000001s000.txt")) == 1
    assert not list(out.rglob("*.tmp"))


def test_sampling_by_timestamp():
    def stream(native_fps, seconds):
        n = int(seconds * native_fps)
        return [(i, i / native_fps, None) for i in range(n)]

    pick = lambda frames, fps, native: [i for i, _, _ in sample_frames(iter(frames), fps, native)]  # noqa: E731
    assert pick(stream(29.97, 4), 1, 29.97) == [0, 30, 60, 90]  # NTSC: the frame nearest after each second
    assert pick(stream(10, 2), 2, 10) == [0, 5, 10, 15]
    assert pick(stream(0.5, 10), 1, 0.5) == [0, 1, 2, 3, 4]  # slower than asked: every frame, once
    assert pick(stream(10, 1), 0, 10) == list(range(10))  # --fps 0: all frames


def test_opencv_and_ffmpeg_decoders_agree(videos):
    results = {}
    for decoder in ("opencv", "ffmpeg"):
        reader = open_video(videos / "more" / "pan2.mp4", decoder)
        results[decoder] = [(i, t, fetch()) for i, t, fetch in reader.frames()]
        reader.close()
    a, b = results["opencv"], results["ffmpeg"]
    assert len(a) == len(b) == PAN2["frames"]
    assert [t for _, t, _ in a] == pytest.approx([i / PAN2["fps"] for i in range(PAN2["frames"])], abs=1e-6)
    assert [t for _, t, _ in b] == pytest.approx([i / PAN2["fps"] for i in range(PAN2["frames"])], abs=1e-6)
    assert np.abs(a[12][2].astype(np.float32) - b[12][2]).mean() < 3


def test_cli_errors(tmp_path, capsys):
    assert main([str(tmp_path / "missing.mp4"), str(tmp_path / "out"), "--local"]) == 2
    assert "no such video" in capsys.readouterr().err
    (tmp_path / "clip.avi").write_bytes(b"x")
    assert main([str(tmp_path / "clip.avi"), str(tmp_path / "out"), "--url", "127.0.0.1:9"]) == 2
    assert "--local" in capsys.readouterr().err


@pytest.fixture(scope="module")
def detector_server(tmp_path_factory):
    """tritonserver over a repository holding only the detector models (detect_prep, face_detector)."""
    from facedeid.export import export_detector
    from facedeid.serving import local_server
    from facedeid.serving.repository import DEFAULT_REPOSITORY

    repo = tmp_path_factory.mktemp("detector_repo")
    shutil.copytree(DEFAULT_REPOSITORY / "detect_prep", repo / "detect_prep",
                    ignore=shutil.ignore_patterns("__pycache__"))
    exported = DEFAULT_REPOSITORY / "face_detector" / "1" / "model.onnx"
    if exported.is_file():
        shutil.copytree(DEFAULT_REPOSITORY / "face_detector", repo / "face_detector",
                        ignore=shutil.ignore_patterns("__pycache__"))
    else:
        export_detector(repo)
    # the project ships its tritonserver (nvidia-pytriton): a server that cannot start is a failure, not a skip
    with local_server.running(repo, repo.parent / "tritonserver.log", extra_args=["--exit-timeout-secs=5"]) as server:
        yield server


def test_extract_through_triton_matches_local(videos, extracted, detector_server, tmp_path):
    out = tmp_path / "dna"
    rc = main([str(videos / "pan.avi"), str(out), "--url", detector_server.grpc_url, "--no-progress"])
    assert rc == 0
    local = extracted[0]
    names = sorted(p.name for p in (out / "labels" / "pan").iterdir())
    assert names == sorted(p.name for p in (local / "labels" / "pan").iterdir()) and len(names) == 5
    for name in names:
        served, in_process = read_labels(out / "labels" / "pan" / name), read_labels(local / "labels" / "pan" / name)
        assert served.shape == in_process.shape, name
        np.testing.assert_allclose(served, in_process, atol=2e-3, err_msg=name)


def test_truncated_video_is_reported_with_the_frames_it_had(videos, tmp_path):
    data = (videos / "pan.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])  # the index says 50 frames; about 25 remain
    report = tmp_path / "report.json"
    rc = main([str(tmp_path / "cut.avi"), str(tmp_path / "out"), "--local", "--threads", "1", "--no-progress",
               "--report", str(report)])
    assert rc == 1
    (video,) = json.loads(report.read_text())["videos"]
    assert video["status"] == "failed" and "stopped at frame" in video["error"] and video["written"] >= 2
    assert not (tmp_path / "out" / ".extract" / "cut.json").exists()  # a rerun tries again


def test_detector_failure_stops_the_run_cleanly(videos, tmp_path, monkeypatch, capsys):
    import facedeid.data.extract as ex

    class Broken:
        where = "test"

        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, frame):
            raise RuntimeError("server went away")

    monkeypatch.setattr(ex, "LocalDetector", Broken)
    assert main([str(videos / "pan.avi"), str(tmp_path / "out"), "--local", "--no-progress"]) == 2
    assert "server went away" in capsys.readouterr().err
    assert not list((tmp_path / "out").rglob("*.jpg"))
