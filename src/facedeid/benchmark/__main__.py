"""`python -m facedeid.benchmark`: the benchmark's command line (also how the worker processes are started)."""

import sys

from .cli import main

sys.exit(main())
