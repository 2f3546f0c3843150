"""Start and stop a local Triton server (the `tritonserver` command) on free ports, and wait until it is ready.

Used by the tests, `make demo` and the benchmark; users run `tritonserver --model-repository ...` themselves (the
command is serving/tritonserver_cli.py). Also the one reader of a server's memory from /proc.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .tritonserver_cli import admin_headers, build_command, server_env


def process_tree(pid: int) -> list[int]:
    """pid and every descendant (tritonserver -> its Python-backend stub processes), from Linux /proc."""
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                queue += [int(child) for child in task.read_text().split()]
    return pids


def _status_kb(pid: int) -> dict[str, int]:
    values = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                values[key] = int(rest.split()[0])
    return values


def memory_mb(pid: int) -> dict[str, float]:
    """Peak (VmHWM) and current (VmRSS) memory of pid and all its descendants, summed, in MiB.

    The sum of per-process peaks is an upper bound of the true simultaneous peak (the peaks need not coincide).
    """
    stats = [_status_kb(p) for p in process_tree(pid)]
    return {"peak_mb": sum(s.get("VmHWM", 0) for s in stats) / 1024.0,
            "rss_mb": sum(s.get("VmRSS", 0) for s in stats) / 1024.0,
            "processes": len([s for s in stats if s])}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalServer:
    process: subprocess.Popen
    http_port: int
    grpc_port: int
    metrics_port: int
    log_path: Path
    admin_key: str = ""  # unlocks statistics, model-config, repository, ... (header `admin-key`)

    @property
    def admin_headers(self) -> dict[str, str]:
        """gRPC headers for the restricted APIs: `client.get_inference_statistics(..., headers=...)`."""
        return admin_headers(self.admin_key)

    @property
    def admin_http_headers(self) -> dict[str, str]:
        return admin_headers(self.admin_key, "http")

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def rss_bytes(self) -> int:
        """Resident memory of the server and its Python-backend stub processes (Linux /proc)."""
        return int(memory_mb(self.process.pid)["rss_mb"] * 1024 * 1024)

    def model_rss_bytes(self, model: str) -> int:
        """Resident memory of the Python-backend stub process(es) serving `model` (Linux /proc)."""
        total = 0
        for pid in process_tree(self.process.pid):
            with contextlib.suppress(OSError):
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if any(arg.endswith(f"/{model}/1/model.py".encode()) for arg in args):
                    total += _status_kb(pid).get("VmRSS", 0) * 1024
        return total

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(repository: Path, log_path: Path, timeout: float = 180.0, extra_args: list[str] | None = None,
          ports: tuple[int, int, int] | None = None, malloc_env: bool = True) -> LocalServer:
    """Launch the server and block until every model is ready; raise with the log tail if it is not.

    The restricted APIs are locked as in the containers; the key ($TRITON_ADMIN_KEY, else a fresh random one) is
    `server.admin_key`. `malloc_env=False` leaves glibc's malloc settings at their defaults (tritonserver_cli.MALLOC_ENV
    otherwise)."""
    import tritonclient.http as httpclient

    http_port, grpc_port, metrics_port = ports or (free_port(), free_port(), free_port())
    args = [f"--model-repository={repository}", f"--http-port={http_port}", f"--grpc-port={grpc_port}",
            f"--metrics-port={metrics_port}", "--exit-on-error=true", "--exit-timeout-secs=10", *(extra_args or [])]
    log = open(log_path, "ab")  # noqa: SIM115 - stays open for the server's lifetime
    key = os.environ.get("TRITON_ADMIN_KEY") or secrets.token_hex(16)
    process = subprocess.Popen(build_command(args, key), env=server_env(malloc_env), stdout=log,
                               stderr=subprocess.STDOUT)
    server = LocalServer(process, http_port, grpc_port, metrics_port, Path(log_path), key)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tritonserver exited with code {process.returncode}:\n{server.log_tail()}")
        # A fresh, closed client per probe: an open keep-alive connection would hold up the server's shutdown.
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            with contextlib.suppress(Exception):
                if client.is_server_ready():
                    return server
        finally:
            client.close()
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"tritonserver not ready after {timeout:.0f}s:\n{server.log_tail()}")


@contextlib.contextmanager
def running(repository: Path, log_path: Path, **kwargs):
    server = start(repository, log_path, **kwargs)
    try:
        yield server
    finally:
        server.stop()
