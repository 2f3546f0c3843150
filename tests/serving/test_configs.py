"""Per-platform model configurations: config.pbtxt (CPU default) and configs/gpu.pbtxt (Triton custom configs).

Both variants are rendered, parsed by Triton's own protobuf schema (model_config_pb2) and compared with what is
committed; a CPU export in a scratch copy of the checkout, and rendering the GPU variant there, change no committed
file. The GPU variant cannot be loaded here (no GPU, no TensorRT): that is checked on a GPU host (docs/deploy.md).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from facedeid.detection import CPU_DET_SIZE, CPU_FULL_SIZE, DEFAULT_MAX_SIDE, MIN_FACE
from facedeid.models import GENERATORS
from facedeid.serving import configs, gpu_configs
from facedeid.serving import tritonserver_cli as server
from facedeid.serving.repository import DEFAULT_REPOSITORY, check_model_config_name, write_custom_configs

ROOT = DEFAULT_REPOSITORY.parent
KIND = model_config_pb2.ModelInstanceGroup.Kind


def parsed(text: str):
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def tensors(config) -> list[tuple]:
    return [(t.name, t.data_type, list(t.dims)) for t in (*config.input, *config.output)]


def test_committed_gpu_configs_are_the_rendered_ones():
    rendered = gpu_configs.gpu_configs("tensorrt")
    committed = {p.parent.parent.name: p for p in DEFAULT_REPOSITORY.glob("*/configs/*.pbtxt")}
    assert set(committed) == set(rendered), "every model that differs on a GPU has configs/gpu.pbtxt, no other"
    assert {p.name for p in committed.values()} == {"gpu.pbtxt"}
    regenerate = ('python -c "from facedeid.serving.repository import write_configs, write_custom_configs; '
                  'write_configs(); write_custom_configs()"')
    for name, text in rendered.items():
        assert committed[name].read_text() == text, f"{name}/configs/gpu.pbtxt is stale: {regenerate}"


@pytest.mark.parametrize("generator_backend", gpu_configs.GPU_GENERATOR_BACKENDS)
def test_both_variants_parse_and_keep_the_interface(generator_backend):
    cpu = {name: parsed(text) for name, text in configs.all_configs("python").items()}
    gpu = {name: parsed(text) for name, text in gpu_configs.gpu_configs(generator_backend).items()}
    assert {n for n, c in cpu.items() if c.platform == "ensemble"}.isdisjoint(gpu), "ensembles have no GPU variant"
    for name, config in gpu.items():
        base = cpu[name]
        assert config.name == name and tensors(config) == tensors(base), name
        assert config.max_batch_size == base.max_batch_size, name
    for name in GENERATORS:
        g = gpu[name]
        expected = [(KIND.Value("KIND_GPU"), configs.GPU_GENERATOR_INSTANCES)]
        assert [(i.kind, i.count) for i in g.instance_group] == expected
        if generator_backend == "tensorrt":
            assert (g.platform, g.backend, g.default_model_filename) == ("tensorrt_plan", "", "model.plan")
        else:
            assert (g.platform, g.backend, g.default_model_filename) == ("", "onnxruntime", "model.onnx")
        assert not g.parameters, "ONNX Runtime thread settings of the Python backend do not apply on the GPU"
        assert g.dynamic_batching.max_queue_delay_microseconds > 0
        assert sorted(w.batch_size for w in g.model_warmup) == list(configs.GPU_WARMUP_BATCHES)
        assert max(configs.GPU_WARMUP_BATCHES) <= g.max_batch_size
    det = gpu[configs.DETECTOR]
    assert (det.backend, det.instance_group[0].kind) == ("onnxruntime", KIND.Value("KIND_GPU"))
    assert det.model_warmup and all(w.batch_size == 1 for w in det.model_warmup)
    for stage in ("detect_prep", "face_prep", "box_prep", "compose"):
        assert gpu[stage].backend == "python" and gpu[stage].instance_group[0].kind == KIND.Value("KIND_CPU")
        assert gpu[stage].instance_group[0].count == configs.GPU_STAGE_INSTANCES
        detection = {"det_size", "full_size"}  # GPU hosts detect natively, the CPU configs cap both passes
        assert ({k: v for k, v in gpu[stage].parameters.items() if k not in detection}
                == {k: v for k, v in cpu[stage].parameters.items() if k not in detection})
        if stage in ("detect_prep", "face_prep"):
            assert gpu[stage].parameters["full_size"].string_value == "0"
            assert gpu[stage].parameters["det_size"].string_value == str(DEFAULT_MAX_SIDE)
            assert cpu[stage].parameters["full_size"].string_value == str(CPU_FULL_SIZE)
            assert cpu[stage].parameters["det_size"].string_value == str(CPU_DET_SIZE)
            # both configs keep 24 px faces (the cap yields to min_face) and detect upright unless asked (ROTATIONS)
            for config in (cpu[stage], gpu[stage]):
                assert config.parameters["min_face"].string_value == str(MIN_FACE)
                assert config.parameters["rotations"].string_value == "0"


def test_roll_interface_is_optional_and_backward_compatible():
    """ROTATIONS (detect ensembles) and ROLL_IN (boxes ensembles) are optional inputs; ROLL is a new output; every
    input and output that existed before keeps its name, type and shape."""
    cpu = {name: parsed(text) for name, text in configs.all_configs("python").items()}
    for name in GENERATORS:
        detect, boxes = cpu[f"deid_{name}"], cpu[f"deid_{name}_boxes"]
        ins = {t.name: t for t in detect.input}
        assert ins["ROTATIONS"].optional and list(ins["ROTATIONS"].dims) == [1]
        assert [t.name for t in detect.input if not t.optional] == ["FRAME"]
        assert [t.name for t in detect.output] == ["DEID_FRAME", "BOXES", "BLUR_BOXES", "LANDMARKS", "ROLL"]
        assert [(t.name, t.optional) for t in boxes.input][:4] == [("FRAME", False), ("BOXES_IN", False),
                                                                  ("ROLL_IN", True), ("BLUR_BOXES_IN", True)]
        assert [t.name for t in boxes.output][:3] == ["DEID_FRAME", "BOXES", "ROLL"]
    compose = {t.name: t for t in cpu["compose"].input}
    assert compose["ROLL"].optional and compose["BLUR_BOXES"].optional
    assert list(next(t for t in cpu["detect_prep"].output if t.name == "IMAGE_SMALL").dims) == [-1, 3, -1, -1]


def test_track_inputs_only_where_a_generator_has_a_choice():
    """DONOR/DONOR_USED only on ksame's chain; BLUR_BOXES_IN on every _boxes ensemble; detect_faces only detects."""
    cpu = {name: parsed(text) for name, text in configs.all_configs("python").items()}
    for name in ("mobileunet", "resnet50unet", "d2gan", "ksame"):
        boxes = cpu[f"deid_{name}_boxes"]
        names = {t.name for t in boxes.input}
        assert "BLUR_BOXES_IN" in names and [t.optional for t in boxes.input if t.name == "BLUR_BOXES_IN"] == [True]
        has_donor = name in configs.DONOR_GENERATORS
        assert ("DONOR" in names) == has_donor, name
        assert ("DONOR_USED" in {t.name for t in boxes.output}) == has_donor, name
        assert ("DONOR" in {t.name for t in cpu[f"generate_{name}"].input}) == has_donor, name
    detect = cpu[configs.DETECT_ENSEMBLE]
    assert [s.model_name for s in detect.ensemble_scheduling.step] == [
        "detect_prep", configs.DETECTOR, configs.DETECTOR, "face_prep"]
    assert {t.name for t in detect.output} == {"BOXES", "BLUR_BOXES", "LANDMARKS", "ROLL"}


