"""The three generator families and their registry."""

from .registry import GENERATORS, GeneratorSpec, UntrainedModelError, get_spec

__all__ = ["GENERATORS", "GeneratorSpec", "UntrainedModelError", "get_spec"]
