#!/usr/bin/env python3
"""De-identify faces in an image, a video (audio kept) or a folder of both; the same as `facedeid run`.

    python client/deid.py IN [OUT] [--model mobileunet] [--url HOST:8001 ...] [--no-audio] [--draw-boxes]

OUT defaults to IN_anonymized.ext next to IN. Without --url, a server on the default address is used, or one is
started for the run. See `python client/deid.py --help`.
"""

import sys

from facedeid.client.cli import main

if __name__ == "__main__":
    sys.exit(main())
