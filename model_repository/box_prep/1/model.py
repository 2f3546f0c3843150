"""FRAME + caller BOXES_IN (pixels, optional ROLL_IN degrees, optional LANDMARKS_IN) -> CROPS for the generator
(turned upright), the cleaned BOXES, their ROLL and CROP_LANDMARKS (LANDMARKS_IN in crop pixels; NaN: not given)."""

import triton_python_backend_utils as pb_utils

from facedeid.serving.python_backend import parameters, serve_each
from facedeid.stages import frame_limit, given_landmarks, prep_given


class TritonPythonModel:
    def initialize(self, args):
        params = parameters(args)
        self.size = int(params["crop_size"])
        self.max_pixels = frame_limit(params)

    def execute(self, requests):
        def prep(frame, boxes, roll, landmarks):
            crops, used, degrees = prep_given(frame, boxes, self.size, self.max_pixels, roll)
            return crops, used, degrees, given_landmarks(landmarks, used, self.size, roll)

        return serve_each(pb_utils, requests, ["FRAME", "BOXES_IN", "ROLL_IN", "LANDMARKS_IN"],
                          ["CROPS", "BOXES", "ROLL", "CROP_LANDMARKS"], prep, optional=("ROLL_IN", "LANDMARKS_IN"))
