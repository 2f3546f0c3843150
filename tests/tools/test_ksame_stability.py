"""ksame's donor choice between video frames (tools/ksame_stability.py, a study), on a real photo."""

from __future__ import annotations

import json

import cv2
import skimage.data

from facedeid.ksame import KSame

from helpers import load_tool

stability = load_tool("ksame_stability")
main = stability.main


def _one_person(tmp_path):
    person = tmp_path / "identities" / "tom_cruise"  # a selection person's name: the default --people
    person.mkdir(parents=True)
    cv2.imwrite(str(person / "astronaut.jpg"), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    return tmp_path / "identities"


def test_the_same_frame_keeps_its_donor_and_the_counts_add_up(tmp_path, monkeypatch):
    identities = _one_person(tmp_path)
    monkeypatch.setattr(stability, "BOX_JITTER", 0.0)
    monkeypatch.setattr(stability, "EXPOSURE_JITTER", 0.0)
    still = stability.measure(identities, "selection", frames=4)
    assert still["faces"] == 1 and still["frame_pairs"] == 3
    assert still["donor_switches"] == 0 and still["max_distinct_donors"] == 1


def test_the_command_reports_switches_of_jittered_frames(tmp_path, capsys):
    out = tmp_path / "stability.json"
    assert main(["--identities", str(_one_person(tmp_path)), "--frames", "6", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    face = result["per_face"][0]
    assert result["frame_pairs"] == 5 and 0 <= result["donor_switches"] <= 5
    assert face["photo"] == "tom_cruise/astronaut.jpg" and 1 <= face["distinct_donors"] <= 6
    assert (face["switches"] > 0) == (face["distinct_donors"] > 1)
    assert "consecutive pairs" in capsys.readouterr().out


def test_donors_are_the_averages_generate_pastes(tmp_path):
    import numpy as np

    from facedeid.crops import extract_crops
    from facedeid.detection import CenterFaceDetector

    frame = skimage.data.astronaut()
    crops, _ = extract_crops(frame, CenterFaceDetector(threshold=0.5)(frame)[0][:1], 128)
    generator = KSame()
    index = int(generator.donors(crops)[0])
    points, _ = generator.landmarks(crops)
    # replace() with the bank reduced to the chosen average gives the same face: the choice is the one generate makes
    only = KSame(generator.bank, generator.landmarks)
    only.bank.faces = generator.bank.faces.copy()
    expected = generator.generate(crops)[0]
    keep = np.zeros(len(only.bank.faces), bool)
    keep[index] = True
    only.bank.faces[~keep] = 0
    assert np.array_equal(only.generate(crops)[0], expected)
