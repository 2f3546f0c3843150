"""FRAME + GENERATED crops + BOXES (+ BLUR_BOXES, + ROLL) -> DEID_FRAME (feathered blend of the generated faces
turned back to their roll; unusable crops are masked; low-confidence faces blurred)."""

import triton_python_backend_utils as pb_utils

from facedeid.serving.python_backend import parameters, serve_each
from facedeid.stages import compose_frame, frame_limit


class TritonPythonModel:
    def initialize(self, args):
        self.max_pixels = frame_limit(parameters(args))

    def execute(self, requests):
        return serve_each(pb_utils, requests, ["FRAME", "GENERATED", "BOXES", "BLUR_BOXES", "ROLL"], ["DEID_FRAME"],
                          lambda frame, generated, boxes, blur, roll: compose_frame(frame, generated, boxes,
                                                                                    self.max_pixels, blur, roll),
                          optional=("BLUR_BOXES", "ROLL"))
