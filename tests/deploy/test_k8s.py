"""deploy/k8s: every manifest validated against the Kubernetes JSON schemas (kubernetes-validate), and checked
against the deployment rules; `kubectl kustomize` where kubectl is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_helpers import (
    K8S,
    ROOT,
    SECRET_PATH,
    START_COMMAND,
    TRITON_PORTS,
    TRITONSERVER_BIN,
    _rel,
    check_triton_args,
    container_port,
    image_is_pinned,
    k8s_docs,
    k8s_kind,
    kubernetes_validate,
    start_script_argv,
)

from facedeid.export import main as export_main
from facedeid.export.plans import gpu_product_label


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
    broken["spec"]["minReadySeconds"] = "two"
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, kv.latest_version(), strict=True)
    unknown = json.loads(json.dumps(deployment))
    unknown["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(kv.ValidationError):
        kv.validate(unknown, kv.latest_version(), strict=True)


def test_k8s_triton_deployment(tmp_path):
    (dep,) = k8s_kind("Deployment")
    assert "replicas" not in dep["spec"], "the HorizontalPodAutoscaler owns the replica count"
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert image_is_pinned(c["image"]), c["image"]
    assert "command" not in c, "keep the image's NGC entrypoint; pass the server command as args"
    assert c["args"][0] == START_COMMAND
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["TRITON_MODEL_CONFIG_NAME"] == "gpu" and env["TRITON_ADMIN_KEY_FILE"] == SECRET_PATH
    # What the start script makes of this container's environment, with the Secret's file in place:
    key = tmp_path / "key"
    key.write_text("k3y")
    argv = start_script_argv(tmp_path, {**env, "TRITON_ADMIN_KEY_FILE": str(key),
                                        "TRITON_MODEL_REPOSITORY": str(ROOT / "model_repository")}, *c["args"][1:])
    check_triton_args([TRITONSERVER_BIN, "--model-repository=/models", *argv[2:]], "triton-deployment.yaml")
    assert "--model-config-name=gpu" in argv
    # The key: a Secret mounted as a file at the path the script reads, never an environment variable.
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    secret_dir = str(Path(SECRET_PATH).parent)
    volume = {v["name"]: v for v in pod["volumes"]}[mounts[secret_dir]["name"]]
    assert mounts[secret_dir]["readOnly"] is True
    assert [i["path"] for i in volume["secret"]["items"]] == [Path(SECRET_PATH).name]
    assert not [e for e in c["env"] if "valueFrom" in e], "no secret in the environment"
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


def job(name: str) -> dict:
    (found,) = [j for j in k8s_kind("Job") if j["metadata"]["name"] == name]
    return found


def test_k8s_eval_job():
    job_ = job("facedeid-eval")
    pod = job_["spec"]["template"]["spec"]
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
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "eval-job.yaml", "eval-shards.yaml"}
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
                            "Deployment", "Service", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
                            "NetworkPolicy"]), kinds
    try:
        import kubernetes_validate as kv
    except ImportError:
        return
    for doc in docs:
        kv.validate(doc, kv.latest_version(), strict=True)


def test_k8s_gpu_node_selector_matches_the_plans_label_format():
    """TensorRT plans run only on the GPU model they were built on: the replicas are pinned to one GPU product,
    spelled as GPU feature discovery labels it (what `export/to_trt.py --print-gpu-product` prints)."""
    (dep,) = k8s_kind("Deployment")
    product = dep["spec"]["template"]["spec"]["nodeSelector"]["nvidia.com/gpu.product"]
    assert product == gpu_product_label("NVIDIA H100 80GB HBM3") == "NVIDIA-H100-80GB-HBM3"
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", product), "not a valid label value"
    assert gpu_product_label("NVIDIA A100-SXM4-40GB") == "NVIDIA-A100-SXM4-40GB"


def test_print_gpu_product_reads_the_plan_records(tmp_path, capsys):
    assert export_main(["--print-gpu-product", "--repository", str(tmp_path)]) == 1
    assert "no TensorRT plan records" in capsys.readouterr().err
    for name, gpu in (("mobileunet", "NVIDIA L4"), ("d2gan", "NVIDIA L4")):
        (tmp_path / name / "1").mkdir(parents=True)
        label = {"gpu_product_label": gpu_product_label(gpu)}
        (tmp_path / name / "1" / "model.plan.json").write_text(json.dumps(label))
    assert export_main(["--print-gpu-product", "--repository", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "NVIDIA-L4"
    (tmp_path / "d2gan" / "1" / "model.plan.json").write_text(json.dumps({"gpu_product_label": "NVIDIA-A10G"}))
    assert export_main(["--print-gpu-product", "--repository", str(tmp_path)]) == 1
    assert "different GPUs" in capsys.readouterr().err


def test_k8s_autoscaler_on_triton_queue_time():
    (hpa,) = k8s_kind("HorizontalPodAutoscaler")
    (dep,) = k8s_kind("Deployment")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", dep["metadata"]["name"])
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["target"]["type"] == "AverageValue"
    name = metric["pods"]["metric"]["name"]
    # The Prometheus adapter serves that metric from Triton's queue counters.
    values = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    (rule,) = [r for r in values["rules"]["custom"] if r["name"]["as"] == name]
    assert "nv_inference_queue_duration_us" in rule["seriesQuery"]
    assert "nv_inference_queue_duration_us" in rule["metricsQuery"] and "<<.LabelMatchers>>" in rule["metricsQuery"]
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    notes = dep["spec"]["template"]["metadata"]["annotations"]
    assert notes["prometheus.io/port"] == "8002", "Prometheus must scrape the metrics the adapter reads"


def test_k8s_network_policy_admits_only_clients():
    (policy,) = k8s_kind("NetworkPolicy")
    (dep,) = k8s_kind("Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    client_label = None
    for rule in policy["spec"]["ingress"]:
        ports = {p["port"] for p in rule["ports"]}
        (peer,) = rule["from"]
        assert "ipBlock" not in peer and peer, "no open ingress"
        if "podSelector" in peer:
            assert ports == {8000, 8001} and "namespaceSelector" not in peer
            client_label = peer["podSelector"]["matchLabels"]
        else:
            assert ports == {8002}, "only the metrics port for the monitoring namespace"
    assert client_label, "the clients' pods must be admitted"
    for job_ in k8s_kind("Job"):
        script = "\n".join(job_["spec"]["template"]["spec"]["containers"][0]["args"])
        if "--url" in script:  # talks to Triton
            pod_labels = job_["spec"]["template"]["metadata"]["labels"]
            assert client_label.items() <= pod_labels.items(), f"{job_['metadata']['name']} would be refused"


def _run_script(script: str, env: dict, tmp_path: Path) -> list[str]:
    """Run a Job's shell script with /out moved under tmp_path and a stand-in `python` that prints its argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    out = subprocess.run(["sh", "-c", script.replace("/out", str(tmp_path / "out"))], capture_output=True, text=True,
                         timeout=60, env={"PATH": f"{bin_dir}:/usr/bin:/bin", **env})
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_k8s_indexed_shard_job_and_merge(tmp_path):
    shards, merge = job("facedeid-eval-shards"), job("facedeid-eval-merge")
    spec = shards["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] >= 2
    (c,) = spec["template"]["spec"]["containers"]
    (m,) = merge["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    merge_env = {e["name"]: e["value"] for e in m["env"]}
    assert int(env["DEID_SHARDS"]) == int(merge_env["DEID_SHARDS"]) == spec["completions"], "N in three places"
    services = {s["metadata"]["name"] for s in k8s_kind("Service") if s["spec"].get("clusterIP") != "None"}
    assert env["TRITON_SERVICE"] in services
    # What shard 3 runs:
    argv = _run_script(c["args"][0], {**env, "JOB_COMPLETION_INDEX": "3"}, tmp_path)
    assert argv[0] == "eval/triton_eval.py"
    assert argv[argv.index("--shard") + 1] == f"3/{spec['completions']}"
    assert argv[argv.index("--output_dir") + 1] == str(tmp_path / "out" / "shard-3")
    assert argv[argv.index("--url") + 1] == f"{env['TRITON_SERVICE']}:8001" and "--resume" not in argv
    (tmp_path / "out" / "shard-3").mkdir(parents=True)
    (tmp_path / "out" / "shard-3" / "per_frame.csv").write_text("model,key\n")
    assert "--resume" in _run_script(c["args"][0], {**env, "JOB_COMPLETION_INDEX": "3"}, tmp_path), \
        "a retried shard continues where it stopped"
    # The merge waits for every shard's metrics.json, then merges all N folders:
    for k in range(spec["completions"]):
        (tmp_path / "out" / f"shard-{k}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "out" / f"shard-{k}" / "metrics.json").write_text("{}")
    argv = _run_script(m["args"][0], merge_env, tmp_path)
    merged = argv[argv.index("--merge") + 1 : argv.index("--output_dir")]
    assert merged == [str(tmp_path / "out" / f"shard-{k}") for k in range(spec["completions"])]
    # Shards write from several nodes at once: the output volume must be ReadWriteMany.
    claims = {p["metadata"]["name"]: p for p in k8s_kind("PersistentVolumeClaim")}
    for job_ in (shards, merge):
        for volume in job_["spec"]["template"]["spec"]["volumes"]:
            claim = claims[volume["persistentVolumeClaim"]["claimName"]]
            if volume["name"] == "output":
                assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
