"""The originals' metrics are measured once and read back by later runs (evaluation/originals.py): the same rows,
fid_eff and chance level as a run that measures everything, and a changed label is measured again."""

from __future__ import annotations

import csv
import shutil

import numpy as np
from eval_helpers import eval_argv

from facedeid.evaluation.cli import build_parser
from facedeid.evaluation.runner import Evaluation

TIMING = {"latency_ms", "server_s"}


def run(argv):
    args = build_parser().parse_args(argv)
    args.argv = argv
    ev = Evaluation(args)
    return ev, ev.run()


def rows(out):
    with open(out / "per_frame.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(fh)]


def test_cached_originals_give_the_numbers_of_a_run_without_the_cache(small_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEDEID_CACHE", str(tmp_path / "cache"))
    cold, cold_metrics = run(eval_argv(small_dir, tmp_path / "cold", "blur"))
    assert cold.originals_cache.hits == 0 and cold.originals_cache.misses == 5  # every frame: no labels is a record too
    warm, warm_metrics = run(eval_argv(small_dir, tmp_path / "warm", "blur"))
    assert warm.originals_cache.hits == 5 and warm.originals_cache.misses == 0
    fresh, fresh_metrics = run(eval_argv(small_dir, tmp_path / "fresh", "blur", "--no-cache"))
    assert fresh.originals_cache.hits == 0 and fresh.originals_cache.folder is None
    assert rows(tmp_path / "warm") == rows(tmp_path / "cold") == rows(tmp_path / "fresh")
    for key in ("fid_eff", "impostor_rate_by_face_size"):
        assert warm_metrics[key] == cold_metrics[key] == fresh_metrics[key]
    for npz in (tmp_path / "cold" / "faces" / "untouched").glob("*.npz"):
        with np.load(npz) as a, np.load(tmp_path / "warm" / "faces" / "untouched" / npz.name) as b:
            assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)

    # a moved label is another face: measured again, not read from the record of the old box
    moved = tmp_path / "moved"
    shutil.copytree(small_dir, moved)
    label = moved / "labels" / "skimage" / "bin30" / "astronaut_02.txt"
    lines = [line.split() for line in label.read_text().splitlines() if line.strip()]
    label.write_text("".join(f"{c} {float(x) + 0.01} {y} {w} {h}\n" for c, x, y, w, h in lines))
    again, _ = run(eval_argv(moved, tmp_path / "moved_out", "blur"))
    assert again.originals_cache.hits == 4 and again.originals_cache.misses == 1


def test_metric_threads_and_worker_processes_give_the_numbers_of_one_frame_at_a_time(small_dir, tmp_path):
    # --no-cache: each way measures the originals itself; the per-face records must be the same files too
    one, one_metrics = run(eval_argv(small_dir, tmp_path / "one", "blur,mosaic", "--no-cache", "--metric-threads", "1"))
    assert one.threads is None and one.pool is None
    for name, extra in (("threads", ["--metric-threads", "2"]), ("workers", ["--workers", "2"])):
        other, other_metrics = run(eval_argv(small_dir, tmp_path / name, "blur,mosaic", "--no-cache", *extra))
        assert rows(tmp_path / name) == rows(tmp_path / "one") and len(rows(tmp_path / "one")) == 10, name
        for key in ("fid_eff", "impostor_rate_by_face_size"):
            assert other_metrics[key] == one_metrics[key], (name, key)
        assert sorted(p.relative_to(tmp_path / name).as_posix() for p in (tmp_path / name / "faces").rglob("*.npz")) \
            == sorted(p.relative_to(tmp_path / "one").as_posix() for p in (tmp_path / "one" / "faces").rglob("*.npz"))
        assert other.pool is None and other.threads is None  # shut down with the run
