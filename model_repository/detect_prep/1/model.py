"""FRAME (RGB uint8) -> IMAGE (full resolution, tiled when large) and IMAGE_SMALL (downscaled; with ROTATIONS its
four turned copies) for CenterFace."""

import triton_python_backend_utils as pb_utils

from facedeid.serving.python_backend import parameters, serve_each
from facedeid.stages import detection_settings, detector_inputs, frame_limit, full_size, min_face, rotations


class TritonPythonModel:
    def initialize(self, args):
        params = parameters(args)
        self.max_pixels = frame_limit(params)
        self.full_size = full_size(params)
        self.min_face = min_face(params)
        self.rotations = rotations(None, params.get("rotations", "0") == "1")
        self.det_size = detection_settings(det_size=float(params["det_size"]))[1]

    def execute(self, requests):
        def run(frame, det_size, turned):
            size = self.det_size if det_size is None else detection_settings(det_size=det_size)[1]
            return detector_inputs(frame, size, max_pixels=self.max_pixels, full_size=self.full_size,
                                   rotations=rotations(turned, self.rotations), min_face=self.min_face)

        return serve_each(pb_utils, requests, ["FRAME", "DET_SIZE", "ROTATIONS"], ["IMAGE", "IMAGE_SMALL"], run,
                          optional=("DET_SIZE", "ROTATIONS"))
