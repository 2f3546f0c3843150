"""Client side of the served pipeline: the batched asynchronous gRPC client and the `client/deid.py` CLI."""

from .triton import DeidClient, DeidError, DeidResult, ensemble_name, is_retryable

__all__ = ["DeidClient", "DeidError", "DeidResult", "ensemble_name", "is_retryable"]
