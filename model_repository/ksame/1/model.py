"""k-Same donor averages served by the Python backend (facedeid.ksame; bank.npz and centerface.onnx next to this)."""

import triton_python_backend_utils as pb_utils

from facedeid.serving.ksame_backend import KSameModel


class TritonPythonModel(KSameModel):
    def initialize(self, args):
        self.setup(pb_utils, args)
