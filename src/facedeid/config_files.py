"""The original research YAML configs (`--config config/config_inversion_mobileunet_dna.yml`) mapped onto the
evaluation's command-line flags.

Values from the file are defaults: a flag given on the command line wins. Every field is accounted for:
* mapped   - model name, batch size, data/output folders, saving, server address, thresholds, ...;
* ignored  - with the reason: training-only fields (lr, epochs, optimizer, ...), research checkpoints and devices,
             the feature / face-detector sub-models of the original (the product has its own);
* changed  - a value the product cannot honour, e.g. `input_size: 224` (the served generator uses 128x128 crops);
* unknown  - anything else: reported as a warning, never silently dropped.

Both layouts are read: the flat one shipped in config/ (`model: mobileunet`, `batch_size: 16`, ...) and the
original nested one (`infer: {device: 0, model: {inverter: {model_name: MobileUNet, model_path: ..., input_size:
224}, feature: {...}}}`, `train: {...}`). See docs/data_tools.md ("Original configs").

    values, notes = load_config("config/config_d2gan_dna.yml")        # dict of flag values, list of messages
    args, notes = parse_args_with_config(parser, argv)                  # wire --config into any argparse CLI
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

GENERATOR_NAMES = ("mobileunet", "resnet50unet", "d2gan")
SERVED_SIZE = 128  # fallback when facedeid.models cannot be imported; the registry is the truth

# normalised (lower-case, alphanumerics only) model names of the original code and of this product
MODEL_ALIASES = {
    "mobileunet": "mobileunet", "mobilenetunet": "mobileunet", "mobilenetv2unet": "mobileunet",
    "inversionmobileunet": "mobileunet", "mobilenetv2": "mobileunet", "mobilenet": "mobileunet",
    "resnet50unet": "resnet50unet", "resnetunet": "resnet50unet", "resunet50": "resnet50unet",
    "inversionresnet50unet": "resnet50unet", "resnet50": "resnet50unet",
    "d2gan": "d2gan", "dualdiscriminatorgan": "d2gan", "resnetgenerator": "d2gan", "d2ganresnetgenerator": "d2gan",
}

# key (normalised: lower case, '-' -> '_') -> flag dest
MAPPED = {
    "batch_size": "batch_size", "batch": "batch_size", "test_batch_size": "batch_size", "eval_batch_size": "batch_size",
    "dataset_dir": "dataset_dir", "data_dir": "dataset_dir", "dataset": "dataset_dir", "data_root": "dataset_dir",
    "test_dir": "dataset_dir", "eval_dir": "dataset_dir", "dataset_path": "dataset_dir",
    "output_dir": "output_dir", "out_dir": "output_dir", "result_dir": "output_dir", "results_dir": "output_dir",
    "save_dir": "output_dir", "output_path": "output_dir",
    "save": "save", "save_images": "save", "save_image": "save", "save_result": "save", "save_results": "save",
    "is_result_save": "save",
    "face_threshold": "det_threshold", "det_threshold": "det_threshold", "detection_threshold": "det_threshold",
    "conf_threshold": "det_threshold", "score_threshold": "det_threshold", "face_conf": "det_threshold",
    "reid_threshold": "reid_threshold", "recognition_threshold": "reid_threshold", "match_threshold": "reid_threshold",
    "face_distance_threshold": "reid_threshold",
    "iou_threshold": "det_iou", "det_iou": "det_iou",
    "url": "url", "server_url": "url", "triton_url": "url", "grpc_url": "url",
    "concurrency": "concurrency", "limit": "limit", "boxes": "boxes", "timeout": "timeout",
}
MODEL_KEYS = {"model", "arch", "architecture", "model_name", "model_type", "generator"}
SECTION_MODEL_KEYS = {"name", "type"}  # model keys only inside a generator section (inverter.name, ...)
SIZE_KEYS = {"input_size", "image_size", "img_size", "crop_size", "size", "resolution"}
TYPES = {"batch_size": "int+", "concurrency": "int+", "limit": "int+", "timeout": "float+", "det_threshold": "prob",
         "reid_threshold": "float+", "det_iou": "prob", "save": "bool", "dataset_dir": "str", "output_dir": "str",
         "url": "urls", "boxes": ("gt", "detect")}

IGNORED = {  # key -> reason
    "checkpoint": "a research PyTorch checkpoint does not load into the served networks; the server runs what "
                  "`python export/to_onnx.py --model NAME` exported into model_repository/",
    "device": "the server places the models (instance_group in each config.pbtxt), not the client",
    "num_workers": "frames are read by the evaluation client itself",
    "pin_memory": "no PyTorch data loader in the evaluation client",
    "shuffle": "the evaluation reads frames in path order (needed for --resume)",
    "fp16": "precision is chosen at export (export/to_trt.py builds FP16 TensorRT plans)",
}
for _k in ("model_path", "weights", "weight", "ckpt", "checkpoint_path", "pretrained_path", "resume_path"):
    IGNORED[_k] = IGNORED["checkpoint"]
for _k in ("gpu", "gpus", "gpu_id", "gpu_ids", "cuda", "device_id", "devices"):
    IGNORED[_k] = IGNORED["device"]
IGNORED["workers"] = IGNORED["num_workers"]
IGNORED["half"] = IGNORED["amp"] = IGNORED["fp16"]

TRAINING_ONLY = {
    "lr", "learning_rate", "base_lr", "lr_g", "lr_d", "epochs", "epoch", "num_epochs", "n_epochs", "max_epoch",
    "max_epochs", "start_epoch", "optimizer", "optim", "weight_decay", "momentum", "betas", "beta1", "beta2", "eps",
    "scheduler", "lr_scheduler", "lr_policy", "step_size", "gamma", "milestones", "warmup", "warmup_epochs",
    "loss", "losses", "criterion", "seed", "train_dir", "train_image_dir", "train_label_dir", "val_dir",
    "valid_dir", "val_image_dir", "val_label_dir", "save_interval", "save_freq", "log_interval", "print_freq",
    "log_dir", "tensorboard", "wandb", "pretrained", "freeze", "augment", "augmentation", "max_iter", "iterations",
    "n_critic", "gan_mode", "pool_size", "accumulate", "grad_clip", "clip_grad", "dropout", "label_smoothing",
}
TRAINING_PREFIXES = ("lambda_", "lr_", "loss_", "w_", "weight_")
TRAINING_SECTIONS = {"train", "training", "trainer", "optim", "optimizer", "scheduler", "loss", "losses",
                     "discriminator", "discriminators", "netd", "d"}
FEATURE_SECTIONS = {"feature", "features", "feature_model", "feature_extractor", "backbone_feature"}
FACE_SECTIONS = {"face", "detector", "face_detector", "det", "detection", "face_detection"}
GENERATOR_SECTIONS = {"inverter", "inversion", "generator", "deid", "netg", "g", "d2gan", "model"}
FACE_THRESHOLD_KEYS = {"threshold", "thresh", "conf", "confidence", "score"}  # face.threshold -> det_threshold


class ConfigError(ValueError):
    """A config that cannot be used (unreadable YAML, not a mapping, a bad value); names the file and field."""


@dataclass
class ConfigResult:
    path: Path
    values: dict = field(default_factory=dict)  # flag dest -> value
    notes: list[str] = field(default_factory=list)  # "field: ignored (reason)", "field: unknown field", ...
    sources: dict = field(default_factory=dict)  # flag dest -> the field it came from


def _norm_key(key) -> str:
    return str(key).strip().lower().replace("-", "_")


def _norm_model(value) -> str:
    return re.sub(r"[^a-z0-9]", "", str(value).lower())


def resolve_model(value) -> str | None:
    """Our CLI name for a model name from a config (MobileUNet, mobile_unet, ResNet50UNet, D2GAN, ...), or None."""
    n = _norm_model(value)
    if n in MODEL_ALIASES:
        return MODEL_ALIASES[n]
    if "d2gan" in n or "dualdisc" in n or ("resnet" in n and "generator" in n):
        return "d2gan"
    if "mobile" in n:
        return "mobileunet"
    if "resnet" in n:
        return "resnet50unet"
    return None


def served_size(model: str | None) -> int:
    try:
        from .models import get_spec

        return get_spec(model).size if model else get_spec(GENERATOR_NAMES[0]).size
    except Exception:  # noqa: BLE001 - torch missing on a thin client: fall back to the documented size
        return SERVED_SIZE


def _flatten(node, prefix=()) -> list[tuple[tuple[str, ...], object]]:
    if isinstance(node, dict):
        out = []
        for key, value in node.items():
            out += _flatten(value, prefix + (_norm_key(key),))
        return out
    return [(prefix, node)]


def _check_type(where: str, dest: str, value):
    kind = TYPES.get(dest, "any")
    bad = ConfigError(f"{where}: {value!r} is not a valid {dest} ({_describe(kind)})")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, (int,)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.strip().lower() in ("true", "yes", "1")
        raise bad
    if kind == "int+":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad
        return value
    if kind in ("float+", "prob"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise bad
        if kind == "prob" and value > 1:
            raise bad
        return float(value)
    if kind == "str":
        if not isinstance(value, (str, int, float)) or isinstance(value, bool) or str(value).strip() == "":
            raise bad
        return str(value)
    if kind == "urls":
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(u, str) and u.strip() for u in items):
            raise bad
        return [u.strip() for u in items]
    if isinstance(kind, tuple):
        if value not in kind:
            raise bad
        return value
    return value


def _describe(kind) -> str:
    return {"bool": "true or false", "int+": "an integer >= 1", "float+": "a number > 0", "prob": "a number in (0, 1]",
            "str": "a path", "urls": "an address or a list of addresses"}.get(kind, f"one of {kind}")


def read_config(path) -> ConfigResult:
    """Parse and map a YAML config; raises ConfigError / FileNotFoundError. See the module docstring."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level, got {type(data).__name__}")
    result = ConfigResult(path)
    sizes: list[tuple[str, object]] = []
    models: list[tuple[str, str, object]] = []

    for keys, value in _flatten(data):
        if not keys:
            continue
        where = ".".join(keys)
        key, sections = keys[-1], set(keys[:-1])
        if sections & TRAINING_SECTIONS or key in TRAINING_SECTIONS and keys[:-1] == ():
            result.notes.append(f"{where}: ignored (training-only; training has its own command, "
                                "train/train_inversion.py or train/train_d2gan.py)")
        elif sections & FEATURE_SECTIONS:
            result.notes.append(f"{where}: ignored (the 'image sim' feature network is fixed by the product: "
                                "EfficientNet-Lite0 at 224x224, see docs/evaluation.md)")
        elif sections & FACE_SECTIONS and key in FACE_THRESHOLD_KEYS:
            checked = _check_type(f"{path}: {where}", "det_threshold", value)
            result.values["det_threshold"], result.sources["det_threshold"] = checked, where
        elif sections & FACE_SECTIONS and key not in MAPPED:
            result.notes.append(f"{where}: ignored (the face detector is CenterFace, served as face_detector)")
        elif key in MODEL_KEYS or (key in SECTION_MODEL_KEYS and sections & GENERATOR_SECTIONS):
            model = resolve_model(value) if isinstance(value, str) else None
            if model is None:
                raise ConfigError(f"{path}: {where}: unknown model {value!r}; the served generators are "
                                  f"{', '.join(GENERATOR_NAMES)}")
            models.append((where, model, value))
        elif key in SIZE_KEYS:
            sizes.append((where, value))
        elif key in MAPPED:
            dest = MAPPED[key]
            checked = _check_type(f"{path}: {where}", dest, value)
            if dest in result.values and result.values[dest] != checked:
                raise ConfigError(f"{path}: {where} = {value!r} conflicts with {result.sources[dest]} = "
                                  f"{result.values[dest]!r}")
            result.values[dest], result.sources[dest] = checked, where
        elif key in IGNORED:
            result.notes.append(f"{where}: ignored ({IGNORED[key]})")
        elif key in TRAINING_ONLY or key.startswith(TRAINING_PREFIXES):
            result.notes.append(f"{where}: ignored (training-only; no meaning for evaluation)")
        else:
            result.notes.append(f"{where}: unknown field, not used (value {_short(value)})")

    if models:
        names = {m for _, m, _ in models}
        if len(names) > 1:
            raise ConfigError(f"{path}: the model fields disagree: "
                              + ", ".join(f"{w} = {v!r}" for w, _, v in models))
        result.values["model"], result.sources["model"] = models[0][1], models[0][0]
    model = result.values.get("model")
    for where, value in sizes:
        size = served_size(model)
        ok = isinstance(value, int) and not isinstance(value, bool) or (
            isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value))
        if not ok:
            raise ConfigError(f"{path}: {where}: {value!r} is not an image size")
        given = set(value) if isinstance(value, (list, tuple)) else {value}
        if given != {size}:
            result.notes.append(f"{where}: {value} not applied: the served {model or 'generator'} generator uses "
                                f"{size}x{size} face crops (every face is resized to {size})")
    return result


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def load_config(path) -> tuple[dict, list[str]]:
    """(flag values by argparse dest, messages about every field not applied as given)."""
    result = read_config(path)
    return result.values, result.notes


