"""Face de-identification served on NVIDIA Triton.

The package holds all logic (models, detection decode, crops and blending, Triton glue, metrics, data);
the top-level folders (export/, model_repository/, client/, eval/, train/) are thin entry points over it.
"""

__version__ = "0.1.0"
