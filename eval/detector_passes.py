#!/usr/bin/env python3
"""Labelled faces found, boxes and detector CPU time per pair of detector passes, beside deface's pass
(docs/benchmarks.md, "How the settings were chosen").

    python eval/detector_passes.py --dataset-dir SCENES_DLIB --json passes.json
"""

import sys

from facedeid.benchmark.detector_passes import main

if __name__ == "__main__":
    sys.exit(main())