# ------------------------------------------------------------------------------------------ argparse wiring


def _fixed_values() -> dict:
    """Values the evaluation uses when it has no flag for them: a config may repeat them, not change them."""
    fixed = {"reid_threshold": (0.6, "the recognizer's own threshold"), "det_iou": (0.5, "IoU for 'det'"),
             "det_threshold": (0.5, "CenterFace score threshold")}
    try:
        from . import metrics

        fixed["reid_threshold"] = (metrics.REID_THRESHOLD, fixed["reid_threshold"][1])
        fixed["det_iou"] = (metrics.DET_IOU, fixed["det_iou"][1])
    except Exception:  # noqa: BLE001
        pass
    try:
        from .detection import DEFAULT_THRESHOLD

        fixed["det_threshold"] = (DEFAULT_THRESHOLD, fixed["det_threshold"][1])
    except Exception:  # noqa: BLE001
        pass
    return fixed


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    if not any("--config" in a.option_strings for a in parser._actions):
        parser.add_argument("--config", type=Path, metavar="YML",
                            help="YAML config of the original research code (config/*.yml): its values are "
                                 "defaults, flags given here win; fields that do not apply are reported")


def parse_args_with_config(parser: argparse.ArgumentParser, argv: list[str] | None = None, stream=sys.stderr,
                           strict: bool = False) -> tuple[argparse.Namespace, list[str]]:
    """parser.parse_args(argv) with `--config YML` values as defaults (explicit flags override them).

    Required flags that the config provides stop being required. A config value for which the parser has no
    flag is reported (or, for the thresholds the evaluation fixes, accepted silently when it equals the fixed
    value). Every note is printed to `stream`; with strict=True an unknown field is an error.
    """
    add_config_argument(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    known, _ = pre.parse_known_args(argv)
    if known.config is None:
        return parser.parse_args(argv), []
    try:
        result = read_config(known.config)
    except (ConfigError, FileNotFoundError) as exc:
        parser.error(str(exc))
    actions = {a.dest: a for a in parser._actions}
    notes = list(result.notes)
    defaults, after = {}, {}
    fixed = _fixed_values()
    for dest, value in result.values.items():
        where = result.sources.get(dest, dest)
        if dest == "det_threshold" and "threshold" in actions:  # commands with --threshold apply it per request
            dest = "threshold"
        action = actions.get(dest)
        if action is None:
            if dest in fixed and math.isclose(float(value), fixed[dest][0]):
                continue  # the config repeats what the evaluation does anyway
            if dest in fixed:
                notes.append(f"{where}: {value} not applied: this command uses the fixed {fixed[dest][0]} "
                             f"({fixed[dest][1]})")
            else:
                notes.append(f"{where}: not applied: this command has no --{dest} flag")
            continue
        if isinstance(action, argparse._AppendAction):
            after[dest] = list(value) if isinstance(value, list) else [value]  # filled in only if no flag given
        elif isinstance(value, list):
            defaults[dest] = ",".join(map(str, value))
        else:
            defaults[dest] = value
        action.required = False
    parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    for dest, value in after.items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, value)
    for note in notes:
        print(f"{parser.prog}: {known.config}: {note}", file=stream)
    if strict and any("unknown field" in n for n in notes):
        parser.error(f"{known.config} has unknown fields (see above)")
    return args, notes
