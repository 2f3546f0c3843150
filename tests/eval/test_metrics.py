"""Metric definitions against hand-computed values; aggregation by bin; the printed table format."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facedeid import metrics as M
from facedeid.evaluation import table as T


# ------------------------------------------------------------------------------------------ ssim / psnr
def test_psnr_hand_computed():
    a = np.zeros((8, 8, 3), np.uint8)
    b = np.full((8, 8, 3), 10, np.uint8)  # MSE = 100
    expected_db = 10 * math.log10(255**2 / 100)  # 28.1308 dB
    assert M.psnr_db(a, b) == pytest.approx(expected_db, abs=1e-9)
    assert M.PSNR_CAP_DB == pytest.approx(48.1308, abs=1e-4)
    assert M.psnr_norm(expected_db) == pytest.approx(expected_db / (20 * math.log10(255)), abs=1e-12)
    assert M.psnr_db(a, a) == M.PSNR_CAP_DB and M.psnr_norm(M.psnr_db(a, a)) == 1.0
    c = a.copy()
    c[0, 0, 0] = 1  # MSE = 1/192 -> PSNR above the cap
    assert M.psnr_norm(M.psnr_db(a, c)) == 1.0
    assert M.psnr_norm(M.psnr_db(a, np.full_like(a, 255))) == 0.0


def test_ssim_hand_computed_for_flat_crops():
    # flat crops: variances and covariance are 0, so SSIM = (2*mu_a*mu_b + C1) / (mu_a^2 + mu_b^2 + C1)
    a = np.full((16, 16, 3), 100, np.uint8)
    b = np.full((16, 16, 3), 150, np.uint8)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 150 + c1) / (100**2 + 150**2 + c1)  # 0.92311
    assert M.ssim(a, b) == pytest.approx(expected, abs=1e-6)
    assert M.ssim(a, a) == 1.0


def test_ssim_is_clipped_to_zero():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert M.ssim(a, 255 - a) == 0.0  # anti-correlated: raw SSIM < 0


def test_face_scores_use_generator_resolution_crops(astronaut):
    boxes = np.array([[181.5, 58.2, 269.9, 177.8]], np.float32)
    same = M.crop_scores(*M.face_crops(astronaut, astronaut, boxes, 128))
    assert same["ssim"] == [1.0] and same["psnr"] == [1.0]
    changed = astronaut.copy()
    changed[58:178, 181:270] = 0
    scores = M.crop_scores(*M.face_crops(astronaut, changed, boxes, 128))
    assert scores["ssim"][0] < 0.7 and scores["psnr"][0] < 0.5  # the crop is 1.4x the box
    # pixels far from the face do not matter
    far = astronaut.copy()
    far[400:, :100] = 0
    assert M.crop_scores(*M.face_crops(astronaut, far, boxes, 128))["ssim"] == [1.0]


# ------------------------------------------------------------------------------------------ boxes / det
def test_iou_and_one_to_one_matching():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [100, 100, 110, 110]], np.float32)
    assert np.allclose(M.iou_matrix(a, b), [[50 / 150, 1.0, 0.0]])
    targets = np.array([[0, 0, 10, 10], [1, 0, 11, 10]], np.float32)
    one = np.array([[0, 0, 10, 10]], np.float32)  # one detection cannot find two faces
    assert M.match_boxes(targets, one).tolist() == [True, False]
    assert M.match_boxes(targets, np.zeros((0, 4))).tolist() == [False, False]
    assert M.match_boxes(np.zeros((0, 4)), one).tolist() == []
    # IoU exactly 0.5 counts
    assert M.match_boxes(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 5]])).tolist() == [True]


def test_cosine():
    assert M.cosine([1, 0], [0, 1]) == 0.0
    assert M.cosine([3, 4], [6, 8]) == pytest.approx(1.0)
    assert M.cosine([1, 1], [1, 0]) == pytest.approx(1 / math.sqrt(2))


# -------------------------------------------------------------------------------- networks (real weights)
def test_image_sim_network_has_real_trained_weights():
    import skimage.data

    sim = M.ImageSimilarity()
    frames = [skimage.data.chelsea(), skimage.data.coffee()]
    feats = sim.features(frames)
    assert feats.shape == (2, 1280)
    assert np.allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    same = sim.features([frames[0]])
    assert M.cosine(feats[0], same[0]) == pytest.approx(1.0, abs=1e-5)
    assert M.cosine(feats[0], feats[1]) < 0.9
    # ImageNet classes: the cat photo is a cat (281-285), the coffee photo an espresso (967)
    import cv2
    import torch

    x = (np.stack([cv2.resize(f, (224, 224), interpolation=cv2.INTER_AREA) for f in frames]).astype(np.float32)
         - 127.0) / 128.0
    with torch.inference_mode():
        batch = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
        top = sim.model(batch).argmax(1).tolist()
        torch_pooled = sim.model.extract_features(batch).mean(dim=(2, 3)).numpy()
    assert 281 <= top[0] <= 285 and top[1] == 967
    # the features come from ONNX Runtime: the same as the PyTorch network's to float rounding
    np.testing.assert_allclose(sim.pooled(frames, cv2.INTER_AREA), torch_pooled, atol=1e-4)


def test_det_metric_sees_large_faces_at_the_smallest_labels_size(astronaut):
    """`det` shrinks a frame as far as its smallest labelled face keeps DET_METRIC_MIN_FACE px: the same face found,
    at its box in the frame's own pixels; a frame whose smallest face is under that size is searched as it is."""
    import cv2

    from facedeid.evaluation.measure import DET_METRIC_MIN_FACE, Measurers, det_found

    detector = Measurers().det
    box = np.array([[181.5, 58.2, 269.9, 177.8]], np.float32)
    big = cv2.resize(astronaut, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)  # a 350 px face in 2048 px
    seen = []
    spy = lambda frame: (seen.append(frame.shape[:2]), detector(frame))[1]  # noqa: E731 - the real detector
    assert det_found(spy, big, box * 4).tolist() == [True]
    assert max(seen[-1]) < 2048 * DET_METRIC_MIN_FACE / 88 * 1.05  # shrunk until the 88 px-wide face is 64 px
    assert det_found(spy, big, box * 4 + np.float32([600, 0, 600, 0])).tolist() == [False]  # a box off the face
    small = cv2.resize(astronaut, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)  # a 44 px face
    assert det_found(spy, small, box / 2).tolist() == [True] and seen[-1] == small.shape[:2]
    assert det_found(spy, small, np.zeros((0, 4), np.float32)).shape == (0,)


