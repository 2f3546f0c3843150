"""Settings every layer shares, defined once at the bottom of the package (the import-layer contract in
pyproject.toml keeps this module free of imports from the rest of facedeid)."""

# Triton's gRPC port on this machine: the local server binds 127.0.0.1 (`localhost` may resolve to ::1 first).
DEFAULT_URL = "127.0.0.1:8001"
