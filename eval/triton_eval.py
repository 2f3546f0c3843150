#!/usr/bin/env python3
"""Evaluate face de-identification served by Triton on a DNA-format data set (see docs/evaluation.md).

    python eval/triton_eval.py --dataset_dir DIR --model mobileunet,blur --batch_size 16 --output_dir OUT \
        [--save] [--url 127.0.0.1:8001 ...] [--boxes gt|detect] [--resume]
"""

import sys

from facedeid.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
