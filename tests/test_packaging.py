"""What a new user meets first: licences and terms, the README (no links leaving the repository, the one-command
section), and `make setup` getting the CPU build of PyTorch from PyTorch's index first."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
WEIGHT_TERMS = ROOT / "src" / "facedeid" / "weights" / "LICENSE-weights.md"


def test_code_licence_and_weights_terms():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "src/facedeid/weights/LICENSE-weights.md" in project["license-files"]
    terms = WEIGHT_TERMS.read_text()
    assert "UTKFace" in terms and "non-commercial research" in terms
    top = README.split("\n## ", 1)[0]  # before the first section
    assert "non-commercial research" in top and "LICENSE-weights.md" in top and "UTKFace" in top


def test_readme_links_stay_inside_the_repository():
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            assert not target.startswith(("http://", "https://", "/")), f"{doc.name}: link to {target}"
            path = (doc.parent / target.split("#")[0]).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), f"{doc.name}: {target} does not exist"


def test_readme_is_a_front_door():
    """At most 200 lines, no paths of past runs, no issue numbers: studies and their history live in docs/."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "/tmp/" not in text
    assert not re.search(r"\bissues? ?#?\d+|issue-\d+", text, re.IGNORECASE), re.findall(r".*issue.*", text)


def test_readme_has_the_one_command_section_and_the_commands_in_order():
    own = README.split("## Your own video", 1)[1].split("\n## ", 1)[0]
    assert "make setup" in own and ".venv/bin/facedeid run clip.mp4" in own and "clip_anonymized.mp4" in own
    steps = README.split("## The commands, in the order they are run", 1)[1].split("\n## ", 1)[0]
    order = [steps.index(c) for c in ("facedeid data extract", "facedeid export", "facedeid serve", "facedeid eval",
                                      "facedeid run")]
    assert order == sorted(order)
    numbers = README.split("## What the numbers mean", 1)[1].split("\n## ", 1)[0]
    for metric in ("`reid`", "`det`", "`image sim`", "`ssim`", "`psnr`"):
        assert metric in numbers


def test_make_setup_tries_the_pytorch_cpu_index_first_then_falls_back():
    plan = subprocess.run(["make", "-n", "-B", "setup"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    torch_lines = [line for line in plan.splitlines() if "torch==2.13.0" in line or line.strip().startswith("||")]
    joined = " ".join(torch_lines)
    assert "--index-url https://download.pytorch.org/whl/cpu" in joined
    assert joined.index("--index-url") < joined.index("|| ") and "--retries 0" in joined
    assert plan.index("torch==2.13.0") < plan.index("install -q -e")  # torch before the project


def test_cpu_index_step_keeps_an_installed_torch_without_the_network():
    """Here torch is installed: the first try must succeed at once even when the index cannot be reached."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "torch==2.13.0", "--index-url",
                           "http://127.0.0.1:9/simple", "--timeout", "15", "--retries", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert time.monotonic() - start < 120
