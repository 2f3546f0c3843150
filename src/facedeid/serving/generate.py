"""`generate_<gen>`: all face crops of one frame through a generator, however many there are.

Triton refuses a request whose batch exceeds a model's `max_batch_size` (32 crops for the generators: the
TensorRT profile maximum), so a crowd frame cannot be sent to the generator in one piece. This model splits the
crops into batches of at most `max_batch` and sends them to the generator as concurrent BLS requests (the
generator's dynamic batcher still merges them with other frames' crops), then joins the outputs in order.
A frame with hundreds of faces therefore costs ceil(N / 32) generator executions, never a masked face.

A generator with a per-face choice (ksame's donor average; config parameter `donor: "1"`) also takes the optional
DONOR [N] INT32 (one per box; -1 or absent: the generator chooses) and returns DONOR_USED [M], what each crop got:
the stateless half of "one face, one replacement, for a whole track" (client/tracking.py keeps the other half).
It also passes on the optional LANDMARKS [M,10] (box_prep's CROP_LANDMARKS: a track's smoothed landmarks in crop
pixels, NaN rows where none were given) and the request's optional COVER [1] INT32 (0 the inner face, 1 the whole
head; settings.COVERS) to every crop.

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
        self.donor = params.get("donor", "0") == "1"

    async def _generate(self, crops: np.ndarray, donors: np.ndarray | None = None,
                        landmarks: np.ndarray | None = None, cover: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        pb = self.pb_utils
        pieces = split_batches(crops, self.max_batch)
        outputs_wanted = ["OUTPUT", "DONOR_USED"] if donors is not None else ["OUTPUT"]
        requests = []
        for start, piece in zip(range(0, len(crops), self.max_batch), pieces):
            inputs = [pb.Tensor("INPUT", np.ascontiguousarray(piece))]
            if donors is not None:
                inputs.append(pb.Tensor("DONOR", np.ascontiguousarray(donors[start : start + len(piece)])))
            if landmarks is not None:
                inputs.append(pb.Tensor("LANDMARKS", np.ascontiguousarray(landmarks[start : start + len(piece)])))
            if cover is not None:
                inputs.append(pb.Tensor("COVER", np.full((len(piece), 1), cover, np.int32)))
            requests.append(pb.InferenceRequest(model_name=self.generator, requested_output_names=outputs_wanted,
                                                inputs=inputs))
        replies = await asyncio.gather(*(r.async_exec() for r in requests))
        outputs, used = [], []
        for reply in replies:
            if reply.has_error():
                raise RuntimeError(f"generator {self.generator} failed: {reply.error().message()}")
            outputs.append(pb.get_output_tensor_by_name(reply, "OUTPUT").as_numpy())
            if donors is not None:
                used.append(pb.get_output_tensor_by_name(reply, "DONOR_USED").as_numpy().reshape(-1))
        return np.concatenate(outputs), (np.concatenate(used) if used else np.zeros(0, np.int32))

    async def execute(self, requests):
        pb = self.pb_utils

        async def one(request):
            try:
                tensor = pb.get_input_tensor_by_name(request, "CROPS")
                if tensor is None:
                    raise ValueError("missing input tensor CROPS")
                crops = tensor.as_numpy()
                if not self.donor:
                    generated, _ = await self._generate(crops)
                    return pb.InferenceResponse(output_tensors=[pb.Tensor("GENERATED", generated)])
                given = pb.get_input_tensor_by_name(request, "DONOR")
                donors = pad_donors(None if given is None else given.as_numpy(), len(crops))
                marks = pb.get_input_tensor_by_name(request, "LANDMARKS")
                marks = None if marks is None else np.asarray(marks.as_numpy(), np.float32).reshape(-1, 10)
                if marks is not None and len(marks) != len(crops):
                    raise ValueError(f"LANDMARKS has {len(marks)} rows for {len(crops)} crops")
                cover = pb.get_input_tensor_by_name(request, "COVER")
                cover = None if cover is None else check_cover(cover.as_numpy())
                generated, used = await self._generate(crops, donors.reshape(-1, 1), marks, cover)
                return pb.InferenceResponse(output_tensors=[pb.Tensor("GENERATED", generated),
                                                            pb.Tensor("DONOR_USED", used.astype(np.int32))])
            except ValueError as error:
                return pb.InferenceResponse(error=pb.TritonError(str(error)))
            except Exception as error:  # noqa: BLE001 - report per request, keep serving
                return pb.InferenceResponse(error=pb.TritonError(f"{type(error).__name__}: {error}"))

        return list(await asyncio.gather(*(one(r) for r in requests)))


def check_cover(value: np.ndarray) -> int:
    """COVER [1] -> its index in COVERS (0 the inner face, 1 the whole head); anything else is refused."""
    from ..settings import COVERS

    value = np.asarray(value).reshape(-1)
    if value.size != 1 or not np.issubdtype(value.dtype, np.integer) or not 0 <= int(value[0]) < len(COVERS):
        raise ValueError(f"COVER must be one integer, 0 ({COVERS[0]}) or 1 ({COVERS[1]}), got {value.tolist()[:4]}")
    return int(value[0])


def pad_donors(donors: np.ndarray | None, crops: int) -> np.ndarray:
    """DONOR [N] (one per box, or absent/empty) -> [M] int32 for the M crops, -1 = the generator chooses. A frame
    without faces has N = 0 and one blank crop (crop_batch); any other count than one per crop is refused."""
    donors = np.zeros(0, np.int32) if donors is None else np.asarray(donors).reshape(-1)
    if len(donors) == 0:
        return np.full(crops, -1, np.int32)
    if len(donors) != crops:
        raise ValueError(f"DONOR has {len(donors)} values for {crops} face boxes; send one per box (-1: choose)")
    return donors.astype(np.int32)
