"""The evaluation runner without a server (blur/mosaic run locally; a fake client stands in for Triton):
outputs, resume after an interrupted run, torn and duplicate rows, bad labels and images, fail-closed saving."""

from __future__ import annotations

import csv
import json
import shutil
from concurrent.futures import Future

import numpy as np
import pytest
from eval_helpers import eval_argv

from facedeid.compose import MASK_RGB
from facedeid.data import read_image
from facedeid.evaluation.cli import build_parser, main
from facedeid.evaluation.resume import ResultsLog, ResumeError
from facedeid.evaluation.runner import Evaluation


def run(argv, **kw):
    args = build_parser().parse_args(argv)
    args.argv = argv
    return Evaluation(args, **kw).run()


def rows_of(out):
    with open(out / "per_frame.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def results_without_timing(metrics):
    out = {}
    for model, s in metrics["results"].items():
        s = dict(s)
        s.pop("throughput")
        out[model] = s
    return out


def _diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{path}.{k}")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


@pytest.fixture(scope="module")
def uninterrupted(small_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    metrics = run(eval_argv(small_dir, out, "blur,mosaic", "--save"))
    return out, metrics


def test_outputs_of_a_run(uninterrupted, capsys):
    out, metrics = uninterrupted
    rows = rows_of(out)
    assert len(rows) == 10 and {r["status"] for r in rows} == {"ok"}
    assert {r["model"] for r in rows} == {"blur", "mosaic"}
    blur = metrics["results"]["blur"]
    assert blur["table"]["frames"]["average"] == 3 and blur["no_face_frames"] == 2
    assert blur["table"]["ssim"]["50"] is None and blur["table"]["ssim"]["10"] is not None
    assert blur["no_face_image_sim"] == pytest.approx(1.0, abs=1e-6)  # nothing to blur: frame unchanged
    assert metrics["boxes"] == "gt" and "--save" in metrics["command"] and metrics["facedeid_version"]
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 5  # one chart per metric
    saved = sorted(p.relative_to(out).as_posix() for p in out.glob("[1-7]*/**/*.jpg"))
    assert "10/skimage/bin10/astronaut_00.blur.jpg" in saved and len(saved) == 6
    assert (out / "noface" / "skimage" / "noface" / "no_label_file.mosaic.jpg").exists()
    # per-face records: fid_eff features of the faces >= 32 px, reid distances, the originals' descriptors
    assert sorted(p.name for p in (out / "faces").iterdir()) == ["blur", "mosaic", "untouched"]
    assert len(list((out / "faces" / "untouched").glob("*.npz"))) == 3  # the frames with faces
    fid = metrics["fid_eff"]["models"]
    assert set(fid) == {"untouched", "blur", "mosaic"} and fid["blur"]["faces"] == fid["untouched"]["faces"] > 0
    assert blur["fid_eff"] == fid["blur"]["fid_eff"] > 0 and "32 px" in metrics["fid_eff"]["reference"]
    assert set(metrics["impostor_rate_by_face_size"]) == set(blur["reid_by_face_size"]) == {
        "32-64px", "64-128px", "128px+"}


def test_det_of_each_row_is_its_own_frames(uninterrupted, small_dir):
    # each row's det_found is the `det` detector's count on that row's own de-identified frame (not a neighbour's
    # in the chunk), as the detector gives it when called directly
    from facedeid.baselines import anonymize
    from facedeid.data.dna import boxes_to_pixels, scan_dataset
    from facedeid.evaluation.measure import Measurers
    from facedeid.metrics import match_boxes

    out, _ = uninterrupted
    det = Measurers().det
    frames = {f.key: f for f in scan_dataset(small_dir)}
    counted = 0
    for row in rows_of(out):
        f = frames[row["key"]]
        image = read_image(f.image_path)
        gt = boxes_to_pixels(f.boxes_norm, image.shape[1], image.shape[0])
        if not len(gt):
            assert row["det_found"] == ""
            continue
        found = det(anonymize(row["model"], image, gt))[0]
        assert int(row["det_found"]) == int(match_boxes(gt, found).sum()), row["key"]
        counted += 1
    assert counted == 6  # 3 frames with faces x blur, mosaic


def test_printed_tables(small_dir, tmp_path, capsys):
    # one model from an existing results file: --resume computes nothing and prints the tables again
    out = tmp_path / "o"
    shutil.copytree(small_dir, tmp_path / "d")
    assert main(eval_argv(tmp_path / "d", out, "blur", "--limit", "1", "--no_report")) == 0
    text = capsys.readouterr().out
    assert "== blur (boxes: gt" in text
    assert "\t        10% \t30% \t50% \t70% \t70above\taverage" in text
    assert "\nssim    \t" in text and "\nimage sim\t" in text and "\nframes  \t1\t0\t0\t0\t0\t1" in text
    assert "throughput:" in text and "comparison" not in text
    assert main(eval_argv(tmp_path / "d", out, "blur", "--limit", "1", "--no_report")) == 2  # no --resume


def test_resume_after_interrupt_equals_uninterrupted_run(uninterrupted, small_dir, tmp_path):
    out = tmp_path / "resumed"
    seen = []

    def stop_after_three(row):
        seen.append(row)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(eval_argv(small_dir, out, "blur,mosaic", "--save"), on_row=stop_after_three)
    assert len(rows_of(out)) == 3
    # a crash in the middle of a write leaves a torn line; a duplicate row must not count twice
    text = (out / "per_frame.csv").read_text()
    first_row = text.splitlines()[1]
    with open(out / "per_frame.csv", "a") as fh:
        fh.write(first_row + "\n" + first_row[:17])
    computed = []
    metrics = run(eval_argv(small_dir, out, "blur,mosaic", "--save", "--resume"), on_row=computed.append)
    assert len(computed) == 10 - 3  # nothing recomputed
    rows = rows_of(out)
    assert len({(r["model"], r["key"]) for r in rows}) == 10
    assert _diff(results_without_timing(metrics), results_without_timing(uninterrupted[1])) == []
    for key in ("fid_eff", "impostor_rate_by_face_size"):  # from the per-face records the interrupted run kept
        assert metrics[key] == uninterrupted[1][key]
    # every per-frame number equals the uninterrupted run's
    full = {(r["model"], r["key"]): r for r in rows_of(uninterrupted[0])}
    skip = {"latency_ms", "server_s"}
    for r in rows:
        assert {k: v for k, v in r.items() if k not in skip} == \
               {k: v for k, v in full[(r["model"], r["key"])].items() if k not in skip}


def test_resume_refuses_other_settings(tmp_path):
    log = ResultsLog(tmp_path, {"dataset_dir": "/a", "boxes": "gt"})
    log.append({"model": "blur", "key": "k", "status": "ok"})
    log.close()
    with pytest.raises(ResumeError, match="--resume"):
        ResultsLog(tmp_path, {"dataset_dir": "/a", "boxes": "gt"})
    with pytest.raises(ResumeError, match="boxes"):
        ResultsLog(tmp_path, {"dataset_dir": "/a", "boxes": "detect"}, resume=True)
    again = ResultsLog(tmp_path, {"dataset_dir": "/a", "boxes": "gt"}, resume=True)
    assert again.done == {("blur", "k")}
    again.close()
    fresh = ResultsLog(tmp_path, {"dataset_dir": "/b", "boxes": "gt"}, overwrite=True)
    assert fresh.done == set()
    fresh.close()


class FailingClient:
    """Stands in for DeidClient: every request fails as if the server had died mid-run."""

    def __init__(self, urls, **kw):
        from facedeid.client.triton import ClientStats

        self.stats = ClientStats(per_url={u: 0 for u in urls})

    def wait_ready(self, models, timeout_s):
        pass

    def server_info(self, models):
        return {"fake": {"version": "0"}}

    def submit(self, model, frame, boxes=None):
        from facedeid.client import DeidError

        fut = Future()
        fut.set_exception(DeidError(f"{model}: server unavailable"))
        return fut

    def close(self):
        pass


def test_bad_labels_bad_images_and_server_failure(sample_dir, tmp_path, capsys):
    data = tmp_path / "data"
    for key in ("skimage/bin30/astronaut_02", "skimage/noface/empty_label_file"):
        for sub, ext in (("images", ".jpg"), ("labels", ".txt")):
            (data / sub / key).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(sample_dir / sub / f"{key}{ext}", data / sub / f"{key}{ext}")
    (data / "images/bad/label.jpg").parent.mkdir(parents=True)
    shutil.copy2(sample_dir / "images/skimage/bin30/astronaut_02.jpg", data / "images/bad/label.jpg")
    (data / "labels/bad").mkdir(parents=True)
    (data / "labels/bad/label.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 oops 0.2\n")
    (data / "images/bad/empty.jpg").write_bytes(b"")
    (data / "images/bad/corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    run(eval_argv(data, out, "mobileunet,blur", "--save"), client_factory=FailingClient)
    err = capsys.readouterr().err
    assert "label.txt:2:" in err and "empty.jpg: empty file" in err and "corrupt.png" in err
    status = {(r["model"], r["key"]): r["status"] for r in rows_of(out)}
    assert status[("blur", "bad/label")] == "skipped:bad_label"
    assert status[("blur", "bad/empty")] == "skipped:bad_image"
    assert status[("mobileunet", "bad/corrupt")] == "skipped:bad_image"
    assert status[("mobileunet", "skimage/bin30/astronaut_02")] == "skipped:server_error"
    assert status[("blur", "skimage/bin30/astronaut_02")] == "ok"  # the run went on
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["results"]["mobileunet"]["skipped"] == {"bad_image": 2, "bad_label": 1, "server_error": 2}
    assert metrics["results"]["mobileunet"]["table"]["frames"]["average"] == 0
    # fail closed: the saved frame for the failed request has the face masked, never original pixels
    original = read_image(data / "images/skimage/bin30/astronaut_02.jpg")
    saved = read_image(out / "30/skimage/bin30/astronaut_02.mobileunet.jpg")
    lines = (data / "labels/skimage/bin30/astronaut_02.txt").read_text().split()
    h, w = original.shape[:2]
    cx, cy = int(float(lines[1]) * w), int(float(lines[2]) * h)
    centre = saved[cy - 5 : cy + 5, cx - 5 : cx + 5].reshape(-1, 3).mean(0)
    assert np.abs(centre - np.array(MASK_RGB)).max() < 6
    assert np.abs(original[cy - 5 : cy + 5, cx - 5 : cx + 5].reshape(-1, 3).mean(0) - MASK_RGB).max() > 10
