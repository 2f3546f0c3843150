"""Security defaults of the local server and of the code base."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from facedeid.paths import REPO_ROOT


def listening_addresses(port: int) -> set[str]:
    """Local addresses listening on `port`, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                found.add(address)
    return found


def test_server_listens_on_loopback_only(triton):
    # 127.0.0.1 as /proc writes it: IPv4 little-endian hex, or IPv4-mapped IPv6 (::ffff:127.0.0.1)
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}
    for port in (triton.grpc_port, triton.http_port, triton.metrics_port):
        addresses = listening_addresses(port)
        assert addresses and addresses <= loopback, f"port {port} listens on {addresses}"


PYTHON_FILES = [p for p in REPO_ROOT.rglob("*.py") if ".venv" not in p.parts and "tests" not in p.parts]


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func), {k.arg: k.value for k in node.keywords}


def test_torch_load_always_has_weights_only():
    offenders = []
    for path in PYTHON_FILES:
        for node, func, keywords in _calls(path):
            flag = keywords.get("weights_only")
            if func == "torch.load" and not (isinstance(flag, ast.Constant) and flag.value is True):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert not offenders, f"torch.load without weights_only=True unpickles arbitrary code: {offenders}"


def test_no_pickle_loading():
    offenders = []
    for path in PYTHON_FILES:
        for node, func, keywords in _calls(path):
            allow = keywords.get("allow_pickle")
            if func in ("pickle.load", "pickle.loads") or (isinstance(allow, ast.Constant) and allow.value is True):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert not offenders, f"pickles load arbitrary code: {offenders}"


def test_the_scan_sees_calls():
    """Guard against a scan that finds nothing: the shipped checkpoint loader is a torch.load call."""
    registry = REPO_ROOT / "src/facedeid/models/registry.py"
    assert any(func == "torch.load" for _, func, _ in _calls(registry))


def test_no_request_data_reaches_the_file_system():
    """The served code (model.py adapters and the stage functions) never opens paths: tensors are only arrays."""
    served = list((REPO_ROOT / "model_repository").rglob("model.py"))
    served += [REPO_ROOT / "src/facedeid/stages.py", REPO_ROOT / "src/facedeid/serving/python_backend.py"]
    served += [REPO_ROOT / "src/facedeid" / n for n in ("crops.py", "compose.py")]
    served += list((REPO_ROOT / "src/facedeid/detection").glob("*.py"))
    for path in served:
        text = path.read_text()
        assert not re.search(r"\bopen\(|\.write_|imwrite|imread|os\.remove|unlink\(", text), path


@pytest.mark.parametrize("method, path", [
    ("POST", "/v2/repository/index"),
    ("POST", "/v2/repository/models/mobileunet/unload"),
    ("POST", "/v2/repository/models/mobileunet/load"),
    ("GET", "/v2/logging"),
    ("GET", "/v2/trace/setting"),
    ("GET", "/v2/systemsharedmemory/status"),
    ("GET", "/v2/models/mobileunet/stats"),
    ("GET", "/v2/models/mobileunet/config"),
])
def test_admin_http_apis_are_refused_without_the_key(triton, method, path):
    """Model control, repository, model-config, statistics, logging, trace and shared-memory APIs need the admin
    header, as in the containers (gRPC side: tests/serving/test_pipeline.py, test_hostile_input.py); inference
    and health stay open."""
    import urllib.error
    import urllib.request

    body = b"{}" if method == "POST" else None
    request = urllib.request.Request(f"http://{triton.http_url}{path}", method=method, data=body)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310 - http:// built above
    assert refused.value.code in (400, 403), refused.value.code
    ready_url = f"http://{triton.http_url}/v2/models/mobileunet/ready"
    with urllib.request.urlopen(ready_url, timeout=10) as ready:  # noqa: S310 - an http:// URL
        assert ready.status == 200
    if method == "GET" and "/models/" in path:  # the key opens them (what tests and the benchmark send)
        keyed = urllib.request.Request(f"http://{triton.http_url}{path}", headers=triton.admin_http_headers)
        with urllib.request.urlopen(keyed, timeout=10) as answer:  # noqa: S310 - http:// built above
            assert answer.status == 200
