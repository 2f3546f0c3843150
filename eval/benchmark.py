#!/usr/bin/env python3
"""Speed benchmark: eager / onnxruntime / triton / blur on the same frames and weights (see docs/benchmarks.md).

    python eval/benchmark.py --model mobileunet --repeats 3 --json benchmark_results.json
"""

import sys

from facedeid.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
