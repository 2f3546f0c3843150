"""The `facedeid` command and the conventions every CLI shares (no server needed)."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from facedeid import cli, cli_args
from facedeid.data.files import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]
FACEDEID = Path(sys.executable).parent / "facedeid"
MODULES = [module for module, _ in cli.COMMANDS.values()
           if module not in ("facedeid.serving.tritonserver_cli", "facedeid.demo")]
MODULES += [module for subs in (*cli.GROUPS.values(), *cli.SUBCOMMANDS.values()) for module, _ in subs.values()]


def _parser_of(module: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser a module's main() builds, caught at parse time (main is called with --help)."""
    caught = {}
    real = argparse.ArgumentParser.parse_args

    def spy(self, args=None, namespace=None):
        caught.setdefault("parser", self)
        return real(self, args, namespace)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", spy)
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module).main(["--help"])
    assert exit_info.value.code == 0
    return caught["parser"]


def test_console_script_lists_every_subcommand():
    proc = subprocess.run([str(FACEDEID), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in [*cli.COMMANDS, *(f"{group} {sub}" for group, subs in (*cli.GROUPS.items(), *cli.SUBCOMMANDS.items())
                                  for sub in subs)]:
        assert name in proc.stdout
    unknown = subprocess.run([str(FACEDEID), "frobnicate"], capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "unknown command 'frobnicate'" in unknown.stderr


@pytest.mark.parametrize("argv,prog", [(["run"], "facedeid run"), (["eval"], "facedeid eval"),
                                       (["eval", "people"], "facedeid eval people"),
                                       (["bench", "gpu-check"], "facedeid bench gpu-check"),
                                       (["train", "ksame-bank"], "facedeid train ksame-bank"),
                                       (["export"], "facedeid export"), (["train", "d2gan"], "facedeid train d2gan"),
                                       (["data", "summary"], "facedeid data summary")])
def test_subcommand_help_is_the_module_parser(argv, prog):
    proc = subprocess.run([str(FACEDEID), *argv, "--help"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: {prog}"), proc.stdout[:200]


def test_serve_defaults_to_the_project_repository():
    from facedeid.paths import DEFAULT_REPOSITORY

    assert cli.serve_args(["--grpc-port=9001"]) == [f"--model-repository={DEFAULT_REPOSITORY}", "--grpc-port=9001"]
    assert cli.serve_args(["--model-repository=/x"]) == ["--model-repository=/x"]


@pytest.mark.parametrize("module", MODULES)
def test_every_flag_is_kebab_case_documented_and_has_its_snake_alias(module, monkeypatch):
    parser = _parser_of(module, monkeypatch)
    for action in parser._actions:
        assert action.help, f"{module}: {action.option_strings or action.dest} has no help"
        for option in action.option_strings:
            assert "_" not in option, f"{module}: {option} is not kebab-case"
            snake = option.replace("-", "_").replace("__", "--", 1)
            if option.startswith("--") and "-" in option[2:]:
                assert parser._option_string_actions[snake] is action, f"{module}: {snake} alias missing"


def test_seed_spellings_parse_to_the_same_values():
    from facedeid.evaluation.cli import build_parser

    kebab = build_parser().parse_args(["--dataset-dir", "d", "--model", "m", "--output-dir", "o", "--batch-size", "4",
                                       "--no-progress"])
    snake = build_parser().parse_args(["--dataset_dir", "d", "--model", "m", "--output_dir", "o", "--batch_size", "4",
                                       "--no_progress"])
    assert vars(kebab) == vars(snake)
    assert "--dataset_dir" not in build_parser().format_help()  # the alias is accepted, help lists one spelling


def test_finish_rejects_undocumented_and_snake_case_flags():
    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--ok-flag", help="documented")
    parser.add_argument("--silent")
    with pytest.raises(ValueError, match="--silent has no help"):
        cli_args.finish(parser)
    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--old_style", help="documented")
    with pytest.raises(ValueError, match="kebab-case"):
        cli_args.finish(parser)


def test_one_default_address():
    literals = []
    for path in (ROOT / "src" / "facedeid").rglob("*.py"):
        literals += [f"{path.name}: {line.strip()}" for line in path.read_text().splitlines()
                     if re.search(r"""["'](localhost|127\.0\.0\.1):8001["']""", line)]
    assert literals == ['settings.py: DEFAULT_URL = "127.0.0.1:8001"'], literals


def test_onnx_entry_point_offers_no_tensorrt_flags():
    proc = subprocess.run([sys.executable, str(ROOT / "export" / "to_onnx.py"), "--help"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "--fp32" not in proc.stdout and "tensorrt" not in proc.stdout.lower()
    proc = subprocess.run([sys.executable, str(ROOT / "export" / "to_trt.py"), "--help"], capture_output=True,
                          text=True, timeout=300)
    assert "--fp32" in proc.stdout


def test_training_budget_combines_steps_and_minutes():
    from facedeid.train.common import DEFAULT_MINUTES, DEFAULT_STEPS, resolve_budget

    assert resolve_budget(None, None) == (DEFAULT_STEPS, DEFAULT_MINUTES)
    assert resolve_budget(20000, None) == (20000, float("inf"))  # --steps alone is not cut short at 30 minutes
    assert resolve_budget(None, 5.0) == (DEFAULT_STEPS, 5.0)
    assert resolve_budget(20000, 5.0) == (20000, 5.0)  # both: whichever comes first


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "a.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left behind
