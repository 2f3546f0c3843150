"""Session fixtures: an exported model repository and a real Triton server on free ports."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from facedeid.serving import local_server

from helpers import exported_repository


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
