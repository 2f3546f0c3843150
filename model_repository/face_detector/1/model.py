"""CenterFace detector served by the Python backend: ONNX Runtime over model.onnx next to this file (CPU serving)."""

import triton_python_backend_utils as pb_utils

from facedeid.serving.python_backend import OnnxModel
from facedeid.stages import check_detector_image


class TritonPythonModel(OnnxModel):
    def initialize(self, args):
        self.setup(pb_utils, args, batched=False, validate=check_detector_image)
