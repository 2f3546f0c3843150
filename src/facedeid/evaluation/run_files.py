"""Run files: `--config config/<file>.yml` (the seed's flag), evaluation settings from a YAML file, as defaults for
the command's flags. "Run file", not "config": in this project a model configuration is Triton's config.pbtxt
(serving/configs.py) and the settings are the profiles of facedeid.settings (docs/design.md, "Three meanings").

A strict schema: the file is a flat mapping of the fields below (those the shipped configs in config/ use, plus
`dataset_dir`, `save` and `url`). Values are defaults: a flag given on the command line wins. Every other field is
reported as unknown and not used, never silently dropped (`strict=True` makes it an error); a value of the wrong
type stops the command with a message naming the file and the field.

    values, notes = load_run_file("config/config_d2gan_dna.yml")        # dict of flag values, list of messages
    args, notes = parse_args_with_run_file(parser, argv)                  # wire --config into any argparse CLI
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

# field -> (type, what it sets); a field whose flag the command lacks is compared with the value it fixes
FIELDS = {
    "model": ("model", "--model: a generator or baseline name, or a comma list"),
    "input_size": ("size", "checked: the served generators' face crop side"),
    "batch_size": ("int+", "--batch_size"),
    "dataset_dir": ("str", "--dataset_dir"),
    "output_dir": ("str", "--output_dir"),
    "save": ("bool", "--save"),
    "url": ("urls", "--url: one address or a list"),
    "det_threshold": ("prob", "checked: the product's CenterFace score threshold (facedeid.settings); another "
                              "value is reported and not applied (--threshold on the command line chooses one)"),
    "reid_threshold": ("float+", "face recognizer distance threshold (fixed by the product)"),
}


class RunFileError(ValueError):
    """A run file that cannot be used (unreadable YAML, not a mapping, a bad value); names the file and field."""


@dataclass
class RunFile:
    path: Path
    values: dict = field(default_factory=dict)  # flag dest -> value
    notes: list[str] = field(default_factory=list)  # "field: unknown field, not used", "input_size: not applied"


def _generators() -> tuple[str, ...]:
    from ..models.registry import GENERATORS

    return tuple(GENERATORS)


def served_size(model: str | None) -> int:
    """The face crop side the served `model` generator uses (the first generator's for a baseline or none)."""
    from ..models.registry import get_spec

    return get_spec(model if model in _generators() else _generators()[0]).size


def _check(where: str, kind: str, value):
    bad = RunFileError(f"{where}: {value!r} is not a valid value ({_describe(kind)})")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise bad
    if kind in ("int+", "size"):
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
        if not isinstance(value, str) or not value.strip():
            raise bad
        return value
    if kind == "urls":
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(u, str) and u.strip() for u in items):
            raise bad
        return [u.strip() for u in items]
    if kind == "model":
        from ..baselines import METHODS

        known = (*_generators(), *METHODS)
        names = [n.strip() for n in value.split(",")] if isinstance(value, str) else []
        if not names or not all(n in known for n in names):
            raise RunFileError(f"{where}: unknown model {value!r}; choose from {', '.join(known)}")
        return ",".join(names)
    raise AssertionError(kind)


def _describe(kind: str) -> str:
    return {"bool": "true or false", "int+": "an integer >= 1", "size": "an integer >= 1", "float+": "a number > 0",
            "prob": "a number in (0, 1]", "str": "a path", "urls": "an address or a list of addresses",
            "model": "a model name"}[kind]


