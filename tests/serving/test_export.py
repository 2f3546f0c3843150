"""Export: ONNX parity with PyTorch for all three generators, strict checkpoints, the untrained guard."""

from __future__ import annotations

import onnx
import pytest
import torch

from facedeid import export
from facedeid.models import GENERATORS, UntrainedModelError
from facedeid.serving.configs import all_configs
from facedeid.serving.repository import DEFAULT_REPOSITORY


def test_parity_for_all_generators(exported_repo):
    repo, results = exported_repo
    assert {r.model for r in results} == set(GENERATORS) | {"ksame"}
    for result in results:
        assert result.fmt == ("bank" if result.model == "ksame" else "onnx") and result.ok, result
        assert result.max_abs <= export.ONNX_TOLERANCE
    for name in GENERATORS:
        model = onnx.load(str(repo / name / "1" / "model.onnx"))
        onnx.checker.check_model(model)
        batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
        assert batch_dim.dim_param, "batch axis must be dynamic"
    print("\n" + export.parity_table(results))


def test_parity_check_rejects_a_mismatch():
    assert not export.ParityResult("m", "onnx", 1, 2e-4, 1e-4).ok
    assert not export.ParityResult("m", "onnx", 1, float("nan"), 1e-4).ok
    assert export.ParityResult("m", "onnx", 1, 5e-5, 1e-4).ok


def test_untrained_export_refuses_without_flag(tmp_path, monkeypatch):
    monkeypatch.setattr("facedeid.models.registry.WEIGHTS_DIR", tmp_path)  # a registry with no checkpoints
    with pytest.raises(UntrainedModelError, match="--allow-untrained"):
        GENERATORS["mobileunet"].load()
    assert export.main(["--model", "mobileunet", "--repository", str(tmp_path / "repo")]) == 1


def test_checkpoint_loading_is_strict(tmp_path):
    spec = GENERATORS["d2gan"]
    state = spec.build().state_dict()
    state.pop(next(iter(state)))
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(RuntimeError, match="Missing key"):
        spec.load(checkpoint=tmp_path / "partial.pt")
    with pytest.raises(FileNotFoundError):
        spec.load(checkpoint=tmp_path / "absent.pt")


def test_unknown_model_is_a_clear_error(capsys):
    assert export.main(["--model", "stylegan"]) == 1
    assert "unknown generator 'stylegan'" in capsys.readouterr().err


def test_without_tensorrt_auto_selects_the_cpu_config():
    if export.tensorrt_status() is None:
        pytest.skip("TensorRT and a GPU are present: auto selects tensorrt here")
    assert export.resolve_backend("auto") == "python"
    with pytest.raises(export.ExportError, match="tensorrt requested"):
        export.resolve_backend("tensorrt")


def test_committed_configs_are_the_rendered_ones():
    for name, text in all_configs("python").items():
        assert (DEFAULT_REPOSITORY / name / "config.pbtxt").read_text() == text, name


@pytest.mark.parametrize("backend, marker", [("onnxruntime", 'backend: "onnxruntime"'),
                                             ("tensorrt", 'platform: "tensorrt_plan"')])
def test_gpu_configs_keep_tensor_names(backend, marker):
    cpu, gpu = all_configs("python"), all_configs(backend)
    for name in GENERATORS:
        assert marker in gpu[name]
        assert "KIND_GPU" in gpu[name] and "dynamic_batching" in gpu[name]
        for tensor in ('name: "INPUT"', 'name: "OUTPUT"', "dims: [ 3, 128, 128 ]"):
            assert tensor in cpu[name] and tensor in gpu[name]


@pytest.mark.skipif(export.tensorrt_status() is not None, reason="needs TensorRT and an NVIDIA GPU")
def test_tensorrt_plan_parity(exported_repo, tmp_path):
    repo, _ = exported_repo
    for name in GENERATORS:
        plan, results = export.build_tensorrt(name, repo / name / "1" / "model.onnx", tmp_path, allow_untrained=True)
        assert plan.exists() and all(r.ok for r in results), results
