"""docs/deploy.md: the commands and notions it must walk through, and every file it names exists."""

from __future__ import annotations

import re

from deploy_helpers import (
    COMPOSE_FILE,
    DOCKER,
    DOCKERFILES,
    DOCS,
    K8S,
    REQUIREMENTS,
    ROOT,
    _rel,
    variables_in,
)


def test_deployment_files_exist():
    for path in [COMPOSE_FILE, DOCS, *REQUIREMENTS.values(), DOCKER / "Dockerfile.server",
                 DOCKER / "Dockerfile.client", DOCKER / "Dockerfile.export", K8S / "kustomization.yaml"]:
        assert path.is_file(), f"{_rel(path)} missing"
    assert len(DOCKERFILES) == 3, [p.name for p in DOCKERFILES]


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
