"""Hand-built gRPC inputs for requests that `DeidClient` would refuse to send (wrong dtype, shape or size).

The hostile-input measurements (facedeid.benchmark.limits) and the tests send such requests on purpose, to see what
the server answers; everything else goes through `DeidClient`, which checks its inputs first.
"""

from __future__ import annotations

import numpy as np


def infer_input(name: str, array: np.ndarray, dtype: str):
    """A `tritonclient.grpc.InferInput` named `name` holding `array`, declared as Triton type `dtype` (e.g. "UINT8")."""
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput(name, list(array.shape), dtype)
    tensor.set_data_from_numpy(array)
    return tensor
