"""`generate_<gen>`: all face crops of one frame through a generator, however many there are.

Triton refuses a request whose batch exceeds a model's `max_batch_size` (32 crops for the generators: the
TensorRT profile maximum), so a crowd frame cannot be sent to the generator in one piece. This model splits the
crops into batches of at most `max_batch` and sends them to the generator as concurrent BLS requests (the
generator's dynamic batcher still merges them with other frames' crops), then joins the outputs in order.
A frame with hundreds of faces therefore costs ceil(N / 32) generator executions, never a masked face.

Fail closed: a batch the generator answers with an error makes the whole request an error (the ensemble then
returns no frame); a generator that fails inside returns NaN crops, which compose masks.
"""

from __future__ import annotations

import asyncio

import numpy as np


def split_batches(crops: np.ndarray, max_batch: int) -> list[np.ndarray]:
    """[N,3,S,S] -> consecutive pieces of at most max_batch crops (N >= 1)."""
    if crops.ndim != 4 or crops.shape[0] < 1:
        raise ValueError(f"CROPS must have shape [N, 3, S, S] with N >= 1, got {list(crops.shape)}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    return [crops[i : i + max_batch] for i in range(0, len(crops), max_batch)]


class ChunkedGenerator:
    """Python-backend model body; model.py passes in `triton_python_backend_utils`."""

    def setup(self, pb_utils, args: dict) -> None:
        from .python_backend import parameters

        params = parameters(args)
        self.pb_utils = pb_utils
        self.generator = params["generator"]
        self.max_batch = int(params["max_batch"])

    async def _generate(self, crops: np.ndarray) -> np.ndarray:
        pb = self.pb_utils
        pieces = split_batches(crops, self.max_batch)
        requests = [pb.InferenceRequest(model_name=self.generator, requested_output_names=["OUTPUT"],
                                        inputs=[pb.Tensor("INPUT", np.ascontiguousarray(piece))])
                    for piece in pieces]
        replies = await asyncio.gather(*(r.async_exec() for r in requests))
        outputs = []
        for reply in replies:
            if reply.has_error():
                raise RuntimeError(f"generator {self.generator} failed: {reply.error().message()}")
            outputs.append(pb.get_output_tensor_by_name(reply, "OUTPUT").as_numpy())
        return np.concatenate(outputs)

    async def execute(self, requests):
        pb = self.pb_utils

        async def one(request):
            try:
                tensor = pb.get_input_tensor_by_name(request, "CROPS")
                if tensor is None:
                    raise ValueError("missing input tensor CROPS")
                generated = await self._generate(tensor.as_numpy())
                return pb.InferenceResponse(output_tensors=[pb.Tensor("GENERATED", generated)])
            except ValueError as error:
                return pb.InferenceResponse(error=pb.TritonError(str(error)))
            except Exception as error:  # noqa: BLE001 - report per request, keep serving
                return pb.InferenceResponse(error=pb.TritonError(f"{type(error).__name__}: {error}"))

        return list(await asyncio.gather(*(one(r) for r in requests)))
