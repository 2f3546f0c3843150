"""Client side of the served pipeline: the batched asynchronous gRPC client and the `client/deid.py` CLI."""

from ..settings import DEFAULT_URL
from .grpc_backend import DeidError, is_retryable
from .replies import DeidResult
from .triton import DeidClient, ensemble_name
from .triton_models import TritonModels

__all__ = ["DEFAULT_URL", "DeidClient", "DeidError", "DeidResult", "TritonModels", "ensemble_name", "is_retryable"]
