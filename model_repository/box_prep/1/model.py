"""FRAME + caller BOXES_IN (pixels) -> CROPS for the generator and the cleaned BOXES."""

import triton_python_backend_utils as pb_utils

from facedeid.serving.python_backend import parameters, serve_each
from facedeid.serving.stages import frame_limit, prep_given


class TritonPythonModel:
    def initialize(self, args):
        params = parameters(args)
        self.size = int(params["crop_size"])
        self.max_pixels = frame_limit(params)

    def execute(self, requests):
        return serve_each(pb_utils, requests, ["FRAME", "BOXES_IN"], ["CROPS", "BOXES"],
                          lambda frame, boxes: prep_given(frame, boxes, self.size, self.max_pixels))
