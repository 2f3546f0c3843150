"""Smoke test of the benchmark's machinery (eval/benchmark.py) on 2 frames: it runs and reports, no timing asserts."""

from __future__ import annotations

import json
import os
import shutil

import cv2
import pytest

from facedeid import benchmark
from facedeid.serving.repository import DEFAULT_REPOSITORY


def test_server_memory_reads_proc():
    mem = benchmark.server_memory_mb(os.getpid())
    assert mem["processes"] >= 1 and mem["peak_mb"] >= mem["rss_mb"] > 0


def test_patch_configs_applies_overrides(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(DEFAULT_REPOSITORY, repo, ignore=shutil.ignore_patterns("*.onnx", "*.plan", "__pycache__"))
    benchmark.patch_configs(repo, "mobileunet", {"gen_threads": 1, "det_threads": 1, "spin": 0, "queue_delay_us": 0,
                                                 "gen_max_batch": 64, "gen_instances": 2})
    text = (repo / "mobileunet" / "config.pbtxt").read_text()
    assert "max_batch_size: 64" in text and "max_queue_delay_microseconds: 0" in text and "count: 2" in text
    assert benchmark.config_param(repo, "mobileunet", "threads", "x") == "1"
    assert benchmark.config_param(repo, "face_detector", "spin", "x") == "0"


def test_benchmark_runs_on_two_frames(exported_repo, triton, astronaut, tmp_path):
    frame = tmp_path / "astronaut.png"
    cv2.imwrite(str(frame), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    result = benchmark.run("mobileunet", modes=("eager", "onnxruntime", "triton", "blur640"), repeats=1,
                           concurrency=(1, 2), url=triton.grpc_url, repository=exported_repo[0],
                           server_pid=triton.process.pid, flops_generators=["mobileunet"],
                           workdir=tmp_path / "work", frame_files=[str(frame)] * 2, matmul_n=256, flops_batch=1,
                           admin_key=triton.admin_key, log=lambda *_: None)
    rows = {r["label"]: r for r in result["summary"]["table"]}
    assert set(rows) == {"eager", "onnxruntime", "triton c=1", "triton c=2", "blur640"}
    for row in rows.values():
        assert row["fps"] > 0 and row["p95_ms"] >= row["p50_ms"] > 0 and row["client_peak_mb"] > 0
        assert row["faces_per_frame"] == 1  # the astronaut: every mode detects the same one face
    assert rows["eager"]["ratio_to_eager"] == 1.0
    assert rows["triton c=1"]["server_peak_mb"] > 0
    gen = result["summary"]["generators"][0]
    assert gen["generator"] == "mobileunet" and gen["gflops_per_face"] > 0 and 0 < gen["onnxruntime_share_of_peak"]
    assert {b["label"] for b in result["summary"]["batching"]} == {"triton c=1", "triton c=2"}
    assert any(s["model"] == "mobileunet" for s in result["summary"]["stages"])
    text = benchmark.markdown(result)
    assert "| triton c=2 |" in text and "GFLOPs/face" in text
    json.dumps(result)  # the CLI writes it as JSON


def test_cli_rejects_unknown_modes():
    with pytest.raises(SystemExit):
        benchmark.main(["--modes", "nonsense"])
