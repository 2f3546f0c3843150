"""CROPS of one frame -> GENERATED, through the generator in batches it accepts (facedeid.serving.generate)."""

import triton_python_backend_utils as pb_utils

from facedeid.serving.generate import ChunkedGenerator


class TritonPythonModel(ChunkedGenerator):
    def initialize(self, args):
        self.setup(pb_utils, args)
