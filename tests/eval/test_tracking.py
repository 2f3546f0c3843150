"""Video: a face the detector loses in single frames (motion blur) stays anonymised, through the real server."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from facedeid.client import DeidClient
from facedeid.client.media import FaceCounts, _deid_stream, deid_tracked
from facedeid.client.tracking import FaceTracker

FACE = (slice(30, 88), slice(92, 134))  # the astronaut's face in a 256x256 frame (CenterFace: 90,28 - 136,89)


def motion_blur(frame):
    return cv2.filter2D(frame, -1, np.ones((1, 41), np.float32) / 41)  # a fast pan: CenterFace finds nothing here


@pytest.fixture(scope="module")
def clip():
    clear = cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    pattern = "ccbcbbc"  # c: clear, b: motion-blurred (missed by the detector)
    return [(f"f{i}", clear if k == "c" else motion_blur(clear)) for i, k in enumerate(pattern)], pattern


def test_tracker_holds_a_lost_face_for_its_memory_then_drops_it():
    tracker = FaceTracker(memory=2)
    box = np.array([[10, 10, 50, 60]], np.float32)
    held, ids = tracker.update(box)
    assert len(held) == 0 and ids.tolist() == [0]
    held, ids = tracker.update(box + 3)  # same face, moved a little: same track
    assert len(held) == 0 and ids.tolist() == [0]
    for _ in range(2):
        held, _ = tracker.update(np.zeros((0, 4), np.float32))
        np.testing.assert_allclose(held, box + 3)
    assert len(tracker.update(np.zeros((0, 4), np.float32))[0]) == 0  # memory spent
    assert tracker.update(box + 100)[1].tolist() == [1]  # a face elsewhere is a new track
    assert tracker.held_total == 2


def test_video_face_missed_in_single_frames_is_anonymised_in_every_frame(triton, clip):
    frames, pattern = clip
    with DeidClient(triton.grpc_url, concurrency=2) as client:
        counts = FaceCounts()
        tracked = [out for _, out in deid_tracked(client, "deid_mobileunet", frames, FaceTracker(memory=3), counts)]
        untracked = list(_deid_stream(client, "deid_mobileunet", frames))
    for (name, original), out, plain, kind in zip(frames, tracked, untracked, pattern):
        change = np.abs(out[FACE].astype(float) - original[FACE]).mean()
        assert change > 10, f"{name} ({kind}): face not anonymised (mean abs diff {change:.1f})"
        if kind == "b":  # without tracking this frame would leak: the detector found nothing in it
            assert np.array_equal(plain[1], original)
    # the same face gets the same replacement: identical input frames give identical outputs, and a held frame
    # is painted in the window of the last detection
    assert np.array_equal(tracked[0], tracked[1]) and np.array_equal(tracked[0], tracked[3])
    assert counts.frames == len(frames) and counts.generated == len(frames)  # one face per frame, held ones too
