"""FRAME + caller BOXES_IN (pixels) -> CROPS for the generator and the cleaned BOXES."""

import triton_python_backend_utils as pb_utils

from facedeid.serving.python_backend import parameters, serve_each
from facedeid.serving.stages import prep_given


class TritonPythonModel:
    def initialize(self, args):
        self.size = int(parameters(args)["crop_size"])

    def execute(self, requests):
        return serve_each(pb_utils, requests, ["FRAME", "BOXES_IN"], ["CROPS", "BOXES"],
                          lambda frame, boxes: prep_given(frame, boxes, self.size))
