"""Session fixtures: an exported model repository and a real Triton server on free ports."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from facedeid.paths import shared_faces_dir
from facedeid.serving import local_server

from helpers import exported_repository

# Tests that need a real Triton server (or the exported repository it serves) are marked `server`, so
# `pytest -m "not server"` runs the unit tests alone; tests that start their own server say so with the mark.
SERVER_FIXTURES = {"triton", "exported_repo"}
# Modules whose tests run the real models, dlib, ffmpeg or whole commands in process (seconds each, no server):
# marked `heavy`, so `pytest -m "not server and not heavy"` is the quick loop (under a minute). The list comes
# from `pytest -m "not server" --durations=120`: the modules that hold most of its time.
HEAVY_MODULES = (
    "tests/eval/test_faces_report.py", "tests/reliability/test_media_files.py", "tests/eval/test_shards.py",
    "tests/eval/test_identification.py", "tests/eval/test_originals_cache.py", "tests/speed/test_gpu_check.py",
    "tests/data/test_photos.py", "tests/eval/test_faceres.py", "tests/serving/test_ksame.py",
    "tests/data/test_data_extract.py", "tests/speed/test_runtime_torch.py", "tests/eval/test_runner.py",
    "tests/tools/test_detector_passes.py", "tests/train/test_training.py", "tests/test_cli.py",
    "tests/train/test_shipped_weights.py", "tests/serving/test_configs.py", "tests/train/test_ksame_target.py",
    "tests/serving/test_detection.py", "tests/eval/test_report.py", "tests/eval/test_dlib_resnet.py",
)


def pytest_collection_modifyitems(config, items):
    """Mark server tests; leave out the extra checks on the developers' face collection (`shared` mark) where it
    is absent (a clone alone): they check data that does not ship, and say so in their mark."""
    has_shared = shared_faces_dir() is not None
    kept, left_out = [], []
    for item in items:
        if SERVER_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.server)
        if item.nodeid.split("::")[0] in HEAVY_MODULES:
            item.add_marker(pytest.mark.heavy)
        (kept if has_shared or item.get_closest_marker("shared") is None else left_out).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept
        config._facedeid_left_out = len(left_out)


def pytest_terminal_summary(terminalreporter, config):
    left_out = getattr(config, "_facedeid_left_out", 0)
    if left_out:
        terminalreporter.write_line(f"{left_out} extra checks on ../shared/data/faces not run: the developers' face "
                                    "collection is not beside this checkout (they run where it is, as in CI)")


@pytest.fixture(scope="session")
def exported_repo(tmp_path_factory):
    """(path, parity results) of a model repository exported from the shipped checkpoints."""
    return exported_repository(tmp_path_factory.mktemp("repo") / "model_repository")


@pytest.fixture(scope="session")
def triton(exported_repo, tmp_path_factory):
    """A running `tritonserver` over the exported repository; yields the LocalServer (grpc_url, http_url, ...)."""
    log = tmp_path_factory.mktemp("logs") / "tritonserver.log"
    server = local_server.start(exported_repo[0], log)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test failing because the session server died says so, with the server's last log lines (its exit code
    and Triton's own crash report), instead of a hundred unexplained 'connection refused'."""
    outcome = yield
    report = outcome.get_result()
    server = getattr(item, "funcargs", {}).get("triton")
    if report.failed and server is not None and server.process.poll() is not None:
        report.sections.append(("tritonserver exited", f"exit code {server.process.returncode}; log tail:\n"
                                f"{server.log_tail(60)}"))
