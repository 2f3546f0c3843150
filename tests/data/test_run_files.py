"""YAML configs (config/*.yml) as defaults for the evaluation's flags, with a strict schema
(facedeid.evaluation.run_files)."""

from __future__ import annotations

import argparse
import io
import textwrap
from pathlib import Path

import pytest

from facedeid.detection import DEFAULT_THRESHOLD
from facedeid.evaluation.run_files import FIELDS, RunFileError, load_run_file, parse_args_with_run_file

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
SHIPPED = {
    "config_inversion_mobileunet_dna.yml": "mobileunet",
    "config_inversion_resnet50unet_dna.yml": "resnet50unet",
    "config_d2gan_dna.yml": "d2gan",
}

# a file in the original research code's nested layout, with a few flat fields the schema knows
ORIGINAL = """
infer:
  device: 0
  model:
    inverter:
      model_name: ResNet50UNet
      input_size: 224
train:
  lr: 0.0002
model: resnet50unet
input_size: 224
batch_size: 8
dataset_dir: /dataset/dna_frame/
output_dir: /dataset/result/resnet50unet
save: true
reid_threshold: 0.6
det_threshold: 0.5
colour: blue
"""


def write(tmp_path, text, name="c.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def eval_like_parser() -> argparse.ArgumentParser:
    """The flags of eval/triton_eval.py that a config can set (see facedeid.evaluation.cli.build_parser)."""
    p = argparse.ArgumentParser(prog="triton_eval.py")
    p.add_argument("--dataset_dir", required=True, type=Path)
    p.add_argument("--model", required=True)
    p.add_argument("--output_dir", required=True, type=Path)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--url", action="append", default=None)
    p.add_argument("--save", action="store_true")
    p.add_argument("--threshold", type=float, default=None)
    return p


@pytest.mark.parametrize("name, model", sorted(SHIPPED.items()))
def test_shipped_configs_map_cleanly(name, model):
    values, notes = load_run_file(CONFIG_DIR / name)
    assert notes == []
    assert values["model"] == model and values["batch_size"] == 16
    assert values["reid_threshold"] == 0.6 and values["det_threshold"] == DEFAULT_THRESHOLD


def test_shipped_configs_use_only_schema_fields():
    import yaml

    for name in SHIPPED:
        assert set(yaml.safe_load((CONFIG_DIR / name).read_text())) <= set(FIELDS)


def test_unknown_fields_are_reported_not_used(tmp_path):
    values, notes = load_run_file(write(tmp_path, ORIGINAL))
    assert values == {"model": "resnet50unet", "batch_size": 8, "dataset_dir": "/dataset/dna_frame/",
                      "output_dir": "/dataset/result/resnet50unet", "save": True, "reid_threshold": 0.6,
                      "det_threshold": 0.5}
    text = "\n".join(notes)
    for key in ("infer", "train", "colour"):
        assert f"{key}: unknown field, not used" in text
    assert "input_size: 224 not applied" in text and "uses 128x128" in text
    assert len(notes) == 4  # every field not applied as given is named once


def test_bad_values_stop_with_the_file_and_field(tmp_path):
    with pytest.raises(RunFileError, match="unknown model 'unet3000'"):
        load_run_file(write(tmp_path, "model: unet3000\n"))
    with pytest.raises(RunFileError, match="batch_size"):
        load_run_file(write(tmp_path, "batch_size: many\n"))
    with pytest.raises(RunFileError, match="save"):
        load_run_file(write(tmp_path, "save: maybe\n"))
    with pytest.raises(RunFileError, match="not valid YAML"):
        load_run_file(write(tmp_path, "model: [d2gan\n"))
    with pytest.raises(RunFileError, match="mapping"):
        load_run_file(write(tmp_path, "- model\n"))
    with pytest.raises(FileNotFoundError):
        load_run_file(tmp_path / "missing.yml")
    assert load_run_file(write(tmp_path, "model: mobileunet, blur\n"))[0]["model"] == "mobileunet,blur"


def test_config_values_are_defaults_flags_win(tmp_path):
    path = write(tmp_path, ORIGINAL)
    err = io.StringIO()
    args, notes = parse_args_with_run_file(eval_like_parser(), ["--config", str(path), "--batch_size", "4"], err)
    assert args.model == "resnet50unet" and args.batch_size == 4 and args.save is True
    assert args.dataset_dir == Path("/dataset/dna_frame/") and args.url is None
    assert "colour: unknown field" in err.getvalue() and "train: unknown field" in err.getvalue()
    # 0.6: the evaluation's own; 0.5 (the seed's): above the product's detection threshold, so not applied
    assert not any(n.startswith(("reid_threshold", "threshold")) for n in notes)
    assert [n for n in notes if n.startswith("det_threshold")] == [
        f"det_threshold: 0.5 not applied: above the product's detection threshold {DEFAULT_THRESHOLD} it would leave "
        f"faces scoring {DEFAULT_THRESHOLD}-0.5 untouched; the run detects at {DEFAULT_THRESHOLD} as `facedeid run` "
        "does (give --threshold 0.5 to choose otherwise)"]
    assert args.threshold is None  # the server's default: the product's detection
    args, _ = parse_args_with_run_file(eval_like_parser(), ["--config", str(path), "--threshold", "0.5"], err)
    assert args.threshold == 0.5  # a leakier detector only when typed
    cautious = write(tmp_path, "det_threshold: 0.1\n", "cautious.yml")
    args, notes = parse_args_with_run_file(eval_like_parser(), ["--config", str(cautious), "--dataset_dir", "d",
                                                              "--model", "blur", "--output_dir", "o"], err)
    # a file never changes detection, not even towards more faces: one line says so and how to choose it
    assert args.threshold is None and notes == [
        f"det_threshold: 0.1 not applied: the run detects at the product's {DEFAULT_THRESHOLD} as `facedeid run` "
        "does (give --threshold 0.1 to anonymise more faces than the product)"]
    same = write(tmp_path, f"det_threshold: {DEFAULT_THRESHOLD}\n", "same.yml")
    args, notes = parse_args_with_run_file(eval_like_parser(), ["--config", str(same), "--dataset_dir", "d",
                                                              "--model", "blur", "--output_dir", "o"], err)
    assert args.threshold is None and notes == []  # the product's value: accepted, nothing to say

    other = write(tmp_path, "model: d2gan\nreid_threshold: 0.5\nurl: [a:8001, b:8001]\n", "o.yml")
    args, notes = parse_args_with_run_file(eval_like_parser(), [f"--config={other}", "--dataset_dir", "d",
                                                              "--output_dir", "o", "--url", "c:8001"], err)
    assert args.url == ["c:8001"]  # a flag replaces the config's list, it does not add to it
    assert any("reid_threshold: 0.5 not applied" in n and "0.6" in n for n in notes)

    args, _ = parse_args_with_run_file(eval_like_parser(), ["--config", str(other), "--dataset_dir", "d",
                                                          "--output_dir", "o"], err)
    assert args.url == ["a:8001", "b:8001"] and args.model == "d2gan"


def test_without_config_and_missing_required(tmp_path, capsys):
    args, notes = parse_args_with_run_file(eval_like_parser(), ["--dataset_dir", "d", "--model", "blur",
                                                              "--output_dir", "o"])
    assert notes == [] and args.model == "blur" and args.config is None
    with pytest.raises(SystemExit):  # the config gives no dataset_dir: still required
        parse_args_with_run_file(eval_like_parser(), ["--config", str(CONFIG_DIR / "config_d2gan_dna.yml")])
    assert "--dataset_dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args_with_run_file(eval_like_parser(), ["--config", str(tmp_path / "nope.yml")])
    assert "does not exist" in capsys.readouterr().err


def test_eval_cli_parser_accepts_shipped_configs():
    from facedeid.evaluation import cli as eval_cli
    for name, model in SHIPPED.items():
        args, notes = parse_args_with_run_file(eval_cli.build_parser(), ["--config", str(CONFIG_DIR / name),
                                                                     "--dataset_dir", "data"], io.StringIO())
        assert args.model == model and args.batch_size == 16 and args.output_dir == Path(f"runs/eval/{model}")
        assert notes == []
