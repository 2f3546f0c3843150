"""One face, one replacement, for a whole track: video tracking in the client, over a stateless server.

Per video frame (`deid_video`): `detect_faces` finds the faces in two tiers (confident: the served generate
threshold and size; low-confidence); `FaceTracker.update` matches them to the tracks of earlier frames (greedy IoU),
smooths each track's box (One-Euro filter, as trackers do, so the pasted face does not jitter) and decides what
each box gets; the frame then goes to `<model>_boxes` with the generate-tier boxes, the blur-tier boxes and, for
generators with a choice per face (ksame's donor average), the choice the track fixed. The first confident frame of
a track lets the generator choose (DONOR -1); the reply's DONOR_USED is fixed for the rest of the track, so a face
never changes who it looks like between frames. A scene cut (a jump of the colour histogram) ends every track.

What a box gets (privacy first, and no generated face on something that may not be a face, as for stills):
* a detection the detector was confident on in this frame: a generated face, in the track's smoothed box;
* a low-confidence detection (tracked or not): the blur tier;
* a track lost in this frame (the detector missed it, e.g. motion blur): its last box is blurred for up to
  `memory` more frames, then the track ends.

Why in the client and not Triton's sequence batcher with a stateful model: the state is a handful of boxes and
indices per video, which the client that reads the video in order already has; a stateful model would pin each
video to one model instance, need sequence ids/start/end flags on every request and undo the free spreading of
frames over servers and concurrent requests. Keeping it here keeps every served model stateless.

Landmarks: the detector's five landmarks of a confident face jitter from frame to frame, and ksame places its average
by them, so a still face's replacement would shimmer. Each track smooths them with the same One-Euro filter, in the
face's moving frame of reference (the filtered points are carried along by the face's optical flow before each step,
so a camera move is followed without lag), and sends them (LANDMARKS_IN) with the box. The server stays stateless;
without LANDMARKS_IN it finds the landmarks on each crop. Each face's ROLL from the detector goes with it (ROLL_IN).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from .smoothing import MAX_SMOOTH_SHIFT, LandmarkFilter, OneEuro, face_motion  # noqa: F401 - the tracker's filters

DEFAULT_MEMORY = 5  # frames a lost face stays anonymised (0.2 s at 25 fps)
DEFAULT_IOU = 0.3
DEFAULT_FPS = 25.0
# Scene cut: Bhattacharyya distance of consecutive frames' hue-saturation / value histograms (0 same, 1 disjoint).
# Measured on the tests' real photos: a 16 px/frame pan across two photos stays under 0.2, cuts between
# scikit-image photos are over 0.5.
CUT_THRESHOLD = 0.4


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from ..metrics import iou_matrix as metric_iou

    return metric_iou(a, b)


# --------------------------------------------------------------------------------------------- scene cuts
def frame_signature(frame: np.ndarray) -> np.ndarray:
    """Normalised colour histograms of a frame (hue x saturation 16x8, value 16), from a 96 px thumbnail."""
    import cv2

    h, w = frame.shape[:2]
    scale = 96 / max(h, w)
    small = cv2.resize(np.ascontiguousarray(frame[:, :, :3]), (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hs = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256]).ravel()
    v = cv2.calcHist([hsv], [2], None, [16], [0, 256]).ravel()
    return np.concatenate([hs / max(hs.sum(), 1), v / max(v.sum(), 1)]).astype(np.float32)


def cut_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance of two `frame_signature`s: the larger of the hue-saturation and value parts."""
    def bhattacharyya(p, q):
        return float(np.sqrt(max(0.0, 1.0 - np.sqrt(p * q).sum())))

    return max(bhattacharyya(a[:128], b[:128]), bhattacharyya(a[128:], b[128:]))


@dataclass
class CutDetector:
    threshold: float = CUT_THRESHOLD
    previous: np.ndarray | None = None

    def __call__(self, frame: np.ndarray) -> bool:
        """True when `frame` starts a new shot (never for the first frame)."""
        signature = frame_signature(frame)
        cut = self.previous is not None and cut_distance(self.previous, signature) > self.threshold
        self.previous = signature
        return cut


# ------------------------------------------------------------------------------------------------ tracker
@dataclass
class Track:
    id: int
    box: np.ndarray  # last detected box (what the next frame is matched to)
    smoother: OneEuro
    smooth: np.ndarray  # last smoothed box
    missed: int = 0  # consecutive frames without a detection
    donor: int | None = None  # the generator's choice, fixed from the first confident frame's reply
    landmarks: LandmarkFilter | None = None  # started on the first frame with landmarks, restarted if the roll turns
    roll: float = 0.0  # the roll (degrees) the landmark filter runs at
    seen: np.ndarray | None = None  # the box its landmarks were last smoothed in (where its motion is measured)
    seen_at: int = -1  # and the frame


