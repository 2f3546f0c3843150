"""Adapter between Triton's Python backend and the stage functions.

`triton_python_backend_utils` exists only inside the server's stub process, so model.py passes it in.
"""

from __future__ import annotations

import json
from typing import Callable

import numpy as np


def parameters(args: dict) -> dict[str, str]:
    """The `parameters { key: ... value: { string_value: ... } }` block of a model's config.pbtxt."""
    config = json.loads(args["model_config"])
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


def invalid_argument(pb_utils, message: str):
    """A TritonError with status INVALID_ARGUMENT (stubs without error codes: the default code)."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


def serve_each(pb_utils, requests, inputs: list[str], outputs: list[str],
               fn: Callable[..., tuple[np.ndarray, ...] | np.ndarray], optional: tuple[str, ...] = ()):
    """Run `fn` once per request; a bad request gets its own error response and never disturbs the others.

    Inputs named in `optional` (declared `optional: true` in the config) are passed as None when absent."""
    responses = []
    for request in requests:
        try:
            arrays = []
            for name in inputs:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if tensor is None and name not in optional:
                    raise ValueError(f"missing input tensor {name}")
                arrays.append(None if tensor is None else tensor.as_numpy())
            result = fn(*arrays)
            result = result if isinstance(result, tuple) else (result,)
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in zip(outputs, result)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        except ValueError as error:  # the request is wrong: INVALID_ARGUMENT, never retried by clients
            responses.append(pb_utils.InferenceResponse(error=invalid_argument(pb_utils, str(error))))
        except Exception as error:  # noqa: BLE001 - the server must keep serving; report, do not crash
            responses.append(pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"internal error: {type(error).__name__}: {error}")))
    return responses


class OnnxModel:
    """Python-backend model over `model.onnx` in its version folder (generators and detector on the CPU).

    `batched=True` (generators): all requests of one dynamic batch run as one ONNX Runtime call, and failures
    come back as NaN crops that compose masks (fail closed). `batched=False` (detector): one call per request.
    """

    def setup(self, pb_utils, args: dict, batched: bool, validate: Callable | None = None) -> None:
        from pathlib import Path

        from ..onnx_runtime import BatchedGenerator, cpu_session, spin_enabled

        self.pb_utils = pb_utils
        config = json.loads(args["model_config"])
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        params = parameters(args)
        threads = int(params.get("threads", "0"))
        spin = spin_enabled(params.get("spin"))
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `python export/to_onnx.py --model all` first")
        self.batched = batched
        self.validate = validate  # non-batched: checks (and may refuse) the first input before ONNX Runtime runs
        if batched:
            self.generator = BatchedGenerator(path, threads, spin)
        else:
            self.session = cpu_session(path, threads, spin, arena=False)  # any frame size: no arena (detector)

    def execute(self, requests):
        pb_utils = self.pb_utils
        if not self.batched:
            def run(*xs):
                if self.validate is not None:
                    self.validate(xs[0])
                return tuple(self.session.run(self.outputs, dict(zip(self.inputs, xs))))

            return serve_each(pb_utils, requests, self.inputs, self.outputs, run)
        batches = [pb_utils.get_input_tensor_by_name(r, self.inputs[0]).as_numpy() for r in requests]
        results = self.generator(batches)
        if self.generator.last_error:
            pb_utils.Logger.log_error(f"generator failed, faces will be masked: {self.generator.last_error}")
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.outputs[0], out)]) for out in results]
