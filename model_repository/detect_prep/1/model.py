"""FRAME (RGB uint8) -> IMAGE: the frame resized for CenterFace."""

import triton_python_backend_utils as pb_utils

from facedeid.serving.python_backend import serve_each
from facedeid.serving.stages import detector_input


class TritonPythonModel:
    def execute(self, requests):
        return serve_each(pb_utils, requests, ["FRAME"], ["IMAGE"], detector_input)
