"""Smoke test of the benchmark's machinery (eval/benchmark.py) on 2 frames: it runs and reports, no timing asserts."""

from __future__ import annotations

import json
import os

import cv2
import pytest

from facedeid import benchmark
from facedeid.model_config import parse_config
from facedeid.serving import local_server
from facedeid.serving.configs import CPU_DETECTOR_INSTANCES


def test_server_memory_reads_proc():
    mem = local_server.memory_mb(os.getpid())
    assert mem["processes"] >= 1 and mem["peak_mb"] >= mem["rss_mb"] > 0


def test_overrides_are_rendered_by_the_config_renderers():
    configs = benchmark.override_configs("mobileunet", {"gen_threads": 1, "det_threads": 2, "spin": 1,
                                                        "queue_delay_us": 0, "gen_max_batch": 64,
                                                        "gen_instances": 2, "stage_instances": 3})
    gen, det = (parse_config(configs[m]) for m in ("mobileunet", "face_detector"))
    assert gen.max_batch_size == 64 and gen.dynamic_batching.max_queue_delay_microseconds == 0
    # the detector's count is not overridden: the committed default
    assert gen.instance_group[0].count == 2 and det.instance_group[0].count == CPU_DETECTOR_INSTANCES
    assert gen.parameters["threads"].string_value == "1" and det.parameters["threads"].string_value == "2"
    assert gen.parameters["spin"].string_value == det.parameters["spin"].string_value == "1"
    for stage in ("detect_prep", "face_prep", "compose"):
        assert parse_config(configs[stage]).instance_group[0].count == 3
    assert set(benchmark.override_configs("mobileunet", {})) == set()
    with pytest.raises(ValueError, match="unknown overrides"):
        benchmark.override_configs("mobileunet", {"gen_thread": 1})


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


def test_benchmark_measures_video_stability_beside_blur(exported_repo, triton, astronaut, tmp_path):
    """`--temporal`: the generator and blur through the benchmark's server on camera-move clips, in the result and
    its tables."""
    frame = tmp_path / "astronaut.png"
    cv2.imwrite(str(frame), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    result = benchmark.run("mobileunet", modes=("triton",), repeats=1, concurrency=(1,), url=triton.grpc_url,
                           repository=exported_repo[0], server_pid=triton.process.pid, flops_generators=[],
                           workdir=tmp_path / "work", frame_files=[str(frame)], admin_key=triton.admin_key,
                           temporal_frames=4, log=lambda *_: None)
    measured = result["temporal"]["models"]
    assert set(measured) == {"mobileunet", "blur"}
    for summary in measured.values():
        assert summary["pairs"] > 0 and summary["input_change"] > 0 and "per_face" not in summary
    assert measured["blur"]["jumps"] == 0  # the stability ceiling
    text = benchmark.markdown(result)
    assert "Face stability in video" in text and "| blur |" in text and "| mobileunet |" in text
    json.dumps(result)


def test_cli_rejects_temporal_without_a_server():
    with pytest.raises(SystemExit):
        benchmark.main(["--modes", "eager", "--temporal"])


def test_cli_rejects_unknown_modes():
    with pytest.raises(SystemExit):
        benchmark.main(["--modes", "nonsense"])
