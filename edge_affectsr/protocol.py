"""The evaluation protocol every stage uses to turn a face photo into an (LR, HR) pair.

HR = centre square crop (side = min(w, h)), Lanczos resize to 128 x 128.
LR = bicubic resize of HR to 128 / scale (32 x 32 for x4, 16 x 16 for x8).
The plain baseline upscales LR back with bicubic. Pillow's filters are used throughout so that
numbers match ``shared/data/README.md`` (bicubic x4 on CelebA val: 25.37 dB, SSIM 0.784).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HR_SIZE = 128
SCALES = (4, 8)


def lr_size(scale: int, hr_size: int = HR_SIZE) -> int:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale}")
    return hr_size // scale


def centre_square(img: Image.Image) -> Image.Image:
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s))


def make_hr(img: Image.Image, hr_size: int = HR_SIZE) -> np.ndarray:
    """RGB uint8 ``[hr_size, hr_size, 3]``."""
    sq = centre_square(img.convert("RGB"))
    return np.asarray(sq.resize((hr_size, hr_size), Image.LANCZOS))


def resize(img: np.ndarray, size: int, method: int = Image.BICUBIC) -> np.ndarray:
    """Resize an RGB uint8 array to ``size x size`` with a Pillow filter (bicubic by default)."""
    return np.asarray(Image.fromarray(img).resize((size, size), method))


def make_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    return resize(hr, lr_size(scale, hr.shape[0]))


def bicubic_up(lr: np.ndarray, hr_size: int = HR_SIZE) -> np.ndarray:
    """The plain baseline (and what the landmark detector sees at run time)."""
    return resize(lr, hr_size)
