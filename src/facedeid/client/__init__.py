"""Client side of the served pipeline: the batched asynchronous gRPC client and the `client/deid.py` CLI."""

from .triton import DEFAULT_URL, DeidClient, DeidError, DeidResult, ensemble_name, is_retryable
from .triton_models import TritonModels

__all__ = ["DEFAULT_URL", "DeidClient", "DeidError", "DeidResult", "TritonModels", "ensemble_name", "is_retryable"]