@dataclass
class FramePlan:
    """What one frame asks of `<model>_boxes`."""
    boxes: np.ndarray  # float32 [N,4] smoothed boxes of confident detections: generated faces
    ids: np.ndarray  # int [N] their track ids
    donors: np.ndarray  # int32 [N] the fixed choice of each, -1 where the track has none yet
    blur: np.ndarray  # float32 [K,4] low-confidence detections and lost tracks' boxes: the blur tier
    held: int = 0  # of `blur`, boxes of tracks lost in this frame
    cut: bool = False  # this frame started a new shot (every earlier track ended)
    landmarks: np.ndarray | None = None  # float32 [N,10] the tracks' smoothed landmarks (None: none were given)
    roll: np.ndarray | None = None  # float32 [N] each face's roll from the detector (None: none was given)


@dataclass
class FaceTracker:
    memory: int = DEFAULT_MEMORY
    iou: float = DEFAULT_IOU
    fps: float = DEFAULT_FPS
    cut_threshold: float = CUT_THRESHOLD
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 0
    held_total: int = 0  # boxes anonymised (blurred) only because a track held them
    cuts: int = 0
    cuts_at: list[int] = field(default_factory=list)
    frames: int = 0

    def __post_init__(self):
        self._cuts = CutDetector(self.cut_threshold)
        self._grey: np.ndarray | None = None  # the previous frame, grey: where the faces' motion is measured from

    def update(self, confident: np.ndarray, unsure: np.ndarray | None = None, frame: np.ndarray | None = None,
               landmarks: np.ndarray | None = None, roll: np.ndarray | None = None) -> FramePlan:
        """This frame's detections (generate tier [N,4], blur tier [K,4]), the frame itself (for cut detection)
        and the generate tier's landmarks [N,10] and roll [N] degrees (optional) -> the frame's plan."""
        confident = np.asarray(confident, np.float32).reshape(-1, 4)
        unsure = np.zeros((0, 4), np.float32) if unsure is None else np.asarray(unsure, np.float32).reshape(-1, 4)
        cut = frame is not None and self._cuts(frame)
        if cut:
            self.tracks = []
            self.cuts += 1
            self.cuts_at.append(self.frames)
        self.frames += 1
        boxes = np.concatenate([confident, unsure])
        ids = np.full(len(boxes), -1, np.int64)
        matched: set[int] = set()
        if self.tracks and len(boxes):
            overlap = iou_matrix(boxes, np.stack([t.box for t in self.tracks]))
            for flat in np.argsort(-overlap, axis=None, kind="stable"):
                i, j = divmod(int(flat), overlap.shape[1])
                if overlap[i, j] < self.iou:
                    break
                if ids[i] < 0 and j not in matched:
                    ids[i] = self.tracks[j].id
                    matched.add(j)
        by_id = {t.id: t for t in self.tracks}
        survivors, held = [], []
        for j, track in enumerate(self.tracks):
            if j in matched:
                survivors.append(track)
                continue
            track.missed += 1
            if track.missed <= self.memory:
                survivors.append(track)
                held.append(track.smooth)
        for i in np.nonzero(ids < 0)[0]:
            track = Track(self.next_id, boxes[i], OneEuro(self.fps), boxes[i])
            ids[i] = track.id
            by_id[track.id] = track
            survivors.append(track)
            self.next_id += 1
        for i, track_id in enumerate(ids):
            track = by_id[int(track_id)]
            track.box, track.missed = boxes[i], 0
            track.smooth = track.smoother(boxes[i])
        self.tracks = survivors
        self.held_total += len(held)
        n = len(confident)
        gen_ids = ids[:n]
        smooth = np.stack([by_id[int(t)].smooth for t in gen_ids]) if n else np.zeros((0, 4), np.float32)
        donors = np.array([-1 if by_id[int(t)].donor is None else by_id[int(t)].donor for t in gen_ids], np.int32)
        blur = np.concatenate([unsure, np.asarray(held, np.float32).reshape(-1, 4)])
        rolls = None if roll is None else np.asarray(roll, np.float32).reshape(n)
        points = None
        if landmarks is not None:
            points = self._landmarks(np.asarray(landmarks, np.float32).reshape(n, 10), gen_ids, by_id, smooth,
                                     rolls, frame)
        return FramePlan(smooth.astype(np.float32), gen_ids, donors, blur, len(held), bool(cut), points, rolls)

    def _landmarks(self, landmarks: np.ndarray, ids: np.ndarray, by_id: dict, boxes: np.ndarray,
                   rolls: np.ndarray | None, frame: np.ndarray | None) -> np.ndarray:
        """Each generate-tier track's smoothed landmarks [N,10] (see LandmarkFilter)."""
        import cv2

        grey = None if frame is None else cv2.cvtColor(np.ascontiguousarray(frame[:, :, :3]), cv2.COLOR_RGB2GRAY)
        before, self._grey = self._grey, grey
        out = np.empty((len(ids), 10), np.float32)
        for i, track_id in enumerate(ids):
            track, turned = by_id[int(track_id)], 0.0 if rolls is None else float(rolls[i])
            if track.landmarks is None or track.roll != turned:  # points of another roll are another frame
                track.landmarks, track.roll, track.seen = LandmarkFilter(self.fps), turned, None
            motion = None
            if (before is not None and grey is not None and before.shape == grey.shape and track.seen is not None
                    and track.seen_at == self.frames - 2):  # smoothed in the frame before this one
                motion = face_motion(before, grey, track.seen)
            out[i] = track.landmarks(landmarks[i], boxes[i], motion)
            track.seen, track.seen_at = boxes[i], self.frames - 1
        return out

    def fix(self, ids: np.ndarray, donors: np.ndarray | None) -> None:
        """Keep the generator's choice (DONOR_USED) for tracks that have none yet."""
        if donors is None:
            return
        by_id = {t.id: t for t in self.tracks}
        for track_id, donor in zip(np.asarray(ids).tolist(), np.asarray(donors).reshape(-1).tolist()):
            track = by_id.get(int(track_id))
            if track is not None and track.donor is None and donor >= 0:
                track.donor = int(donor)

    def donor_of(self, track_id: int) -> int | None:
        return next((t.donor for t in self.tracks if t.id == track_id), None)


