"""FRAME + CenterFace maps of both scales -> CROPS for the generator (turned upright), the BOXES they came from, the
low-confidence BLUR_BOXES that compose blurs, the LANDMARKS of BOXES and their ROLL."""

import triton_python_backend_utils as pb_utils

from facedeid.serving.python_backend import parameters, serve_each
from facedeid.stages import (
    detection_settings,
    frame_limit,
    full_size,
    min_face,
    min_generate_side,
    prep_detected,
    rotations,
)

MAPS = ["HEATMAP", "SCALE", "OFFSET", "LANDMARKS"]
SETTINGS = ["THRESHOLD", "DET_SIZE", "GENERATE_THRESHOLD"]


class TritonPythonModel:
    def initialize(self, args):
        params = parameters(args)
        self.size = int(params["crop_size"])
        self.defaults = detection_settings(
            defaults=(float(params["threshold"]), int(params["det_size"]), float(params["generate_threshold"])))
        self.max_pixels = frame_limit(params)
        self.min_side = min_generate_side(params)
        self.full_size = full_size(params)
        self.min_face = min_face(params)
        self.rotations = rotations(None, params.get("rotations", "0") == "1")

    def execute(self, requests):
        def run(frame, *tensors):
            full, small, settings, turned = tensors[:4], tensors[4:8], tensors[8:11], tensors[11]
            threshold, det_size, generate = detection_settings(*settings, defaults=self.defaults)
            return prep_detected(frame, full, small, self.size, threshold, det_size, generate,
                                 max_pixels=self.max_pixels, min_generate_side=self.min_side,
                                 full_size=self.full_size, rotations=rotations(turned, self.rotations),
                                 min_face=self.min_face)

        return serve_each(pb_utils, requests,
                          ["FRAME", *MAPS, *[m + "_SMALL" for m in MAPS], *SETTINGS, "ROTATIONS"],
                          ["CROPS", "BOXES", "BLUR_BOXES", "LANDMARKS", "ROLL"], run,
                          optional=(*SETTINGS, "ROTATIONS"))
