#!/usr/bin/env python3
"""Time and server memory of each hostile request, against a local server (see docs/reliability.md, "Limits").

    python eval/limits_benchmark.py --repeats 3 --json limits.json
"""

import sys

from facedeid.benchmark.limits import main

if __name__ == "__main__":
    sys.exit(main())
