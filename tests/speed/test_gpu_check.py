"""The GPU check's CPU smoke run: the same command a lent GPU machine runs (facedeid bench gpu-check), at tiny sizes
(every section runs: a shared CPU's load must not skip any), writes every section of its JSON and its table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FACEDEID = Path(sys.executable).parent / "facedeid"


def test_gpu_check_smoke_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([str(FACEDEID), "bench", "gpu-check", "--smoke", "--device", "cpu", "--guard-s", "90",
                           "--json", str(out), "--markdown", str(tmp_path / "gpu_check.md")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["smoke"] and not result["skipped"]
    rates = result["generators"]["faces_per_s"]["mobileunet/fp32"]
    assert set(rates) == {"1", "2"} and all(v > 0 for v in rates.values())
    err = result["generators"]["error_vs_fp32"]["mobileunet/fp16"]
    assert 0 < err["max_abs"] < result["generators"]["trt_fp16_tolerance"]  # fp16 differs, within TensorRT's bound
    assert result["detector"]["180p"]["network_ms"] > 0
    fps = result["end_to_end"]["frames_per_s"]
    assert {"ksame/cpu", "mobileunet/cpu", "deface/cpu"} <= set(fps)
    assert fps["mobileunet/cpu"]["generated_faces"] >= 1  # the pasted faces are found and generated
    assert all(result["stages"][f"{s}_ms"] > 0 for s in ("detect_prep", "face_prep", "compose"))
    table = (tmp_path / "gpu_check.md").read_text()
    assert "mobileunet/fp32" in table and "deface/cpu" in table and "compose" in table


def test_gpu_check_refuses_cuda_without_a_device():
    proc = subprocess.run([str(FACEDEID), "bench", "gpu-check", "--device", "cuda"], capture_output=True, text=True,
                          timeout=120)
    import torch

    if not torch.cuda.is_available():
        assert proc.returncode == 2 and "sees no CUDA device" in proc.stderr and "Traceback" not in proc.stderr
