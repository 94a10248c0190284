"""Optional, seeded LR degradations for training (blur, noise, JPEG), each behind a config switch.

A face's degradation is fixed by ``(seed, index)`` so that its LR image, and so its cached
landmarks, are the same in every epoch and every run.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter
from pydantic import BaseModel, ConfigDict


class DegradationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    blur: bool = False
    blur_sigma: tuple[float, float] = (0.2, 1.2)
    noise: bool = False
    noise_sigma: tuple[float, float] = (0.0, 8.0)  # in 8-bit levels
    jpeg: bool = False
    jpeg_quality: tuple[int, int] = (40, 95)

    @property
    def any(self) -> bool:
        return self.blur or self.noise or self.jpeg


def degrade(lr: np.ndarray, cfg: DegradationConfig, seed: int, index: int) -> np.ndarray:
    """Apply the enabled degradations to an RGB uint8 LR face, in the order blur, noise, JPEG."""
    if not cfg.any:
        return lr
    rng = np.random.default_rng([seed, index])
    img = Image.fromarray(lr)
    if cfg.blur:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(*cfg.blur_sigma))))
    out = np.asarray(img, dtype=np.float32)
    if cfg.noise:
        out = out + rng.normal(0.0, rng.uniform(*cfg.noise_sigma), out.shape)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if cfg.jpeg:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
        out = np.asarray(Image.open(buf).convert("RGB"))
    return out
