#!/usr/bin/env python
"""Train mobileunet / resnet50unet. See docs/training.md; logic lives in facedeid.train.inversion."""

from facedeid.train.inversion import main

if __name__ == "__main__":
    main()
