"""FRAME (RGB uint8) -> IMAGE: the frame resized for CenterFace."""

import triton_python_backend_utils as pb_utils

from facedeid.serving.python_backend import parameters, serve_each
from facedeid.serving.stages import detector_input, frame_limit


class TritonPythonModel:
    def initialize(self, args):
        self.max_pixels = frame_limit(parameters(args))

    def execute(self, requests):
        return serve_each(pb_utils, requests, ["FRAME"], ["IMAGE"],
                          lambda frame: detector_input(frame, max_pixels=self.max_pixels))
