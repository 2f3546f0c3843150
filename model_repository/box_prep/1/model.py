"""FRAME + caller BOXES_IN (pixels, optional ROLL_IN degrees) -> CROPS for the generator (turned upright), the
cleaned BOXES and their ROLL."""

import triton_python_backend_utils as pb_utils

from facedeid.serving.python_backend import parameters, serve_each
from facedeid.stages import frame_limit, prep_given


class TritonPythonModel:
    def initialize(self, args):
        params = parameters(args)
        self.size = int(params["crop_size"])
        self.max_pixels = frame_limit(params)

    def execute(self, requests):
        return serve_each(pb_utils, requests, ["FRAME", "BOXES_IN", "ROLL_IN"], ["CROPS", "BOXES", "ROLL"],
                          lambda frame, boxes, roll: prep_given(frame, boxes, self.size, self.max_pixels, roll),
                          optional=("ROLL_IN",))
