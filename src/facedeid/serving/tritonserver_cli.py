"""`tritonserver` command: runs the real server binary shipped in the `nvidia-pytriton` wheel.

The wheel carries the binary, its shared libraries and one Python-backend stub per Python version, but not a
ready backend directory: the stub must sit next to `libtriton_python.so`. We assemble that directory once in a
cache, put the wheel's libraries on LD_LIBRARY_PATH and the running interpreter's bin/ first on PATH (so the stub
embeds this virtualenv's Python), then exec the server with the user's own flags.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path

# Safe defaults, each overridable by passing the flag explicitly (see README "Security").
DEFAULT_FLAGS = {
    "--http-address": "127.0.0.1",
    "--grpc-address": "127.0.0.1",
    "--metrics-address": "127.0.0.1",
    "--model-control-mode": "none",
}


def _dist_dir() -> Path:
    import pytriton

    return Path(pytriton.__file__).parent / "tritonserver"


def _libs_dir() -> Path:
    import pytriton

    return Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"


def backend_directory(cache_root: Path | None = None) -> Path:
    """Backend directory with the Python backend and the stub built for the running Python."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = _dist_dir() / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise SystemExit(f"tritonserver: the nvidia-pytriton wheel has no Python-backend stub for Python {version}")
    cache_root = cache_root or Path(sys.prefix) / "var" / "facedeid-tritonserver"
    backends = cache_root / "backends"
    python_dir = backends / "python"
    marker = python_dir / ".source"
    if not marker.exists() or marker.read_text() != str(stub):
        python_dir.mkdir(parents=True, exist_ok=True)
        for item in (_dist_dir() / "backends" / "python").iterdir():
            if item.is_file():
                shutil.copy2(item, python_dir / item.name)
        shutil.copy2(stub, python_dir / "triton_python_backend_stub")
        marker.write_text(str(stub))
    return backends


# glibc malloc settings for the server and its Python-backend stubs (they inherit the environment), unless the
# caller sets them: few arenas (each stub thread would otherwise get its own, which keeps its peak), and blocks of
# 1 MiB or more (frames, tiles, crops batches) always mmapped, so freeing them returns them to the system at once
# instead of raising glibc's dynamic threshold and keeping them in the heap. docker/start-triton.sh sets the same.
MALLOC_ENV = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "1048576", "MALLOC_TRIM_THRESHOLD_": "4194304"}


def server_env(malloc: bool = True) -> dict[str, str]:
    env = os.environ.copy()
    if malloc:
        for key, value in MALLOC_ENV.items():
            env.setdefault(key, value)
    libs = str(_libs_dir())
    env["LD_LIBRARY_PATH"] = f"{libs}:{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else libs
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


# Repository, trace and logging APIs can change what the server does, and model-config and statistics tell an
# outsider how it is set up and how busy it is: they need this header unless the user passes their own
# --grpc-restricted-protocol / --http-restricted-api. The same list as the containers (docker/start-triton.sh,
# deploy/k8s). Without TRITON_ADMIN_KEY the value is a random token nobody knows, i.e. the APIs are off.
RESTRICTED_APIS = "model-repository,model-config,shared-memory,statistics,trace,logging"
ADMIN_HEADER = "admin-key"  # same header as the Docker image (docker/start-triton.sh)


def admin_headers(key: str | None = None, protocol: str = "grpc") -> dict[str, str]:
    """Request headers that unlock the restricted APIs: `key`, else $TRITON_ADMIN_KEY, else none.

    Over gRPC Triton expects the header with the prefix `triton-grpc-protocol-`; over HTTP the plain name."""
    key = key or os.environ.get("TRITON_ADMIN_KEY")
    name = ADMIN_HEADER if protocol == "http" else f"triton-grpc-protocol-{ADMIN_HEADER}"
    return {name: key} if key else {}


def restricted_flags(given: set[str], key: str | None = None) -> list[str]:
    key = key or os.environ.get("TRITON_ADMIN_KEY") or secrets.token_hex(16)
    flags = []
    for flag in ("--grpc-restricted-protocol", "--http-restricted-api"):
        if flag not in given:
            flags.append(f"{flag}={RESTRICTED_APIS}:{ADMIN_HEADER}={key}")
    return flags


def _flag_values(args: list[str], flag: str) -> list[str]:
    values = []
    for k, arg in enumerate(args):
        if arg.startswith(flag + "="):
            values.append(arg.split("=", 1)[1])
        elif arg == flag and k + 1 < len(args):
            values.append(args[k + 1])
    return values


def check_model_config_name(user_args: list[str]) -> None:
    """`--model-config-name=NAME` must name a configs/NAME.pbtxt of the repository: tritonserver itself silently
    serves config.pbtxt for an unknown name (a typo would serve the CPU configuration on a GPU host)."""
    from .repository import check_model_config_name as check

    for name in _flag_values(user_args, "--model-config-name"):
        for repository in _flag_values(user_args, "--model-repository"):
            check(Path(repository), name)


def build_command(user_args: list[str], admin_key: str | None = None) -> list[str]:
    """Full argv: the wheel's binary, our safe defaults unless overridden, then the user's flags.

    `admin_key` (default $TRITON_ADMIN_KEY, else random) unlocks the restricted APIs."""
    check_model_config_name(user_args)
    given = {arg.split("=", 1)[0] for arg in user_args if arg.startswith("--")}
    args = [str(_dist_dir() / "bin" / "tritonserver")]
    if "--backend-directory" not in given:
        args.append(f"--backend-directory={backend_directory()}")
    for flag, value in DEFAULT_FLAGS.items():
        if flag not in given:
            args.append(f"{flag}={value}")
    if "--help" not in given:
        args += restricted_flags(given, admin_key)
    return args + user_args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cmd = build_command(argv)
    except ValueError as error:
        raise SystemExit(f"tritonserver: {error}") from None
    os.execve(cmd[0], cmd, server_env())  # noqa: S606 - the wheel's server binary, by absolute path, the user's flags


if __name__ == "__main__":
    main()
