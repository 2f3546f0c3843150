"""A generator that fails must never let the original face through."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from facedeid.compose import MASK_RGB
from facedeid.serving import local_server

from helpers import ASTRONAUT_FACE, assert_deidentified, box_region, deid, failing_generator


@pytest.fixture(scope="module")
def faulty_server(exported_repo, tmp_path_factory):
    """Server where mobileunet raises inside the model and d2gan is unavailable (its model file is missing)."""
    repo = tmp_path_factory.mktemp("faulty") / "model_repository"
    shutil.copytree(exported_repo[0], repo, ignore=shutil.ignore_patterns("resnet50unet", "*resnet50unet*"))
    onnx.save(failing_generator(), repo / "mobileunet" / "1" / "model.onnx")
    (repo / "d2gan" / "1" / "model.onnx").unlink()
    log = repo.parent / "server.log"
    with local_server.running(repo, log, extra_args=["--exit-on-error=false", "--strict-readiness=false"]) as server:
        yield server


def test_exception_inside_generator_masks_the_face(faulty_server, astronaut):
    client = grpcclient.InferenceServerClient(faulty_server.grpc_url)
    for model, boxes in (("deid_mobileunet", None), ("deid_mobileunet_boxes", ASTRONAUT_FACE[None])):
        result, used = deid(client, model, astronaut, boxes)
        assert len(used) == 1
        assert_deidentified(astronaut, result, used)
        face = box_region(result, used[0]).reshape(-1, 3)
        assert np.array_equal(np.unique(face, axis=0), [MASK_RGB]), "face was not masked"


def test_unavailable_generator_refuses_instead_of_returning_the_frame(faulty_server, astronaut):
    client = grpcclient.InferenceServerClient(faulty_server.grpc_url)
    assert not client.is_model_ready("d2gan")
    with pytest.raises(InferenceServerException):
        deid(client, "deid_d2gan", astronaut)
