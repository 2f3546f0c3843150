"""FRAME + CenterFace maps -> CROPS for the generator and the BOXES they came from."""

import triton_python_backend_utils as pb_utils

from facedeid.serving.python_backend import parameters, serve_each
from facedeid.serving.stages import frame_limit, prep_detected


class TritonPythonModel:
    def initialize(self, args):
        params = parameters(args)
        self.size = int(params["crop_size"])
        self.threshold = float(params["threshold"])
        self.max_pixels = frame_limit(params)

    def execute(self, requests):
        def run(frame, heatmap, scale, offset):
            return prep_detected(frame, heatmap, scale, offset, self.size, self.threshold, max_pixels=self.max_pixels)

        return serve_each(pb_utils, requests, ["FRAME", "HEATMAP", "SCALE", "OFFSET"], ["CROPS", "BOXES"], run)
