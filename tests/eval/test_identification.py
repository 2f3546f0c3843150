"""`eval/triton_eval.py --identify`: identification against the data set's own originals, locally and served."""

from __future__ import annotations

import json
import shutil

import pytest
from eval_helpers import eval_argv

from facedeid.data.detectors import LocalDetector
from facedeid.data.photos import convert
from facedeid.evaluation.cli import build_parser
from facedeid.evaluation.runner import Evaluation

from helpers import shared_faces_dir

PEOPLE = ("deepface_person_04", "deepface_person_05", "lin_manuel_miranda")  # two named, one distractor


@pytest.fixture(scope="module")
def people_dir(tmp_path_factory):
    if shared_faces_dir() is None:
        pytest.fail("../shared/data/faces is not present: the tests using this fixture carry the `shared` mark")
    photos = tmp_path_factory.mktemp("people")
    for person in PEOPLE:
        shutil.copytree(shared_faces_dir() / "identities" / person, photos / person)
    out = tmp_path_factory.mktemp("people_dna")
    convert(photos, out, LocalDetector())
    return out


def run(argv):
    args = build_parser().parse_args(argv)
    args.argv = argv
    return Evaluation(args).run()


@pytest.mark.shared
def test_identify_counts_named_faces_per_bin_and_survives_resume(people_dir, tmp_path, capsys):
    out = tmp_path / "out"
    metrics = run(eval_argv(people_dir, out, "blur,mosaic", "--identify"))
    for model in ("blur", "mosaic"):
        ident = metrics["results"][model]["identification"]
        # the main face of each photo of the two people with several photos counts; the one-photo person and the
        # bystanders are only distractors
        assert ident["ident_faces"]["average"] == 10
        assert 0.0 <= ident["ident"]["average"] <= 1.0
        assert sum(n for b, n in ident["ident_faces"].items() if b != "average") == 10
    ceiling = metrics["identification_untouched"]  # the untouched faces themselves
    assert ceiling["ident_faces"]["average"] == 10 and ceiling["ident"]["average"] >= 0.8
    printed = capsys.readouterr().out
    assert "ident   \t" in printed and "== identification of the untouched faces (the ceiling) ==" in printed
    assert "\t  ident\tfid_eff\t" in printed  # the comparison's ident column
    assert len(list((out / "descriptors" / "original").glob("*.npz"))) == 11
    again = run(eval_argv(people_dir, out, "blur,mosaic", "--identify", "--resume"))
    assert json.dumps(again["results"]["blur"]["identification"]) == json.dumps(
        metrics["results"]["blur"]["identification"])


@pytest.mark.shared
def test_served_ksame_is_not_identified(people_dir, tmp_path, triton):
    metrics = run(eval_argv(people_dir, tmp_path / "out", "ksame", "--identify", "--url", triton.grpc_url))
    ident = metrics["results"]["ksame"]["identification"]
    assert ident["ident_faces"]["average"] == 10 and ident["ident"]["average"] <= 0.2
    assert metrics["results"]["ksame"]["table"]["det"]["average"] >= 0.8
    # dlib's chance level beside reid: pairs of the two named people's faces across photos (and bystanders)
    chance = metrics["impostor_rate_by_face_size"]
    assert sum(c["across_people_pairs"] for c in chance.values()) > 0
    assert all(c["impostor_rate"] is None or 0 <= c["impostor_rate"] <= 1 for c in chance.values())
    fid = metrics["fid_eff"]["models"]
    assert fid["ksame"]["faces"] == fid["untouched"]["faces"] > 0 and fid["ksame"]["fid_eff"] > 0
