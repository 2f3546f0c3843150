#!/usr/bin/env python
"""Train d2gan (generator + two discriminators). See docs/training.md; logic lives in facedeid.train.d2gan."""

from facedeid.train.d2gan import main

if __name__ == "__main__":
    main()
