"""What every frame source yields, and the interface they share.

``Frame(index, timestamp, image)``, image BGR uint8, made by :meth:`FrameSource.frame`. ``timestamp`` is ``time.monotonic()`` when the
frame was acquired, the same clock for every source, so latency can be measured. ``stop()`` may be
called from any thread and ends the iteration promptly (backoff waits are interruptible).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import Iterator, NamedTuple

import numpy as np

from edge_affectsr.errors import UserError


class CaptureError(UserError):
    """A source that cannot be used as configured; the message says what to change."""


class Frame(NamedTuple):
    index: int
    timestamp: float
    image: np.ndarray  # H x W x 3 uint8, BGR
    file: str | None = None  # the folder's image or the video file it came from (name); None: camera, built-in clip


class FrameSource(ABC):
    """Iterate for frames; ``stop()`` from any thread; ``close()`` (or ``with``) releases it."""

    name = "source"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.stop_reason: str | None = None
        self.read = 0  # frames delivered
        self.unreadable = 0  # inputs skipped because they could not be decoded
        self.oversized = 0  # inputs skipped because they were over capture.limits
        self.reconnecting = False  # waiting to re-open a failed camera (the watchdog leaves it alone then)
        self._next_index = 0

    def frame(self, image: np.ndarray, file: str | None = None) -> Frame:
        """``image`` as the next Frame (numbered on from a resumed predecessor), counted in ``read``;
        ``file`` names the file it was read from, for the events."""
        self.read += 1
        frame = Frame(self._next_index, time.monotonic(), image, file)
        self._next_index += 1
        return frame

    def resume(self, previous: "FrameSource") -> None:
        """Continue ``previous``, the source this one replaces after a watchdog reopen: frame numbers
        and counts go on (sources add what else they carry over)."""
        self._next_index, self.read = previous._next_index, previous.read
        self.unreadable, self.oversized = previous.unreadable, previous.oversized

    @abstractmethod
    def frames(self) -> Iterator[Frame]:
        """The frames, until the source ends or ``stop()`` is called."""

    def __iter__(self) -> Iterator[Frame]:
        try:
            yield from self.frames()
        finally:
            if self.stop_reason is None:
                self.stop_reason = "stopped" if self._stop.is_set() else "end of input"
            self.close()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        """Release the device or file (idempotent)."""

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self.close()
