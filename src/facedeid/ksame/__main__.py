"""`python -m facedeid.ksame build ...` (facedeid/ksame/build.py): rebuild the donor bank."""

import sys

from .build import main

sys.exit(main())
