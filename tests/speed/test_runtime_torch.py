"""facedeid.runtime_torch: the PyTorch CenterFace against ONNX Runtime, the in-process PyTorch pipeline against the
ONNX one over an exported repository, and `facedeid run --local` without a server, all on real photos (CPU here;
the same code runs on CUDA with fp16 and CUDA graphs, which only eval/gpu_check.py measures)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facedeid import runtime_torch, stages
from facedeid.crops import extract_crops, to_tensor
from facedeid.pipeline import Deidentifier, OnnxDetector

from helpers import assert_deidentified, astronaut_crowd, exported_repository, read_rgb

FACEDEID = Path(sys.executable).parent / "facedeid"


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return astronaut_crowd()


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    return exported_repository(tmp_path_factory.mktemp("repo") / "model_repository", ["mobileunet"])[0]


def test_centerface_in_pytorch_matches_onnx_runtime(scene):
    image, small = stages.detector_inputs(scene, 384, full_size=768)
    for blob in (image, small):
        ours = runtime_torch.TorchDetector("cpu")(blob)
        ref = OnnxDetector(threads=1)(blob)
        for a, b in zip(ours, ref):
            assert a.shape == b.shape and a.dtype == np.float32
            np.testing.assert_allclose(a, b, atol=2e-4, rtol=1e-4)
        assert ref[0].max() > 0.5  # the scene's faces are in the heatmap: the comparison is not of empty maps


def test_unknown_onnx_op_is_refused_by_name():
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Tanh", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    with pytest.raises(ValueError, match="Tanh"):
        runtime_torch.CenterFaceTorch(helper.make_model(graph).SerializeToString())
    assert onnx  # the converter reads the same onnx package


def test_pytorch_pipeline_matches_the_onnx_pipeline(repository, scene):
    onnx_deid = Deidentifier.from_repository(repository, "mobileunet", threads=1)
    torch_deid = Deidentifier.local("mobileunet", "cpu")
    ref, ref_boxes, ref_blur = onnx_deid.deidentify(scene)
    out, boxes, blurred = torch_deid.deidentify(scene)
    assert len(ref_boxes) >= 3
    np.testing.assert_allclose(boxes, ref_boxes, atol=0.05)
    np.testing.assert_allclose(blurred, ref_blur, atol=0.05)
    diff = np.abs(out.astype(np.int16) - ref)
    assert diff.max() <= 3 and diff.mean() < 0.01, (diff.max(), diff.mean())
    assert_deidentified(scene, out, boxes, blurred=blurred)


def test_ksame_landmarks_from_the_pytorch_detector_give_the_served_faces(scene):
    from facedeid.ksame import KSame

    boxes = Deidentifier.local("mobileunet", "cpu").deidentify(scene)[1]
    crops = to_tensor(extract_crops(scene, boxes, 128)[0])
    served = KSame()(crops)
    local = runtime_torch.generator("ksame", "cpu")(crops)
    diff = np.abs(local - served) * 127.5
    # By default the face is placed on, and masked by, dlib's 68 landmarks, which dlib's regression trees find from
    # a rectangle set by the detector's five points: the PyTorch detector's points (within 0.05 px of ONNX Runtime's)
    # can move some of the 68 by a pixel, and the placed face and its mask's edge with them. The chain without dlib
    # (five-point placement, the mean's mask) must match to rounding.
    assert diff.mean() < 0.5 and (diff > 3).mean() < 0.05, (diff.mean(), (diff > 3).mean())
    torch_landmarks = runtime_torch.TorchLandmarks(runtime_torch.TorchDetector("cpu", None))
    five = {"mask": "mean", "place": "five"}
    pasted = np.abs(KSame(landmarks=torch_landmarks, **five)(crops) - KSame(**five)(crops)) * 127.5
    assert pasted.max() <= 3, pasted.max()


def test_generator_fails_closed():
    gen = runtime_torch.TorchGenerator.from_registry("mobileunet", "cpu")
    out = gen(np.zeros((2, 3, 64, 64), np.float32))  # wrong crop size for the network's skips: the run fails
    assert np.isnan(out).all() and gen.last_error


def test_run_local_without_a_server(tmp_path, scene):
    from facedeid.data.dna import write_image

    src = tmp_path / "scene.png"
    write_image(src, scene)
    dst = tmp_path / "out.png"
    proc = subprocess.run([str(FACEDEID), "run", str(src), str(dst), "--local", "--device", "cpu", "--model",
                           "mobileunet", "--url", "127.0.0.1:1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    expected, boxes, blurred = Deidentifier.local("mobileunet", "cpu").deidentify(scene)
    # the same frame up to PyTorch's CPU float sums, whose order follows the thread count of each process
    difference = np.abs(read_rgb(dst).astype(np.int16) - expected.astype(np.int16))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-4, (difference.max(), (difference > 0).sum())
    assert_deidentified(scene, expected, boxes, blurred=blurred)
    bad = subprocess.run([str(FACEDEID), "run", str(src), str(tmp_path / "x.png"), "--local", "--device", "tpu"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--device must be cpu, cuda" in bad.stderr and "Traceback" not in bad.stderr


def test_sample_with_frames_makes_a_set_of_that_length(tmp_path):
    """`facedeid data sample --frames N`: the 163- and 1,000-frame sets of the evaluation's speed and memory checks."""
    from facedeid.data.dna import boxes_to_pixels, read_image, scan_dataset
    from facedeid.data.sample import build

    keys = build(tmp_path, shared=None, frames=20)
    frames = scan_dataset(tmp_path)
    assert len(keys) == len(frames) == 20
    extra = [f for f in frames if f.key.startswith("extra/")]
    assert len(extra) == 8 and {f.n_faces for f in extra} == {1, 2, 3}
    for f in extra:  # every pasted face lies inside its frame with a real size
        image = read_image(f.image_path)
        boxes = boxes_to_pixels(f.boxes_norm, image.shape[1], image.shape[0])
        assert (boxes[:, 2] > boxes[:, 0] + 4).all() and (boxes[:, 3] <= image.shape[0] + 0.5).all()
