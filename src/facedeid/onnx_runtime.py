"""ONNX Runtime on the CPU, the way the Python-backend generator and detector models run it.

The one ONNX Runtime layer: the served models (serving/python_backend.py), the in-process pipeline
(facedeid.pipeline), the in-process detector (facedeid.detection) and export's parity check all open sessions here.
It lives outside `serving/` so that `detection` can use it without importing the serving package (which imports
`detection`). On a GPU host the same model.onnx (or model.plan) is served by Triton's native backends instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def cpu_session(model_path: Path | str | bytes, threads: int = 0, spin: bool = True, arena: bool = True):
    """ONNX Runtime CPU session. `spin=False` stops idle pool threads from busy-waiting for the next op/run.

    `arena=False` for a model fed inputs of any size (the detector): ONNX Runtime's CPU arena keeps the largest
    buffers it ever needed (a 4K frame's tiles: hundreds of MB per process) for the life of the session; without
    it they go back to the allocator after each run (docs/reliability.md, "Memory after large frames").

    Spinning keeps a core busy after every op; that is cheap on a machine of its own, but in a Triton server where
    the detector and the generator are separate processes (and Python stages run beside them) on few cores, the
    spinning threads of one model steal the cores another model needs (measured: docs/benchmarks.md).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Inside a container with few cores, oversubscription costs more than it gives.
    options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = arena
    source = model_path if isinstance(model_path, bytes) else str(model_path)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def spin_enabled(value: str | None) -> bool:
    """The `spin` config parameter: busy-waiting thread pools only when asked for (absent means off)."""
    return value not in (None, "0", "false", "False")


class BatchedGenerator:
    """Runs every crop of every request in one ONNX Runtime call, then splits the result back per request.

    Fail closed: if the run fails, every crop comes back as NaN, which compose turns into a masked face.
    """

    def __init__(self, model_path: Path | str, threads: int = 0, spin: bool = True):
        self.session = cpu_session(model_path, threads, spin)
        self.input_name = self.session.get_inputs()[0].name
        self.last_error: str | None = None

    def __call__(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        counts = [len(b) for b in batches]
        try:
            stacked = np.concatenate(batches, axis=0).astype(np.float32, copy=False)
            out = self.session.run(None, {self.input_name: stacked})[0]
            if out.shape != stacked.shape:
                raise ValueError(f"generator returned shape {list(out.shape)} for input {list(stacked.shape)}")
            self.last_error = None
        except Exception as error:  # noqa: BLE001 - any failure must mask, never pass original pixels on
            self.last_error = f"{type(error).__name__}: {error}"
            out = np.full((sum(counts),) + batches[0].shape[1:], np.nan, np.float32)
        return np.split(out, np.cumsum(counts)[:-1])
