"""docker/*.sh: the server start script parses, and compose, the Dockerfile and Kubernetes start the server the
same way."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml
from deploy_helpers import (
    DOCKER,
    COMPOSE_FILE,
    _rel,
    deep_interpolate,
    restricted,
    k8s_kind,
)


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def resolved(compose):
    """The compose file with every variable at its default (the admin key set, as .env would)."""
    return deep_interpolate(compose, {"TRITON_ADMIN_KEY": "test-key"})


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
