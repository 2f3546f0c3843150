"""Read a config.pbtxt the way Triton does: into its own ModelConfig protobuf (tritonclient ships model_config_pb2).

The one parser of config text: serving/configs.py derives configs/gpu.pbtxt through it (the export image installs
tritonclient for that), the benchmark and the pipeline read parameters through it.
"""

from __future__ import annotations

from pathlib import Path


def parse_config(text: str):
    """config.pbtxt text -> tritonclient.grpc.model_config_pb2.ModelConfig; a malformed text or an unknown field
    raises ParseError."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def read_config(path: Path):
    """A config.pbtxt file parsed into Triton's ModelConfig protobuf."""
    return parse_config(Path(path).read_text())


def read_parameters(path: Path) -> dict[str, str]:
    """The `parameters` block of a config.pbtxt as {key: string_value}."""
    return {key: value.string_value for key, value in read_config(path).parameters.items()}
