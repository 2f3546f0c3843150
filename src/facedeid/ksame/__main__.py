"""`python -m facedeid.ksame build ...` (see facedeid/ksame/build.py)."""

import sys

from .build import main

sys.exit(main())
