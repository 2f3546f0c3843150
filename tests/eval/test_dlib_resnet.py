"""dlib's face-recognition ResNet read from dlib's serialization and run in ONNX Runtime (facedeid.dlib_resnet):
the descriptors dlib's own forward gives, on real faces; files that are not that network are refused."""

from __future__ import annotations

import numpy as np
import pytest

from facedeid import metrics as M
from facedeid.dlib_resnet import DlibResNet, FormatError, onnx_model


def test_dlib_network_in_onnx_runtime_gives_dlibs_descriptors(astronaut):
    """The ported ResNet against dlib's own forward, on the aligned face chip and on a context crop."""
    import dlib
    import face_recognition_models as frm

    from facedeid.crops import expand_boxes, window_crop

    rec = M.FaceRecognizer()
    encoder = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    box = np.array([[181.5, 58.2, 269.9, 177.8]], np.float32)
    rect = dlib.rectangle(*(int(round(v)) for v in box[0]))
    ours = rec.descriptors(astronaut, box)[0]
    theirs = np.asarray(encoder.compute_face_descriptor(astronaut, rec.shape(astronaut, rect)))
    assert np.linalg.norm(theirs) > 0.1  # a real descriptor, not zeros on both sides
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    context = np.ascontiguousarray(window_crop(astronaut, expand_boxes(box, M.CONTEXT_GROW)[0], M.DLIB_CHIP))
    np.testing.assert_allclose(rec.context_descriptors(astronaut, box)[0],
                               np.asarray(encoder.compute_face_descriptor(context)), atol=1e-5)


def test_other_files_are_refused(tmp_path):
    import face_recognition_models as frm

    with pytest.raises(FormatError, match="not a dlib loss_metric network"):
        onnx_model(frm.pose_predictor_model_location())  # dlib's, but the landmark model
    data = open(frm.face_recognition_model_location(), "rb").read()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[: len(data) // 2])  # the layers of the upper half are missing
    with pytest.raises(FormatError):
        onnx_model(cut)
    with pytest.raises(ValueError, match="150x150x3"):
        DlibResNet()(np.zeros((1, 112, 112, 3), np.uint8))
