"""The transport under DeidClient: one gRPC server (`GrpcBackend`, over tritonclient.grpc.aio), the process's
event loop for it, tensors to Triton inputs, and which errors are worth asking again.

No deadline travels with a call and no call the server holds is cancelled: the bundled Triton (2.51) aborts on
cancelled calls and never releases an ensemble whose stage queue rejected a request (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import os
import threading

import numpy as np

RETRYABLE_STATUS = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED")
RETRYABLE_TEXT = ("not ready", "unavailable", "failed to connect", "connection refused", "socket closed")
CLOSED_CHANNEL = "channel is closed"  # grpc.aio's UsageError text for a call on a closed channel



class DeidError(RuntimeError):
    """A frame that could not be de-identified (after retries where they apply)."""

    def __init__(self, message: str, retryable: bool = False, url: str | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.url = url


def triton_dtype(array: np.ndarray) -> str:
    try:
        return {np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32"}[array.dtype]
    except KeyError:
        raise ValueError(f"no Triton tensor type for {array.dtype} in this project (uint8, float32 or int32)"
                         ) from None


def infer_inputs(module, inputs: dict[str, np.ndarray]) -> list:
    """`module.InferInput`s (tritonclient.grpc or .grpc.aio) holding `inputs`, typed from their dtypes."""
    tensors = []
    for name, array in inputs.items():
        tensor = module.InferInput(name, list(array.shape), triton_dtype(array))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, DeidError):
        return exc.retryable
    if isinstance(exc, (asyncio.TimeoutError, ConnectionError, OSError)):
        return True
    status_of = getattr(exc, "status", None)  # InferenceServerException.status()
    status = str(status_of() or "") if callable(status_of) else ""
    if status in RETRYABLE_STATUS:
        return True
    if status not in ("", "None", "StatusCode.INTERNAL", "StatusCode.UNKNOWN"):
        return False  # e.g. INVALID_ARGUMENT, NOT_FOUND: asking again gives the same answer
    text = str(exc).lower()
    return any(t in text for t in RETRYABLE_TEXT)


class GrpcBackend:
    """One server: thin async wrapper over tritonclient.grpc.aio (created inside the client's loop)."""

    def __init__(self, url: str):
        import tritonclient.grpc.aio as grpcclient

        self.url = url
        self._mod = grpcclient
        self.client = grpcclient.InferenceServerClient(url=url)

    async def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]):
        tensors = infer_inputs(self._mod, inputs)
        requested = [self._mod.InferRequestedOutput(n) for n in outputs]
        # No deadline travels with the call (neither gRPC's nor Triton's `timeout`): the bundled Triton (2.51) can
        # crash when a call is cancelled or its deadline passes, and never releases an ensemble whose stage queue
        # rejected it (docs/reliability.md). The client's own timeout stops the waiting instead (DeidClient._send).
        result = await self.client.infer(model, tensors, outputs=requested)
        return {n: result.as_numpy(n) for n in outputs}

    async def ready(self, models: list[str], timeout_s: float) -> bool:
        try:
            if not await self.client.is_server_ready(client_timeout=timeout_s):
                return False
            for m in models:
                if not await self.client.is_model_ready(m, client_timeout=timeout_s):
                    return False
            return True
        except Exception:  # noqa: BLE001 - any failure to answer means "not ready" (wait_ready retries, then says so)
            return False

    async def info(self, models: list[str], timeout_s: float) -> dict:
        meta = await self.client.get_server_metadata(as_json=True, client_timeout=timeout_s)
        out = {"server": meta.get("name"), "version": meta.get("version"), "models": {}}
        for m in models:
            try:
                md = await self.client.get_model_metadata(m, as_json=True, client_timeout=timeout_s)
                out["models"][m] = {"versions": md.get("versions", []), "platform": md.get("platform")}
            except Exception as exc:  # noqa: BLE001 - reported in the run's metadata, not fatal
                out["models"][m] = {"error": str(exc).splitlines()[0]}
        return out

    async def close(self):
        await self.client.close()


_LOOP: tuple[int, asyncio.AbstractEventLoop] | None = None  # (pid, loop): a forked child has no loop thread
_LOOP_LOCK = threading.Lock()


def client_loop() -> asyncio.AbstractEventLoop:
    """The process's one event loop for gRPC calls, in a daemon thread, never closed: grpc.aio's completion-queue
    poller is process-wide and posts to every loop it has served, so a closed per-client loop made each later
    client print "Event loop is closed" tracebacks."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None or _LOOP[0] != os.getpid():
            _LOOP = (os.getpid(), asyncio.new_event_loop())
            threading.Thread(target=_LOOP[1].run_forever, name="deid-client", daemon=True).start()
        return _LOOP[1]