def test_reid_same_box_distance(astronaut):
    import cv2

    rec = M.FaceRecognizer()
    box = np.array([[181.5, 58.2, 269.9, 177.8]], np.float32)
    orig = rec.descriptors(astronaut, box)
    assert orig.shape == (1, 128)
    assert M.reid_distances(orig, rec.descriptors(astronaut.copy(), box))[0] == pytest.approx(0.0, abs=1e-6)
    blurred = cv2.GaussianBlur(astronaut, (0, 0), 12)
    assert M.reid_distances(orig, rec.descriptors(blurred, box))[0] > M.REID_THRESHOLD


# ------------------------------------------------------------------------------------- aggregation / table
def _row(key, b, faces, s, reid, det, status="ok", **kw):
    row = {"model": "m", "key": key, "status": status, "bin": b, "faces": str(faces), "ssim": repr(s),
           "psnr": repr(s / 2), "psnr_db": repr(s * 10), "image_sim": repr(1 - s / 10),
           "reid_matches": str(reid), "reid_dist": "0.5", "det_found": str(det), "orig_det_found": str(faces),
           "gt_faces": str(faces), "gt_recalled": "", "server_faces": str(faces), "latency_ms": "10.0",
           "server_s": "0.1"}
    row.update({k: str(v) for k, v in kw.items()})
    return row


def test_aggregate_per_face_per_frame_per_bin():
    rows = [
        _row("a", "10", 2, 0.2, 1, 2),
        _row("b", "10", 1, 0.4, 0, 0),
        _row("c", "50", 3, 0.6, 3, 1),
        _row("d", "none", 0, 0.0, 0, 0, image_sim="1.0", ssim="", psnr="", psnr_db=""),
        _row("e", "30", 1, 0.9, 1, 1, status="skipped:bad_image"),
        _row("f", "30", 1, 0.9, 1, 1, status="skipped:server_error"),
    ]
    s = T.aggregate(rows)
    t = s["table"]
    assert t["ssim"]["10"] == pytest.approx(0.3)  # mean of per-frame means
    assert t["ssim"]["50"] == pytest.approx(0.6)
    assert t["ssim"]["average"] == pytest.approx((0.2 + 0.4 + 0.6) / 3)
    assert t["ssim"]["30"] is None and t["ssim"]["70above"] is None  # empty bins
    assert t["reid"]["10"] == pytest.approx(1 / 3)  # share of faces, not of frames
    assert t["reid"]["average"] == pytest.approx(4 / 6)
    assert t["det"]["average"] == pytest.approx(3 / 6)
    assert t["faces"]["average"] == 6 and t["frames"]["average"] == 3 and t["frames"]["30"] == 0
    assert s["no_face_frames"] == 1 and s["no_face_image_sim"] == 1.0
    assert s["skipped"] == {"bad_image": 1, "server_error": 1}
    assert s["throughput"]["frames_per_s"] == pytest.approx(4 / 0.4)
    assert s["throughput"]["faces_per_s"] == pytest.approx(6 / 0.4)
    assert s["throughput"]["latency_p50_ms"] == 10.0
    assert s["det_on_originals"] == 1.0 and s["detector_recall"] is None


