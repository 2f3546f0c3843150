"""The metrics of a chunk side by side, one frame per task (its originals, then every model's output:
evaluation/chunk.measure_frames), while the main process reads frames, talks to the server(s) and writes the rows in
order: in --metric-threads threads of the main process (the default, 2), or in --workers processes.

Threads: every metric network runs in ONNX Runtime (dlib's ResNet too, facedeid.dlib_resnet), which lets go of
Python's GIL while it computes, so two frames are measured at once on two cores at no extra memory but the frames in
flight. Processes (--workers) were the way before that port, when dlib held the GIL for a whole descriptor. Each
worker loads the metric networks once (one compute thread per library, evaluation/measure.py) and writes the
frame's per-face records itself (per-key files, as the main process would). A worker gets a frame, its labels and
the de-identified copies, and returns the rows: the main process holds at most two chunks of frames (runner.py),
the workers one frame each, so memory stays bounded by the frames in flight. The numbers are the ones measured in
the main process (the same code, one image per forward pass).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from .measure import Loaded, Measurers

_CONTEXT = None  # this worker's Context, set once by `_start`


@dataclass
class Context:
    """What chunk.measure_frames needs of an Evaluation, in a worker."""

    args: SimpleNamespace
    out: Path
    cache_folder: Path | None

    def __post_init__(self):
        from .originals import Cache

        self.measure = Measurers()
        self.originals_cache = Cache(self.cache_folder)

    def _row(self, model, frame, status, **extra):
        from .chunk import row_of

        return row_of(model, frame, status, **extra)


def _start(args: SimpleNamespace, out: Path, cache_folder: Path | None) -> None:
    import signal

    global _CONTEXT
    # Ctrl-C reaches the whole process group: the main process stops the run (its rows are safe, --resume goes on)
    # and shuts the pool down; a worker ends the frame it measures instead of printing a traceback of its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _CONTEXT = Context(args, out, cache_folder)


def _measure(x: Loaded, outputs: dict) -> tuple[dict, int, int]:
    from .chunk import measure_frames

    cache = _CONTEXT.originals_cache
    hits, misses = cache.hits, cache.misses
    outputs = {model: ([x], results) for model, (_, results) in outputs.items()}  # this x, not its pickled twin
    rows = measure_frames(_CONTEXT, [x], outputs)
    return rows, cache.hits - hits, cache.misses - misses


def pool(ev, workers: int) -> ProcessPoolExecutor:
    """N worker processes for ev's metrics (spawned: a forked copy of a process running ONNX Runtime's or torch's
    thread pools can hang)."""
    args = SimpleNamespace(boxes=ev.args.boxes, identify=getattr(ev.args, "identify", False))
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start,
                               initargs=(args, ev.out, ev.originals_cache.folder))


def _of_frame(x: Loaded, outputs: dict) -> dict:
    """The outputs of one frame (the ones that came back), in measure_frames' form."""
    return {model: ([x], [r]) for model, (todo, results) in outputs.items()
            for y, r in zip(todo, results) if y is x and r[0] is not None}


def measure_in_threads(ev, loaded: list[Loaded], outputs: dict) -> dict:
    """chunk.measure_frames over ev.threads, one frame per task: {(model, key): row}."""
    from .chunk import measure_frames

    tasks = [ev.threads.submit(measure_frames, ev, [x], _of_frame(x, outputs)) for x in loaded]
    rows = {}
    for task in tasks:
        rows.update(task.result())
    return rows


def measure_in_pool(ev, loaded: list[Loaded], outputs: dict) -> dict:
    """chunk.measure_frames over ev.pool, one frame per task: {(model, key): row}."""
    tasks = [ev.pool.submit(_measure, Loaded(x.frame, x.image, x.gt_px), _of_frame(x, outputs)) for x in loaded]
    rows = {}
    for task in tasks:
        frame_rows, hits, misses = task.result()
        rows.update(frame_rows)
        ev.originals_cache.hits += hits
        ev.originals_cache.misses += misses
    return rows
