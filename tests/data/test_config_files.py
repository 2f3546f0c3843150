"""The original research YAML configs mapped onto the evaluation's flags (facedeid.config_files)."""

from __future__ import annotations

import argparse
import io
import textwrap
from pathlib import Path

import pytest

from facedeid.config_files import ConfigError, load_config, parse_args_with_config, resolve_model

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
SHIPPED = {
    "config_inversion_mobileunet_dna.yml": "mobileunet",
    "config_inversion_resnet50unet_dna.yml": "resnet50unet",
    "config_d2gan_dna.yml": "d2gan",
}

# the layout of the original research code: tools/evel/eval_deid_inversion.py read config['infer']['model']
ORIGINAL = """
infer:
  device: 0
  model:
    inverter:
      model_name: ResNet50UNet
      model_path: /workspace/weights/resnet50unet.pth
      input_size: 224
    feature:
      model_name: ResNet50
      model_path: /workspace/weights/feature.pth
      input_size: 224
train:
  lr: 0.0002
  epochs: 200
  optimizer: adam
batch_size: 8
dataset_dir: /dataset/dna_frame/
output_dir: /dataset/result/resnet50unet
save_images: true
reid_threshold: 0.6
face_threshold: 0.5
colour: blue
"""


def write(tmp_path, text, name="c.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def eval_like_parser() -> argparse.ArgumentParser:
    """The flags of eval/triton_eval.py that a config can set (see facedeid.evaluation.runner.build_parser)."""
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
    values, notes = load_config(CONFIG_DIR / name)
    assert notes == []
    assert values["model"] == model and values["batch_size"] == 16
    assert values["reid_threshold"] == 0.6 and values["det_threshold"] == 0.5


def test_original_layout(tmp_path):
    values, notes = load_config(write(tmp_path, ORIGINAL))
    assert values == {"model": "resnet50unet", "batch_size": 8, "dataset_dir": "/dataset/dna_frame/",
                      "output_dir": "/dataset/result/resnet50unet", "save": True, "reid_threshold": 0.6,
                      "det_threshold": 0.5}
    text = "\n".join(notes)
    for field in ("train.lr", "train.epochs", "train.optimizer"):
        assert f"{field}: ignored (training-only" in text
    assert "infer.model.inverter.model_path: ignored (a research PyTorch checkpoint" in text
    assert "infer.device: ignored" in text
    assert "infer.model.feature.model_name: ignored" in text
    assert "infer.model.inverter.input_size: 224 not applied" in text and "uses 128x128" in text
    assert "colour: unknown field" in text
    assert len(notes) == 10  # every field not applied as given is named once


def test_flat_training_fields_and_bad_values(tmp_path):
    _, notes = load_config(write(tmp_path, "model: d2gan\nlr: 0.1\nepochs: 3\nlambda_l1: 10\n"))
    assert sorted(n.split(":")[0] for n in notes) == ["epochs", "lambda_l1", "lr"]
    assert all("training-only" in n for n in notes)
    with pytest.raises(ConfigError, match="unknown model 'unet3000'"):
        load_config(write(tmp_path, "model: unet3000\n"))
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(write(tmp_path, "batch_size: many\n"))
    with pytest.raises(ConfigError, match="disagree"):
        load_config(write(tmp_path, "model: d2gan\narch: mobileunet\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "model: [d2gan\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- model\n"))
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yml")


def test_model_names():
    assert [resolve_model(n) for n in ("MobileUNet", "mobile_unet", "ResNet50UNet", "D2GAN", "ResnetGenerator")] \
        == ["mobileunet", "mobileunet", "resnet50unet", "d2gan", "d2gan"]
    assert resolve_model("vgg16") is None


def test_config_values_are_defaults_flags_win(tmp_path):
    path = write(tmp_path, ORIGINAL)
    err = io.StringIO()
    args, notes = parse_args_with_config(eval_like_parser(), ["--config", str(path), "--batch_size", "4"], err)
    assert args.model == "resnet50unet" and args.batch_size == 4 and args.save is True
    assert args.dataset_dir == Path("/dataset/dna_frame/") and args.url is None
    assert "colour: unknown field" in err.getvalue() and "train.lr: ignored" in err.getvalue()
    assert not any("threshold" in n for n in notes)  # 0.6: the evaluation's own; 0.5: applied as --threshold
    assert args.threshold == 0.5

    other = write(tmp_path, "model: d2gan\nreid_threshold: 0.5\nurl: [a:8001, b:8001]\n", "o.yml")
    args, notes = parse_args_with_config(eval_like_parser(), [f"--config={other}", "--dataset_dir", "d",
                                                              "--output_dir", "o", "--url", "c:8001"], err)
    assert args.url == ["c:8001"]  # a flag replaces the config's list, it does not add to it
    assert any("reid_threshold: 0.5 not applied" in n and "0.6" in n for n in notes)

    args, _ = parse_args_with_config(eval_like_parser(), ["--config", str(other), "--dataset_dir", "d",
                                                          "--output_dir", "o"], err)
    assert args.url == ["a:8001", "b:8001"] and args.model == "d2gan"


def test_without_config_and_missing_required(tmp_path, capsys):
    args, notes = parse_args_with_config(eval_like_parser(), ["--dataset_dir", "d", "--model", "blur",
                                                              "--output_dir", "o"])
    assert notes == [] and args.model == "blur" and args.config is None
    with pytest.raises(SystemExit):  # the config gives no dataset_dir: still required
        parse_args_with_config(eval_like_parser(), ["--config", str(CONFIG_DIR / "config_d2gan_dna.yml")])
    assert "--dataset_dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args_with_config(eval_like_parser(), ["--config", str(tmp_path / "nope.yml")])
    assert "does not exist" in capsys.readouterr().err


def test_eval_cli_parser_accepts_shipped_configs():
    runner = pytest.importorskip("facedeid.evaluation.runner")
    for name, model in SHIPPED.items():
        args, notes = parse_args_with_config(runner.build_parser(), ["--config", str(CONFIG_DIR / name),
                                                                     "--dataset_dir", "data"], io.StringIO())
        assert args.model == model and args.batch_size == 16 and args.output_dir == Path(f"runs/eval/{model}")
        assert notes == []