def test_table_format_matches_the_original():
    rows = [_row("a", "10", 2, 0.25, 1, 2), _row("c", "70above", 1, 0.5, 0, 1)]
    text = T.format_table(T.aggregate(rows))
    lines = text.splitlines()
    assert lines[0] == "\t        10% \t30% \t50% \t70% \t70above\taverage"
    assert lines[1] == "-" * 59
    assert lines[2] == "ssim    \t0.2500\t#\t#\t#\t0.5000\t0.3750"
    assert lines[3].startswith("psnr    \t2.5000\t#")  # dB, as the original prints it (normalised in the JSON)
    assert lines[4].startswith("image sim\t0.9750\t#")
    assert [ln.split("\t")[0] for ln in lines[2:]] == ["ssim    ", "psnr    ", "image sim", "reid    ",
                                                        "det     ", "faces   ", "frames  "]
    assert lines[5] == "reid    \t0.5000\t#\t#\t#\t0.0000\t0.3333"
    assert lines[7] == "faces   \t2\t0\t0\t0\t1\t3"
    assert lines[8] == "frames  \t1\t0\t0\t0\t1\t2"
    tp = T.format_throughput(T.aggregate(rows))
    assert tp.startswith("throughput: 10.00 frames/s, 15.00 faces/s, request latency p50 10.0 ms, p95 10.0 ms")
    comparison = T.format_comparison({"gen": T.aggregate(rows), "blur": T.aggregate(rows[:1])})
    assert comparison.splitlines()[2].startswith("gen") and "10.00" in comparison.splitlines()[2]


# ------------------------------------------------------------------- identification, impostor rate, fid_eff
def _unit(seed: int, n: int = 1) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 128))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_identification_needs_another_photo_of_the_same_person_nearest_and_within_threshold():
    alice, bob = _unit(1)[0], _unit(2)[0]
    gallery = np.stack([alice, alice + 0.01, bob])  # alice photo 1, alice photo 2, bob photo 1
    persons, photos = ["alice", "alice", "bob"], ["a1", "a2", "b1"]
    probe = alice + 0.02
    # from photo a1: a1 itself is not in the gallery for it, a2 (same person, close) is nearest -> identified
    assert M.identification(probe[None], ["alice"], ["a1"], gallery, persons, photos).tolist() == [True]
    # bob's probe near alice's faces: nearest is alice -> not identified (a wrong identity is no leak of bob)
    assert M.identification(alice[None], ["bob"], ["b2"], gallery, persons, photos).tolist() == [False]
    # the right person but farther than 0.6 -> not identified
    far = alice + 0.7 * _unit(3)[0]
    assert M.identification(far[None], ["alice"], ["a3"], gallery[:2], persons[:2], photos[:2]).tolist() == [False]


def test_impostor_rate_counts_only_pairs_of_different_people():
    a = _unit(4)[0]
    desc = np.stack([a, a + 0.01, a + 0.02, _unit(5)[0]])
    rate, pairs = M.impostor_rate(desc, ["p", "p", "q", "r"])
    assert pairs == 5  # p-q twice, p-r twice, q-r
    assert rate == pytest.approx(2 / 5)  # only the two p-q pairs are within 0.6
    assert math.isnan(M.impostor_rate(desc[:2], ["p", "p"])[0])


def test_frechet_distance_of_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    b = rng.normal(size=(4000, 3)) * 2 + np.array([1.0, 0, 0])
    # closed form for N(0, I) vs N(m, 4I): |m|^2 + 3 * (1 + 4 - 2 * 2) = 1 + 3
    assert M.frechet_distance(a, b) == pytest.approx(4.0, rel=0.05)
