"""The largest input the daemon will decode, checked *before* decoding.

Why before: a decoded frame costs width x height x 3 bytes whatever its file size. A 1.2 MB PNG
that declares 20000x20000 px decodes to 1.2 GB (more than a Pi has), and the decode alone stalls
the frame loop long enough to trip the watchdog. An image's size is in its header, which Pillow
reads without decoding the pixels; a video's is a property of the opened capture. An input over
the limit is skipped (a folder's image) or refused with its name (a video), and counted.

Defaults fit a Raspberry Pi: 16.8 MP (4096x4096) is above every Pi camera (the HQ camera is
12.3 MP) and 4K video, and such a frame is 50 MB decoded.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field


class FrameLimits(BaseModel):
    """The ``capture.limits:`` section of the device config."""

    model_config = ConfigDict(extra="forbid")
    max_side: int = Field(8192, ge=16, description="widest or tallest image or video frame accepted, px")
    max_pixels: int = Field(
        16_777_216, ge=256, description="largest width x height accepted (4096 x 4096); larger inputs are skipped")

    def problem(self, width: int, height: int) -> str | None:
        """Why a ``width`` x ``height`` input is refused, or None when it is within the limits."""
        if max(width, height) > self.max_side:
            return f"{width}x{height} px is over capture.limits.max_side ({self.max_side})"
        if width * height > self.max_pixels:
            return f"{width}x{height} px is over capture.limits.max_pixels ({self.max_pixels:,})"
        return None


class Unreadable(Exception):
    """An image file whose header cannot be read (missing, empty, not an image)."""


class Oversized(Exception):
    """An image whose header declares more pixels than the limits allow."""


def check_image(path: Path, limits: FrameLimits) -> tuple[int, int]:
    """(width, height) from ``path``'s header, pixels not decoded; Oversized or Unreadable otherwise.

    Pillow's own decompression-bomb guard (a warning above ~89 MP, an error above twice that) is
    silenced or mapped here: ``limits`` is the one rule, and it is stricter than Pillow's."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError as e:
        raise Oversized(f"over Pillow's decompression-bomb limit ({e})") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:  # SyntaxError: Pillow's malformed-header signal
        raise Unreadable(str(e) or type(e).__name__) from None
    problem = limits.problem(width, height)
    if problem is not None:
        raise Oversized(problem)
    return width, height