def test_cpu_default_instances_and_warmup():
    cpu = {name: parsed(text) for name, text in configs.all_configs("python").items()}
    for stage in ("detect_prep", "face_prep", "box_prep", "compose"):
        assert cpu[stage].instance_group[0].count == configs.CPU_STAGE_INSTANCES >= 2
    assert cpu[configs.DETECTOR].instance_group[0].count == configs.CPU_DETECTOR_INSTANCES >= 2
    for name in (*GENERATORS, configs.DETECTOR):
        warm = cpu[name].model_warmup
        assert warm and all(next(iter(w.inputs.values())).zero_data for w in warm), name
        assert all(0 not in next(iter(w.inputs.values())).dims for w in warm), "warmup shapes are concrete"


def test_parser_rejects_what_triton_would():
    with pytest.raises(text_format.ParseError):
        gpu_configs.parse_config('name: "x"\ninstance_group [ { kind: KIND_GPU cuont: 1 } ]\n')
    with pytest.raises(ValueError, match="onnxruntime"):
        gpu_configs.gpu_configs("openvino")


def test_unknown_config_name_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown model configuration 'gpu2'"):
        gpu_configs.custom_configs("gpu2")
    with pytest.raises(ValueError, match=r"no model in .* has configs/gpux\.pbtxt \(available: gpu\)"):
        check_model_config_name(DEFAULT_REPOSITORY, "gpux")
    check_model_config_name(DEFAULT_REPOSITORY, "gpu")
    # The `tritonserver` command refuses before starting the server (which would fall back to config.pbtxt).
    with pytest.raises(ValueError, match="gpux"):
        server.build_command([f"--model-repository={DEFAULT_REPOSITORY}", "--model-config-name=gpux"])
    out = subprocess.run([sys.executable, "-m", "facedeid.serving.tritonserver_cli",
                          f"--model-repository={DEFAULT_REPOSITORY}", "--model-config-name", "gpux"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "configs/gpux.pbtxt" in out.stderr
    cmd = server.build_command([f"--model-repository={DEFAULT_REPOSITORY}", "--model-config-name=gpu"])
    assert "--model-config-name=gpu" in cmd


def _tracked_copy(target: Path) -> Path:
    """A scratch git repository holding this checkout's tracked files as they are now, committed."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target / rel)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=target, check=True)
    subprocess.run([*git, "add", "-A"], cwd=target, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "scratch"], cwd=target, check=True)
    return target


def _status(repo: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout


def test_export_and_gpu_configs_leave_a_checkout_clean(tmp_path):
    clone = _tracked_copy(tmp_path / "clone")
    out = subprocess.run([sys.executable, str(clone / "export" / "to_trt.py"), "--model", "mobileunet",
                          "--repository", str(clone / "model_repository")],
                         cwd=clone, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    assert (clone / "model_repository" / "mobileunet" / "1" / "model.onnx").is_file()
    assert _status(clone) == "", "the CPU export changed committed files"
    # What a TensorRT export writes besides the plans (the plans themselves need a GPU):
    written = write_custom_configs(clone / "model_repository", "gpu", "tensorrt")
    assert len(written) == len(gpu_configs.gpu_configs())
    assert _status(clone) == "", "the GPU configs differ from the committed ones"
    # The ONNX Runtime GPU variant is a different file content, and git shows it (nothing silently overwritten).
    write_custom_configs(clone / "model_repository", "gpu", "onnxruntime", models=["mobileunet"])
    assert _status(clone).split() == ["M", "model_repository/mobileunet/configs/gpu.pbtxt"]


def test_the_server_serves_the_named_configuration(exported_repo, tmp_path, astronaut):
    """tritonserver 2.51 with --model-config-name=gpu loads configs/gpu.pbtxt where a model has one and falls back to
    config.pbtxt elsewhere. On this CPU-only server that is checked with the models whose GPU variant runs on CPUs
    (the Python stages, generate_<gen> among them: more instances); the generator is copied without its configs/
    (its GPU variant needs TensorRT), and the ensemble has none."""
    import tritonclient.grpc as grpcclient

    from facedeid.serving import local_server

    from helpers import ASTRONAUT_FACE, deid

    repo = tmp_path / "repo"
    for model in ("box_prep", "compose", "generate_mobileunet", "deid_mobileunet_boxes"):
        shutil.copytree(exported_repo[0] / model, repo / model)
    shutil.copytree(exported_repo[0] / "mobileunet", repo / "mobileunet", ignore=shutil.ignore_patterns("configs"))
    with local_server.running(repo, tmp_path / "server.log", extra_args=["--model-config-name=gpu"]) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        for stage in ("box_prep", "compose", "generate_mobileunet"):
            (group,) = client.get_model_config(stage, headers=server.admin_headers).config.instance_group
            assert (group.kind, group.count) == (KIND.Value("KIND_CPU"), configs.GPU_STAGE_INSTANCES), stage
        (group,) = client.get_model_config("mobileunet", headers=server.admin_headers).config.instance_group
        assert group.count == 1 and group.kind == KIND.Value("KIND_CPU"), "fallback to config.pbtxt"
        _, boxes = deid(client, "deid_mobileunet_boxes", astronaut, ASTRONAUT_FACE[None])
        assert len(boxes) == 1
