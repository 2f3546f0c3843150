"""docker/start-triton.sh: the one way the server starts (compose, the server image's CMD and Kubernetes run it).

The script is run for real with a stand-in server binary that prints the argv it receives: the flags, the admin key
read from the secret file, and --model-config-name, including the error for a configuration name the repository
does not have.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_helpers import (
    COMPOSE_FILE,
    DOCKER,
    START_COMMAND,
    START_SCRIPT,
    _rel,
    check_triton_args,
    deep_interpolate,
    exec_form,
    k8s_kind,
    parse_dockerfile,
    restricted,
    run_start_script,
    start_script_argv,
)

REPOSITORY = START_SCRIPT.parents[1] / "model_repository"


@pytest.mark.parametrize("script", sorted(DOCKER.glob("*.sh")), ids=_rel)
def test_shell_scripts_parse(script):
    out = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert os.access(script, os.X_OK), f"{_rel(script)} is not executable"


def test_flags_and_the_admin_key_from_the_secret_file(tmp_path):
    key_file = tmp_path / "triton_admin_key"
    key_file.write_text("s3cr3t-key\n")
    argv = start_script_argv(tmp_path, {"TRITON_ADMIN_KEY_FILE": str(key_file)}, "--log-verbose=1")
    check_triton_args(argv, "docker/start-triton.sh")
    for flag in ("--grpc-restricted-protocol", "--http-restricted-api"):
        apis, header, key = restricted(argv, flag)
        assert (header, key) == ("admin-key", "s3cr3t-key")
        assert {"model-repository", "model-config", "statistics", "trace", "logging", "shared-memory"} <= apis
    assert argv[-1] == "--log-verbose=1", "extra arguments are appended"
    assert not [a for a in argv if a.startswith("--model-config-name")], "no name: the CPU default config.pbtxt"


def test_no_key_file_locks_the_apis_with_a_random_key(tmp_path):
    first = start_script_argv(tmp_path, {})
    second = start_script_argv(tmp_path, {})
    keys = {restricted(argv, "--http-restricted-api")[2] for argv in (first, second)}
    assert len(keys) == 2 and all(len(k) == 32 for k in keys), keys
    assert "random key" in run_start_script(tmp_path, {}).stderr


@pytest.mark.parametrize("content, message", [("", "is empty"), ("\n", "is empty")])
def test_a_broken_key_file_is_an_error(tmp_path, content, message):
    key_file = tmp_path / "key"
    key_file.write_text(content)
    out = run_start_script(tmp_path, {"TRITON_ADMIN_KEY_FILE": str(key_file)})
    assert out.returncode == 2 and message in out.stderr and not out.stdout


def test_model_config_name(tmp_path):
    env = {"TRITON_MODEL_REPOSITORY": str(REPOSITORY)}
    argv = start_script_argv(tmp_path, {**env, "TRITON_MODEL_CONFIG_NAME": "gpu"})
    assert f"--model-repository={REPOSITORY}" in argv and "--model-config-name=gpu" in argv
    out = run_start_script(tmp_path, {**env, "TRITON_MODEL_CONFIG_NAME": "gpu2"})
    assert out.returncode == 2 and not out.stdout, "an unknown name must not start the server"
    assert "TRITON_MODEL_CONFIG_NAME=gpu2: no model in" in out.stderr and "configs/gpu2.pbtxt" in out.stderr


def test_compose_dockerfile_and_kubernetes_all_run_the_script():
    compose = deep_interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), {})
    triton = compose["services"]["triton"]
    assert triton["command"][0] == START_COMMAND
    instrs = parse_dockerfile(DOCKER / "Dockerfile.server")
    (cmd,) = [exec_form(a) for i, a, _ in instrs if i == "CMD"]
    assert cmd == [START_COMMAND]
    assert any(i == "COPY" and f"docker/{START_SCRIPT.name}" in a and a.endswith(START_COMMAND) for i, a, _ in instrs)
    (dep,) = k8s_kind("Deployment")
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == START_COMMAND and "command" not in container
    # Nobody else spells out the server's flags: they live in the script only.
    for args in (triton["command"], container["args"]):
        assert not [a for a in args if "restricted" in str(a) or str(a).startswith("--model-repository")], args


def test_the_script_starts_the_real_server_with_the_key_from_the_file(exported_repo, tmp_path):
    """The same script on the CPU tritonserver (2.51): the restricted APIs answer only with the file's key."""
    import shutil
    import sys
    import time
    import urllib.error
    import urllib.request

    from facedeid.serving.local_server import free_port

    repo = tmp_path / "repo"
    for model in ("box_prep", "compose", "mobileunet", "generate_mobileunet", "deid_mobileunet_boxes"):
        shutil.copytree(exported_repo[0] / model, repo / model)
    key_file = tmp_path / "triton_admin_key"
    key_file.write_text("file-key-123\n")
    http = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TRITON_MODEL_REPOSITORY": str(repo),
           "TRITON_ADMIN_KEY_FILE": str(key_file), "TRITONSERVER": str(Path(sys.executable).with_name("tritonserver"))}
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - open for the server's lifetime
    server = subprocess.Popen(["sh", str(START_SCRIPT), f"--http-port={http}", f"--grpc-port={free_port()}",
                               f"--metrics-port={free_port()}"], env=env, stdout=log, stderr=subprocess.STDOUT)

    def status(path: str, key: str | None = None) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{http}{path}", headers={"admin-key": key} if key else {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - http:// built above
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if status("/v2/health/ready") == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("server not ready:\n" + (tmp_path / "server.log").read_text()[-3000:])
        assert status("/v2/models/mobileunet/stats") == 403
        assert status("/v2/models/mobileunet/stats", "wrong-key") == 403
        assert status("/v2/models/mobileunet/stats", "file-key-123") == 200
        assert status("/v2/models/deid_mobileunet_boxes") == 200, "metadata stays open"
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
