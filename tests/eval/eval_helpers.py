"""Helpers shared by the evaluation tests (a module of its own: every test folder has a `conftest`)."""

from __future__ import annotations

from pathlib import Path


def eval_argv(dataset: Path, out: Path, model: str = "blur", *extra: str) -> list[str]:
    """Command line of eval/triton_eval.py for a test: small chunks, no progress bar."""
    return ["--dataset_dir", str(dataset), "--model", model, "--output_dir", str(out), "--batch_size", "2",
            "--no_progress", *extra]
