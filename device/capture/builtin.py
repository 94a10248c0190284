"""The built-in input: a synthetic far-camera clip that needs no camera and no dataset.

The clip pastes the package's built-in face (:mod:`edge_affectsr.builtin_face`: the face of
scikit-image's astronaut photograph, shipped as a 190x190 JPEG), small (``face_px`` side of the
pasted square) and slowly moving and scaling, on a plain gradient, so the whole pipeline can be
exercised (and timed) on the device the way a far camera would feed it. The square's position in every frame is known:
``face_box(i)``.
"""

from __future__ import annotations

import math
import time
from typing import Iterator

import cv2
import numpy as np

from edge_affectsr.builtin_face import builtin_face
from edge_affectsr.device.capture.frame import Frame, FrameSource


def gradient_background(width: int, height: int) -> np.ndarray:
    """A soft blue-grey vertical gradient (a wall / sky), BGR uint8."""
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    top, bottom = np.array([150, 130, 110], np.float32), np.array([80, 90, 95], np.float32)
    column = (top * (1 - t) + bottom * t).astype(np.uint8)  # height x 3
    return np.ascontiguousarray(np.broadcast_to(column[:, None, :], (height, width, 3)))


class BuiltinSequence(FrameSource):
    """``frames`` synthetic BGR frames of ``size`` with one small face drifting and breathing in size."""

    name = "builtin"

    def __init__(self, frames: int = 60, size: tuple[int, int] = (640, 480),
                 face_px: tuple[int, int] = (64, 112), fps: float | None = None, loop: bool = False) -> None:
        super().__init__()
        self.num_frames, self.size, self.face_px = frames, size, face_px
        self.fps, self.loop = fps, loop
        self._face = cv2.cvtColor(builtin_face(), cv2.COLOR_RGB2BGR)
        self._background = gradient_background(*size)

    def face_box(self, i: int) -> tuple[int, int, int, int]:
        """The pasted face square of frame ``i`` (x0, y0, x1, y1), in frame pixels."""
        phase = 2 * math.pi * (i % self.num_frames) / self.num_frames
        lo, hi = self.face_px
        side = int(round(lo + (hi - lo) * (0.5 - 0.5 * math.cos(phase))))
        w, h = self.size
        # one slow loop: right and back horizontally, up and down twice vertically
        cx = w / 2 + (w / 2 - hi) * math.sin(phase)
        cy = h / 2 + (h / 2 - hi) * 0.6 * math.sin(2 * phase)
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        return x0, y0, x0 + side, y0 + side

    def render(self, i: int) -> np.ndarray:
        """Frame ``i``, BGR uint8."""
        frame = self._background.copy()
        x0, y0, x1, y1 = self.face_box(i)
        frame[y0:y1, x0:x1] = cv2.resize(self._face, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        return frame

    def frames(self) -> Iterator[Frame]:
        first, start = self._next_index, time.monotonic()  # a resumed clip goes on where it was
        while not self.stopping and (self.loop or self._next_index < self.num_frames):
            if self.fps:
                self._stop.wait(max(0.0, start + (self._next_index - first) / self.fps - time.monotonic()))
            yield self.frame(self.render(self._next_index))
