"""deploy/k8s: every manifest validated against the Kubernetes JSON schemas (kubernetes-validate), and checked
against the deployment rules; `kubectl kustomize` where kubectl is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml
from deploy_helpers import (
    K8S,
    TRITON_PORTS,
    _rel,
    image_is_pinned,
    restricted,
    check_triton_args,
    k8s_docs,
    k8s_kind,
    kubernetes_validate,
    container_port,
)


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
