"""docker-compose.yml: parsed and interpolated as Compose does (every variable at its default), and rendered by a
real Compose v2 client where one is installed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from deploy_helpers import (
    COMPOSE_FILE,
    EXPORT_IMAGES,
    ROOT,
    SECRET_PATH,
    START_COMMAND,
    TRITON_PORTS,
    TRITONSERVER_BIN,
    YAML_FILES,
    _rel,
    check_triton_args,
    compose_client,
    deep_interpolate,
    exec_form,
    from_images,
    image_is_pinned,
    parse_dockerfile,
    port_mapping,
    run_compose_config,
    start_script_argv,
    volume_mounts,
)


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def resolved(compose):
    """The compose file with every variable at its default."""
    return deep_interpolate(compose, {})


@pytest.mark.parametrize("path", YAML_FILES, ids=_rel)
def test_yaml_parses(path):
    docs = [d for d in yaml.safe_load_all(path.read_text())]
    assert docs and all(isinstance(d, dict) and d for d in docs), f"{_rel(path)}: empty or non-mapping document"


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


def test_compose_ports_bind_loopback_by_default(compose, resolved):
    published = {}
    for name, svc in resolved["services"].items():
        for entry in svc.get("ports", []):
            ip, target = port_mapping(entry)
            assert ip == "127.0.0.1", f"service {name}: port {entry!r} is not bound to 127.0.0.1 by default"
            published.setdefault(name, set()).add(target)
    assert published == {"triton": TRITON_PORTS}
    # ... and the user can say otherwise through one variable.
    everywhere = "0.0.0.0"  # noqa: S104 - the value a user may set; the test binds nothing
    wide = deep_interpolate(compose, {"TRITON_BIND": everywhere})
    assert {port_mapping(e)[0] for e in wide["services"]["triton"]["ports"]} == {everywhere}
    for raw in compose["services"]["triton"]["ports"]:
        assert str(raw).startswith("${TRITON_BIND:-127.0.0.1}:"), raw


def test_compose_healthcheck_and_readiness_gate(resolved):
    hc = resolved["services"]["triton"]["healthcheck"]
    test = " ".join(hc["test"]) if isinstance(hc["test"], list) else hc["test"]
    assert re.search(r"(localhost|127\.0\.0\.1):8000/v2/health/ready", test), test
    assert hc.get("retries") and hc.get("interval") and hc.get("start_period")
    assert resolved["services"]["eval"]["depends_on"]["triton"]["condition"] == "service_healthy"


def test_compose_triton_is_locked_down(compose, resolved, tmp_path):
    svc = resolved["services"]["triton"]
    assert svc["command"][0] == START_COMMAND, "the server starts through docker/start-triton.sh"
    env = {k: str(v) for k, v in svc["environment"].items()}
    assert env["TRITON_ADMIN_KEY_FILE"] == SECRET_PATH
    assert env["TRITON_MODEL_CONFIG_NAME"] == "gpu", "the GPU host serves configs/gpu.pbtxt by default"
    # What the script makes of this service's environment and arguments:
    key = tmp_path / "key"
    key.write_text("k3y")
    argv = start_script_argv(tmp_path, {**env, "TRITON_ADMIN_KEY_FILE": str(key), "TRITON_MODEL_REPOSITORY":
                                        str(ROOT / "model_repository")}, *svc["command"][1:])
    check_triton_args([TRITONSERVER_BIN, "--model-repository=/models", *argv[2:]], "docker-compose.yml triton")
    assert "--model-config-name=gpu" in argv
    # The key is a secret file, never a value compose knows or shows.
    assert svc["secrets"] == ["triton_admin_key"] and "triton_admin_key" in compose["secrets"]
    assert compose["secrets"]["triton_admin_key"]["file"].startswith("${DEID_ADMIN_KEY_FILE:-./")
    raw = yaml.safe_dump(compose["services"]["triton"])
    assert "TRITON_ADMIN_KEY}" not in raw and "TRITON_ADMIN_KEY:" not in raw and "admin-key=" not in raw
    mounts = {m["target"]: m for m in volume_mounts(svc)}
    assert mounts["/models"]["read_only"], "the server mounts the model repository read-only"
    assert "security_opt" in compose["services"]["triton"]


def test_compose_services_run_as_non_root_with_limits(resolved):
    for name, svc in resolved["services"].items():
        if name != "export":
            uid = str(svc.get("user", "")).split(":")[0]
            assert uid and uid not in ("0", "root"), f"service {name} runs as root"
        limits = svc["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and re.fullmatch(r"\d+[kmg]", str(limits["memory"])), (name, limits)


def test_compose_gpu_reservation(resolved):
    for name in ("triton", "export"):
        devices = resolved["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) and
                   ("count" in d or "device_ids" in d) for d in devices), f"service {name}: no NVIDIA GPU reserved"


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


def test_docker_compose_config():
    cmd, reason = compose_client()
    if cmd is None:
        pytest.skip(reason)
    out = run_compose_config(cmd, {})
    assert out.returncode == 0, out.stderr
    cfg = json.loads(out.stdout)
    assert {"triton", "eval", "export"} <= cfg["services"].keys()
    ports = cfg["services"]["triton"]["ports"]
    assert {p["host_ip"] for p in ports} == {"127.0.0.1"} and {p["target"] for p in ports} == TRITON_PORTS
    triton = cfg["services"]["triton"]
    assert triton["command"][0] == START_COMMAND and triton["user"] == "1000:1000"
    assert "admin-key" not in out.stdout, "the admin key is a secret file, never in the rendered configuration"
    assert triton["secrets"] == [{"source": "triton_admin_key", "target": SECRET_PATH}]
    assert Path(cfg["secrets"]["triton_admin_key"]["file"]) == ROOT / "secrets" / "triton_admin_key"
    assert triton["environment"]["TRITON_MODEL_CONFIG_NAME"] == "gpu"
    for name in ("triton", "eval", "export"):
        limits = cfg["services"][name]["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and int(limits["memory"]) > 2**30, (name, limits)
    devices = cfg["services"]["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"
    for svc in cfg["services"].values():
        for v in svc.get("volumes", []):
            if v["type"] == "bind":
                assert Path(v["source"]).resolve().is_relative_to(ROOT), f"default host path outside the checkout: {v}"
    assert cfg["services"]["eval"]["depends_on"]["triton"]["condition"] == "service_healthy"

    everywhere = "0.0.0.0"  # noqa: S104 - the value a user may set; the test binds nothing
    wide = run_compose_config(cmd, {"TRITON_BIND": everywhere, "DEID_DATASET_DIR": "/srv/dna"})
    assert wide.returncode == 0, wide.stderr
    wide_cfg = json.loads(wide.stdout)
    assert {p["host_ip"] for p in wide_cfg["services"]["triton"]["ports"]} == {everywhere}
    assert {v["source"] for v in wide_cfg["services"]["eval"]["volumes"] if v["target"] == "/data"} == {"/srv/dna"}

