"""`TritonModels`: the synchronous side of the Triton client, for single models (the Triton detector of data
extraction, the benchmark's per-model statistics): readiness, one inference, statistics."""

from __future__ import annotations

import numpy as np

from ..settings import DEFAULT_URL
from .grpc_backend import first_line, infer_inputs


class TritonModels:
    """Synchronous calls to single models of one server (tritonclient.grpc): readiness, inference, statistics."""

    def __init__(self, url: str = DEFAULT_URL, timeout_s: float = 60.0, admin_key: str | None = None):
        import tritonclient.grpc as grpcclient

        self._mod = grpcclient
        self.url = url
        self.timeout_s = timeout_s
        self.admin_key = admin_key  # unlocks the statistics API (default $TRITON_ADMIN_KEY)
        self.client = grpcclient.InferenceServerClient(url)

    def require(self, models: list[str], hint: str = "") -> None:
        """Raise ConnectionError (with `hint`, what to do instead) unless the server is live with `models` ready."""
        try:
            live = self.client.is_server_live()
        except Exception as exc:  # noqa: BLE001 - any transport error means the same thing to the user
            raise ConnectionError(f"no Triton server at {self.url} ({first_line(exc)}); start one "
                                  f"(`tritonserver --model-repository model_repository`){hint}") from None
        not_ready = [m for m in models if not live or not self.client.is_model_ready(m)]
        if not_ready:
            raise ConnectionError(f"Triton at {self.url} does not serve {', '.join(not_ready)} (ready){hint}")

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        """One request; every requested output must come back non-empty (the empty-output failure of old stubs)."""
        tensors = infer_inputs(self._mod, inputs)
        requested = [self._mod.InferRequestedOutput(o) for o in outputs]
        result = self.client.infer(model, tensors, outputs=requested, client_timeout=self.timeout_s)
        arrays = [result.as_numpy(o) for o in outputs]
        for name, array in zip(outputs, arrays):
            if array is None or array.size == 0:
                raise RuntimeError(f"Triton at {self.url} returned an empty {name} tensor from {model}")
        return arrays

    def statistics(self, models: list[str]) -> dict[str, dict]:
        """Cumulative statistics per model: requests, executions, inferences and time per phase (ns).

        The statistics API is locked (serving/tritonserver_cli.py, docker/start-triton.sh): it needs the server's
        admin key, `admin_key` or $TRITON_ADMIN_KEY."""
        from ..serving.tritonserver_cli import admin_headers

        headers = admin_headers(self.admin_key)
        out = {}
        for name in models:
            for s in self.client.get_inference_statistics(model_name=name, as_json=True,
                                                          headers=headers)["model_stats"]:
                inf = s.get("inference_stats", {})
                out[name] = {
                    "requests": int(inf.get("success", {}).get("count", 0)),
                    "executions": int(s.get("execution_count", 0)),
                    "inferences": int(s.get("inference_count", 0)),
                    **{f"{phase}_ns": int(inf.get(phase, {}).get("ns", 0))
                       for phase in ("queue", "compute_input", "compute_infer", "compute_output")},
                }
        return out

    def close(self) -> None:
        self.client.close()
