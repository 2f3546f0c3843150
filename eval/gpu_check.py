#!/usr/bin/env python3
"""The GPU check in one call (facedeid.benchmark.gpu_check; docs/benchmarks.md "GPU check"):

    python eval/gpu_check.py --json gpu_check.json --markdown gpu_check.md

Runs from a bare checkout too (no `pip install`): src/ is put on the path when facedeid is not installed.
"""

import sys
from pathlib import Path

try:
    import facedeid  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from facedeid.benchmark.gpu_check import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
