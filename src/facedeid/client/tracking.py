"""Keep faces anonymised across video frames where the detector briefly loses them.

IoU tracking with a short memory, in the client: each frame's anonymised boxes are matched (greedy, IoU >=
`iou`) to the tracks of the previous frames; a track not matched in a frame is *held*: its last box is anonymised
for up to `memory` more frames. Why here and not Triton's sequence batcher with a stateful model: the state is a
handful of boxes per video, which the client that reads the video in order already has; a stateful model would
pin each video to one model instance (sequence slots), need sequence ids/start/end flags on every request and
undo the free spreading of frames over servers and concurrent requests that the client does. Keeping it in the
client keeps every served model stateless.

The network generators are continuous, deterministic functions of the crop (no noise input), so a tracked face
changes little between frames. ksame is deterministic but picks its donor average per crop, so small changes of box
and exposure switch donors often (`python tools/ksame_stability.py`); the track ids returned by `update` are what
a per-track donor would be keyed on, which no served model takes yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_MEMORY = 5  # frames a lost face stays anonymised (0.2 s at 25 fps)
DEFAULT_IOU = 0.3


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from ..metrics import iou_matrix as metric_iou

    return metric_iou(a, b)


@dataclass
class Track:
    id: int
    box: np.ndarray
    missed: int = 0  # consecutive frames without a detection


@dataclass
class FaceTracker:
    memory: int = DEFAULT_MEMORY
    iou: float = DEFAULT_IOU
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 0
    held_total: int = 0  # boxes anonymised only because a track held them

    def update(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """This frame's anonymised boxes -> (boxes to hold [K,4]: tracks lost in this frame, track ids of `boxes`)."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        ids = np.full(len(boxes), -1, np.int64)
        matched_tracks: set[int] = set()
        if self.tracks and len(boxes):
            overlap = iou_matrix(boxes, np.stack([t.box for t in self.tracks]))
            for flat in np.argsort(-overlap, axis=None, kind="stable"):
                i, j = divmod(int(flat), overlap.shape[1])
                if overlap[i, j] < self.iou:
                    break
                if ids[i] < 0 and j not in matched_tracks:
                    ids[i] = self.tracks[j].id
                    matched_tracks.add(j)
                    self.tracks[j].box, self.tracks[j].missed = boxes[i], 0
        survivors = []
        held = []
        for j, track in enumerate(self.tracks):
            if j in matched_tracks:
                survivors.append(track)
                continue
            track.missed += 1
            if track.missed <= self.memory:
                survivors.append(track)
                held.append(track.box)
        for i in np.nonzero(ids < 0)[0]:
            ids[i] = self.next_id
            survivors.append(Track(self.next_id, boxes[i]))
            self.next_id += 1
        self.tracks = survivors
        self.held_total += len(held)
        return np.asarray(held, np.float32).reshape(-1, 4), ids
