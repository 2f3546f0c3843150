"""`python -m facedeid.ksame build ...` (facedeid/ksame/build.py) and `... stability ...` (ksame/stability.py)."""

import sys

if sys.argv[1:2] == ["stability"]:
    from .stability import main

    sys.exit(main(sys.argv[2:]))
from .build import main

sys.exit(main())