def read_run_file(path) -> RunFile:
    """Parse and check a YAML run file; raises RunFileError / FileNotFoundError. See the module docstring."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"run file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RunFileError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RunFileError(f"{path}: expected a mapping of fields at the top level, got {type(data).__name__}")
    result = RunFile(path)
    for key, value in data.items():
        if key not in FIELDS:
            result.notes.append(f"{key}: unknown field, not used (value {_short(value)}; known fields: "
                                f"{', '.join(FIELDS)})")
            continue
        result.values[key] = _check(f"{path}: {key}", FIELDS[key][0], value)
    size = result.values.pop("input_size", None)
    if size is not None:
        model = result.values.get("model", "").split(",")[0] or None
        served = served_size(model)
        if size != served:
            result.notes.append(f"input_size: {size} not applied: the served {model or 'generator'} generator uses "
                                f"{served}x{served} face crops (every face is resized to {served})")
    return result


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def load_run_file(path) -> tuple[dict, list[str]]:
    """(flag values by argparse dest, messages about every field not applied as given)."""
    result = read_run_file(path)
    return result.values, result.notes


# ------------------------------------------------------------------------------------------ argparse wiring


def _fixed_values() -> dict:
    """Values the evaluation uses without a flag for them: a config may repeat them, not change them."""
    from ..metrics import REID_THRESHOLD

    return {"reid_threshold": (REID_THRESHOLD, "the recognizer's own threshold")}


def det_threshold_note(value: float) -> str | None:
    """A run file's `det_threshold` is checked against the product's (facedeid.settings), never applied: the run
    detects as `facedeid run` does. None when they agree, else the one line that says what happens."""
    from ..settings import CPU

    product = CPU.threshold
    if math.isclose(value, product):
        return None
    if value > product:
        return (f"det_threshold: {value} not applied: above the product's detection threshold {product} it would "
                f"leave faces scoring {product}-{value} untouched; the run detects at {product} as `facedeid run` "
                f"does (give --threshold {value} to choose otherwise)")
    return (f"det_threshold: {value} not applied: the run detects at the product's {product} as `facedeid run` "
            f"does (give --threshold {value} to anonymise more faces than the product)")


def add_run_file_argument(parser: argparse.ArgumentParser) -> None:
    if not any("--config" in a.option_strings for a in parser._actions):
        parser.add_argument("--config", type=Path, metavar="YML",
                            help="YAML run file (config/*.yml): its values are defaults, flags given here win; "
                                 f"fields: {', '.join(FIELDS)}; others are reported")


def parse_args_with_run_file(parser: argparse.ArgumentParser, argv: list[str] | None = None, stream=sys.stderr,
                           strict: bool = False) -> tuple[argparse.Namespace, list[str]]:
    """parser.parse_args(argv) with `--config YML` values as defaults (explicit flags override them).

    Required flags that the config provides stop being required. A config value for which the parser has no
    flag is reported (or, for the thresholds the product fixes, accepted silently when it equals the fixed
    value). Every note is printed to `stream`; with strict=True an unknown field is an error.
    """
    add_run_file_argument(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    known, _ = pre.parse_known_args(argv)
    if known.config is None:
        return parser.parse_args(argv), []
    try:
        result = read_run_file(known.config)
    except (RunFileError, FileNotFoundError) as exc:
        parser.error(str(exc))
    actions = {a.dest: a for a in parser._actions}
    notes = list(result.notes)
    defaults, after = {}, {}
    fixed = _fixed_values()
    for dest, value in result.values.items():
        if dest == "det_threshold":
            note = det_threshold_note(float(value))
            if note:
                notes.append(note)
            continue  # detection is the product's: a run file checks the threshold, it never sets it
        action = actions.get(dest)
        if action is None:
            if dest in fixed and math.isclose(float(value), fixed[dest][0]):
                continue  # the config repeats what the evaluation does anyway
            if dest in fixed:
                notes.append(f"{dest}: {value} not applied: this command uses the fixed {fixed[dest][0]} "
                             f"({fixed[dest][1]})")
            else:
                notes.append(f"{dest}: not applied: this command has no --{dest} flag")
            continue
        if isinstance(action, argparse._AppendAction):
            after[dest] = list(value) if isinstance(value, list) else [value]  # filled in only if no flag given
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
