"""dataset.json: what a data set says about itself that a metric relies on (dlib's chance level pairs)."""

from __future__ import annotations

import pytest

from facedeid.data.dna import DATASET_CARD, faces_of_one_frame_differ
from facedeid.data.sample import build


def test_real_footage_needs_no_card(tmp_path):
    assert faces_of_one_frame_differ(tmp_path) is True


def test_the_bundled_sample_says_its_two_face_frames_are_one_person(tmp_path):
    build(tmp_path, shared=None)
    assert (tmp_path / DATASET_CARD).is_file() and faces_of_one_frame_differ(tmp_path) is False


@pytest.mark.parametrize("text, message", [('{"faces_of_one_frame_are_different_people": "no"}', "true or false"),
                                           ("[1, 2]", "not a JSON object"), ("{", "not a JSON object")])
def test_a_bad_card_is_refused_with_its_path(tmp_path, text, message):
    (tmp_path / DATASET_CARD).write_text(text)
    with pytest.raises(ValueError, match=message):
        faces_of_one_frame_differ(tmp_path)