# ------------------------------------------------------------------------------------------- the video loop
def takes_donor(model: str) -> bool:
    """Whether the ensemble `model` (deid_<gen>) has a per-face choice a track fixes (serving DONOR_GENERATORS)."""
    from ..ksame import NAME

    return model == f"deid_{NAME}"


def deid_video(engine, model: str, frames: Iterable[tuple[str, np.ndarray]], tracker: FaceTracker,
               window: int | None = None) -> Iterator[tuple[str, object, FramePlan | None]]:
    """(name, DeidResult or the exception that frame met, its plan) for the frames of one video, in order.

    Detection requests run `window` frames ahead; each frame's `<model>_boxes` request is sent as soon as its plan
    is known. A frame that starts a track of a DONOR generator is awaited before the next frame is planned, so that
    track's choice is fixed from its first frame on (one wait per new face, not per frame)."""
    from .triton import DeidError

    window = window or 2 * getattr(engine, "concurrency", 4)
    boxes_model = f"{model}_boxes"
    donor = takes_donor(model)

    def detected():
        pending: deque = deque()

        def pop():
            name, frame, future = pending.popleft()
            try:
                return name, frame, future.result()
            except BaseException as exc:  # noqa: BLE001 - handed on in order
                return name, frame, exc

        for name, frame in frames:
            pending.append((name, frame, engine.submit_detect(frame)))
            if len(pending) >= window:
                yield pop()
        while pending:
            yield pop()

    pending: deque = deque()

    def pop():
        name, future, plan = pending.popleft()
        if isinstance(future, BaseException):
            return name, future, plan
        try:
            return name, future.result(), plan
        except BaseException as exc:  # noqa: BLE001 - handed on in order
            return name, DeidError(f"{name}: {exc}"), plan

    for name, frame, found in detected():
        if isinstance(found, BaseException):
            pending.append((name, DeidError(f"{name}: {found}"), None))
        else:
            plan = tracker.update(found.boxes, found.blurred, frame, found.landmarks if donor else None, found.roll)
            future = engine.submit(boxes_model, frame, plan.boxes, plan.donors if donor else None, plan.blur,
                                   roll=plan.roll, landmarks=plan.landmarks)
            pending.append((name, future, plan))
            if donor and (plan.donors < 0).any():
                try:
                    tracker.fix(plan.ids, future.result().donors)
                except Exception:  # noqa: BLE001, S110 - reported with its frame below; the next frame chooses again
                    pass
        while len(pending) >= window:
            yield pop()
    while pending:
        yield pop()
