"""ksame's colour: the average's skin moved to the target's Lab statistics, skin tone and coarse appearance."""

from __future__ import annotations

import cv2
import numpy as np

THUMB = 16


def lab(rgb_u8: np.ndarray) -> np.ndarray:
    """RGB uint8 -> float32 Lab (L* 0..100, a*, b* about 0)."""
    return cv2.cvtColor(rgb_u8.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)


def _rgb(lab: np.ndarray) -> np.ndarray:
    lab = lab.copy()
    lab[..., 0] = np.clip(lab[..., 0], 0, 100)
    rgb = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)


def match_colour(face: np.ndarray, target: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """`face` recoloured so its skin ring has the target's Lab statistics; chroma spread is never increased."""
    sel = ring > 0.5
    if sel.sum() < 20:
        return face
    src, dst = lab(face), lab(target)
    out = src.copy()
    for c in range(3):
        mu_s, sd_s = src[..., c][sel].mean(), src[..., c][sel].std() + 1e-3
        mu_d, sd_d = dst[..., c][sel].mean(), dst[..., c][sel].std() + 1e-3
        lo, hi = (0.7, 1.3) if c == 0 else (0.5, 1.0)
        out[..., c] = (src[..., c] - mu_s) * float(np.clip(sd_d / sd_s, lo, hi)) + mu_d
    return _rgb(out)


def skin_tone(face: np.ndarray, ring: np.ndarray) -> float:
    """Lab lightness (0..100) of the skin ring."""
    return float(lab(face)[..., 0][ring > 0.5].mean())


def thumbnail(face: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """16x16 grey thumbnail of the aligned inner face, zero mean, unit norm (coarse appearance only)."""
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY).astype(np.float32) * inner
    t = cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA).ravel()
    t -= t.mean()
    return (t / max(float(np.linalg.norm(t)), 1e-6)).astype(np.float32)


def sharpen(face: np.ndarray, amount: float = 0.6, sigma: float = 1.2) -> np.ndarray:
    f = face.astype(np.float32)
    return np.clip(f + amount * (f - cv2.GaussianBlur(f, (0, 0), sigma)) + 0.5, 0, 255).astype(np.uint8)


