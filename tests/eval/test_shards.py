"""Sharded evaluation: `--shard K/N` runs and `--merge` give the numbers of one run over every frame; shards that
do not belong together, a missing, duplicated or unfinished shard are clear errors and nothing is written."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from eval_helpers import eval_argv

from facedeid.evaluation.cli import main
from facedeid.evaluation.shards import ShardError, parse_shard

TIMING = {"latency_ms", "server_s"}


def rows_of(out):
    with open(out / "per_frame.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def results_without_timing(metrics):
    return {m: {k: v for k, v in s.items() if k != "throughput"} for m, s in metrics["results"].items()}


def metrics_of(out):
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def runs(sample_dir, tmp_path_factory):
    """The bundled sample (12 frames) evaluated once, and as two shards."""
    root = tmp_path_factory.mktemp("shards")
    full, s0, s1 = root / "full", root / "s0", root / "s1"
    assert main(eval_argv(sample_dir, full, "blur,mosaic")) == 0
    assert main(eval_argv(sample_dir, s0, "blur,mosaic", "--shard", "0/2")) == 0
    assert main(eval_argv(sample_dir, s1, "blur,mosaic", "--shard", "1/2")) == 0
    return root, full, s0, s1


def test_shards_are_disjoint_and_cover_the_data_set(runs):
    _, full, s0, s1 = runs
    keys = [{r["key"] for r in rows_of(d) if r["model"] == "blur"} for d in (full, s0, s1)]
    assert keys[1].isdisjoint(keys[2]) and keys[1] | keys[2] == keys[0]
    assert abs(len(keys[1]) - len(keys[2])) <= 1 and len(keys[0]) == 12
    record = metrics_of(s1)["shard"]
    assert (record["index"], record["count"], record["frames"], record["frames_in_dataset"]) == (1, 2, 6, 12)


def test_two_shards_merged_equal_one_run(runs, capsys):
    root, full, s0, s1 = runs
    out = root / "merged"
    capsys.readouterr()
    assert main(["--merge", str(s0), str(s1), "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "== blur (boxes: gt" in printed and "== comparison" in printed
    merged, single = metrics_of(out), metrics_of(full)
    assert results_without_timing(merged) == results_without_timing(single)
    assert merged["fid_eff"] == single["fid_eff"] and merged["impostor_rate_by_face_size"] == \
        single["impostor_rate_by_face_size"], "the merge reads the shards' per-face records"
    fid = single["fid_eff"]["models"]
    assert fid["blur"]["fid_eff"] > fid["untouched"]["fid_eff"] > 0, "blur looks less like a face than a face"
    assert merged["frames_in_dataset"] == single["frames_in_dataset"] == 12
    assert [m["shard"] for m in merged["merged_from"]] == ["0/2", "1/2"] and "shard" not in merged
    ours = {(r["model"], r["key"]): {k: v for k, v in r.items() if k not in TIMING} for r in rows_of(out)}
    theirs = {(r["model"], r["key"]): {k: v for k, v in r.items() if k not in TIMING} for r in rows_of(full)}
    assert ours == theirs, "every per-frame number equals the single run's"
    assert sorted(p.name for p in (out / "examples").iterdir()) == sorted(p.name for p in (full / "examples").iterdir())
    for marker in (full / "examples").glob("*.key"):
        assert (out / "examples" / marker.name).read_text() == marker.read_text()
    assert (out / "report.html").is_file()
    # Tables printed from the merged file are those of the single run (timings aside).
    assert main(["--merge", str(s1), str(s0), "--output_dir", str(out)]) == 2, "existing results are kept"
    assert main(["--merge", str(s1), str(s0), "--output_dir", str(out), "--overwrite", "--no_report"]) == 0
    assert results_without_timing(metrics_of(out)) == results_without_timing(single)


def _refused(capsys, dirs, out, message):
    capsys.readouterr()
    assert main(["--merge", *map(str, dirs), "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists(), "nothing is written when the merge is refused"


def test_missing_duplicated_and_foreign_shards_are_refused(runs, sample_dir, capsys):
    root, full, s0, s1 = runs
    _refused(capsys, [s0], root / "m1", "missing shard(s) 1/2")
    copy = root / "s0_copy"
    shutil.copytree(s0, copy, dirs_exist_ok=True)
    _refused(capsys, [s0, copy, s1], root / "m2", "duplicated shard: 0/2")
    _refused(capsys, [s0, s0, s1], root / "m3", "given twice")
    _refused(capsys, [full, s1], root / "m4", "not the output of a --shard K/N run")
    _refused(capsys, [s0, root / "absent"], root / "m5", "no metrics.json")
    # Another model list, another box source, another data set, another number of shards:
    other_model = root / "s1_blur"
    assert main(eval_argv(sample_dir, other_model, "blur", "--shard", "1/2")) == 0
    _refused(capsys, [s0, other_model], root / "m6", "models differs")
    other_count = root / "s1_of_3"
    assert main(eval_argv(sample_dir, other_count, "blur,mosaic", "--shard", "1/3", "--limit", "3")) == 0
    _refused(capsys, [s0, other_count], root / "m7", "shard count differs")
    changed = root / "changed_data"
    shutil.copytree(sample_dir, changed)
    label = sorted((changed / "labels").rglob("*.txt"))[0]
    label.write_text("0 0.5 0.5 0.2 0.2\n")
    other_data = root / "s1_other_data"
    assert main(eval_argv(changed, other_data, "blur,mosaic", "--shard", "1/2")) == 0
    _refused(capsys, [s0, other_data], root / "m8", "shard dataset_sha256 differs")


def test_an_unfinished_shard_is_refused(runs, capsys):
    root, _, s0, s1 = runs
    cut = root / "s1_cut"
    shutil.copytree(s1, cut)
    lines = (cut / "per_frame.csv").read_text().splitlines(keepends=True)
    (cut / "per_frame.csv").write_text("".join(lines[:-2]))
    _refused(capsys, [s0, cut], root / "m9", "is incomplete")


def test_shard_argument_and_resume(sample_dir, tmp_path, capsys):
    assert parse_shard("3/4").index == 3 and str(parse_shard(" 0 / 1 ")) == "0/1"
    for bad in ("4/4", "1", "-1/2", "a/b", "0/0"):
        with pytest.raises(ShardError):
            parse_shard(bad)
    with pytest.raises(SystemExit):
        main(eval_argv(sample_dir, tmp_path / "x", "blur", "--shard", "2/2"))
    assert "K must be in 0..N-1" in capsys.readouterr().err
    out = tmp_path / "s"
    assert main(eval_argv(sample_dir, out, "blur", "--shard", "0/3", "--no_report")) == 0
    assert main(eval_argv(sample_dir, out, "blur", "--shard", "1/3", "--resume", "--no_report")) == 2
    assert "shard: was '0/3', now '1/3'" in capsys.readouterr().err
    assert main(eval_argv(sample_dir, out, "blur", "--shard", "0/3", "--resume", "--no_report")) == 0


def test_shards_through_the_server_merge_to_one_run(triton, small_dir, tmp_path):
    """The same with a served generator (deid_mobileunet_boxes on the real tritonserver): what the Kubernetes
    Indexed Job runs, two shards against one server, then the merge."""
    url = ["--url", triton.grpc_url]
    full, s0, s1, merged = (tmp_path / n for n in ("full", "s0", "s1", "merged"))
    assert main(eval_argv(small_dir, full, "mobileunet", *url, "--no_report")) == 0
    assert main(eval_argv(small_dir, s0, "mobileunet", *url, "--shard", "0/2", "--no_report")) == 0
    assert main(eval_argv(small_dir, s1, "mobileunet", *url, "--shard", "1/2", "--no_report")) == 0
    assert main(["--merge", str(s0), str(s1), "--output_dir", str(merged), "--no_report"]) == 0
    assert results_without_timing(metrics_of(merged)) == results_without_timing(metrics_of(full))
    assert metrics_of(merged)["fid_eff"] == metrics_of(full)["fid_eff"]
    assert {m: v["faces"] > 0 for m, v in metrics_of(full)["fid_eff"]["models"].items()} == {
        "untouched": True, "mobileunet": True}
    skip = TIMING | {"url"}
    ours = {(r["model"], r["key"]): {k: v for k, v in r.items() if k not in skip} for r in rows_of(merged)}
    theirs = {(r["model"], r["key"]): {k: v for k, v in r.items() if k not in skip} for r in rows_of(full)}
    assert ours == theirs and len(ours) == 5
    assert {r["status"] for r in rows_of(merged)} == {"ok"}
    assert metrics_of(merged)["servers"], "the servers' versions are kept"
