"""The report-set evaluation (facedeid.evaluation.faces) on a few real people, in process."""

from __future__ import annotations

import pytest

from facedeid.evaluation import faces, faces_tables

from helpers import shared_faces_dir


def test_people_are_split_by_person():
    selection, report = faces.split_people(["amy_adams", "kate_siegel", "tom_cruise", "deepface_person_04"])
    assert selection == ["amy_adams", "tom_cruise"] and report == ["kate_siegel", "deepface_person_04"]


@pytest.mark.shared
def test_untouched_is_identified_and_ksame_is_not(tmp_path):
    identities = tmp_path / "identities"
    identities.mkdir()
    for person in ("deepface_person_04", "deepface_person_05", "amy_adams"):  # two report people, one selection
        (identities / person).symlink_to(shared_faces_dir() / "identities" / person)
    result = faces.evaluate(identities, ["ksame"], n_reference=40, grids=tmp_path, log=lambda *_: None)
    assert result["report_people"] == ["deepface_person_04", "deepface_person_05"]
    untouched, ksame = result["results"]["untouched"], result["results"]["ksame"]
    assert untouched["ident_faces"]["average"] == 10 < untouched["faces"]["average"]  # main faces of 10 photos
    assert untouched["ident"]["average"] >= 0.8  # the ceiling: other photos of the same person are found
    assert ksame["ident"]["average"] <= 0.2
    assert ksame["det_retention"]["average"] >= 0.8 and untouched["det_retention"]["average"] == 1.0
    assert ksame["image_sim"]["average"] > result["results"]["blur"]["image_sim"]["average"]
    assert ksame["fid_eff"] < result["results"]["blur"]["fid_eff"]
    assert 0 < ksame["fid_faces"] == result["results"]["blur"]["fid_faces"] <= untouched["faces"]["average"]
    assert (tmp_path / "faces_ksame.jpg").exists() and not (tmp_path / "faces_untouched.jpg").exists()
    assert "ksame" in faces_tables.markdown(result)
    # issue 21: both attackers on face and context crops, sharpness, per face size; the largest faces side by side
    base, big = untouched["by_face_size"]["128-px"], ksame["by_face_size"]["128-px"]
    assert base["faces"] == big["faces"] > 0 and base["sharpness_ratio"] == 1.0
    assert base["ident"] >= 0.8 and base["ident_second"] >= 0.5  # both recognizers find the untouched people
    assert big["ident"] <= 0.2 and big["ident_second"] <= 0.2
    assert big["ident_context"] is not None and big["ident_second_context"] is not None
    assert 0.5 <= big["sharpness_ratio"] and 0 < big["sharpness_ratio_native"] <= 1.2
    assert set(result["second_impostor_rate_by_face_size"]) == set(result["impostor_rate_by_face_size"])
    assert (tmp_path / "largest_ksame.jpg").exists()
    assert "faceres" in faces_tables.bands_table(result)


def test_checkpoint_items_are_checked():
    with pytest.raises(ValueError, match="GEN=PATH"):
        faces.parse_checkpoints(["nosuchgen=/tmp/x.pt"])
    with pytest.raises(FileNotFoundError):
        faces.parse_checkpoints(["mobileunet@new=/nonexistent/m.pt"])


@pytest.mark.shared
def test_selection_people_and_a_candidate_checkpoint(tmp_path):
    import torch

    from facedeid.models.registry import GENERATORS

    identities = tmp_path / "identities"
    identities.mkdir()
    for person in ("paul_rudd", "kate_siegel"):  # one selection person, one report person (2 photos each)
        (identities / person).symlink_to(shared_faces_dir() / "identities" / person)
    state = torch.load(GENERATORS["mobileunet"].checkpoint, weights_only=True)
    flat = {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in state.items()}
    torch.save(flat, tmp_path / "flat.pt")  # a candidate that paints a flat grey face
    checkpoints = faces.parse_checkpoints([f"mobileunet@flat={tmp_path / 'flat.pt'}"])
    result = faces.evaluate(identities, ["mobileunet"], n_reference=40, log=lambda *_: None,
                            people_set="selection", checkpoints=checkpoints)
    assert result["people"] == "selection" and result["named_selection_people"] == ["paul_rudd"]
    rows = result["results"]
    assert rows["untouched"]["ident_faces"]["average"] == 2  # the selection person's 2 photos, not the report one's
    assert set(rows) == {"untouched", "blur", "mosaic", "mobileunet", "mobileunet@flat"}
    assert result["checkpoints"] == {"mobileunet@flat": str(tmp_path / "flat.pt")}
    assert rows["mobileunet@flat"]["ssim"]["average"] != rows["mobileunet"]["ssim"]["average"]


def test_close_ups_scale_the_largest_face_and_are_measured_on_their_own_faces(tmp_path):
    import numpy as np

    from facedeid.detection import CenterFaceDetector
    from facedeid.train.data import read_rgb

    frame = read_rgb(shared_faces_dir() / "identities" / "deepface_person_04" / "1.jpg")
    detector = CenterFaceDetector(threads=2)
    boxes, _ = detector(frame)
    close = faces.close_up(frame, boxes[faces.main_face(boxes)], 700)
    found, _ = detector(close)
    side = found[faces.main_face(found)]
    assert 450 < max(side[2] - side[0], side[3] - side[1]) < 840  # the face is now about 700 px (boxes vary by scale)
    assert max(close.shape[:2]) <= 700 * faces.CLOSE_UP_WINDOW + 2
    identities = tmp_path / "identities"
    identities.mkdir()
    for person in ("deepface_person_04", "deepface_person_05"):
        (identities / person).symlink_to(shared_faces_dir() / "identities" / person)
    result = faces.evaluate(identities, [], n_reference=40, log=lambda *_: None, zoom=400)
    untouched = result["results"]["untouched"]
    assert result["zoom"] == 400 and untouched["by_face_size"]["128-px"]["faces"] >= 8  # every photo a close-up
    assert untouched["det_retention"]["average"] == 1.0 and untouched["reid"]["average"] == 1.0
    assert np.isclose(untouched["by_face_size"]["128-px"]["sharpness_ratio"], 1.0)
