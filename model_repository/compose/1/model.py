"""FRAME + GENERATED crops + BOXES -> DEID_FRAME (feathered blend; unusable crops are masked)."""

import triton_python_backend_utils as pb_utils

from facedeid.serving.python_backend import serve_each
from facedeid.serving.stages import compose_frame


class TritonPythonModel:
    def execute(self, requests):
        return serve_each(pb_utils, requests, ["FRAME", "GENERATED", "BOXES"], ["DEID_FRAME"], compose_frame)
