"""Reading a video back in the tests, frame by frame, as a user's player would decode it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def video_frames(path: Path) -> list[np.ndarray]:
    """Every frame OpenCV decodes from ``path`` (BGR uint8); AssertionError when it cannot open it."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"OpenCV cannot open {path}"
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return frames
