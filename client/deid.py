#!/usr/bin/env python3
"""De-identify faces in an image, a folder of images or a video through Triton (audio is dropped).

    python client/deid.py IN OUT --model mobileunet [--url localhost:8001 ...]
"""

import sys

from facedeid.client.cli import main

if __name__ == "__main__":
    sys.exit(main())
