"""Client side of the served pipeline: the batched asynchronous gRPC client and the `client/deid.py` CLI."""

from ..settings import DEFAULT_URL
from .triton import DeidClient, DeidError, DeidResult, ensemble_name, is_retryable
from .triton_models import TritonModels

__all__ = ["DEFAULT_URL", "DeidClient", "DeidError", "DeidResult", "TritonModels", "ensemble_name", "is_retryable"]
