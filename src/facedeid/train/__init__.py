"""Training of the face generators (inverters and D2GAN) on face crops made by `facedeid.crops`.

CLIs: `train/train_inversion.py`, `train/train_d2gan.py`; privacy check: `facedeid train privacy`.
See docs/training.md.
"""
