"""Newest frame wins: decouples capture from processing so latency never builds up.

:class:`NewestFrame` reads a source on a background thread; the consumer always gets the latest
frame and the ones it was too slow for are counted as dropped.
"""

from __future__ import annotations

import logging
import threading
from typing import Iterator

from edge_affectsr.device.capture.frame import Frame, FrameSource

log = logging.getLogger(__name__)


class NewestFrame:
    """Reads ``source`` on a background thread; iterating yields the newest frame only.

    Frames that arrive while the consumer is busy replace each other and are counted in
    ``dropped``. The iteration ends when the source ends (after the last frame is delivered) or
    on ``stop()``; an exception in the reader is re-raised to the consumer.
    """

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.dropped = 0
        self.delivered = 0
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._done = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._reader, name=f"capture:{source.name}", daemon=True)

    def _reader(self) -> None:
        try:
            for frame in self.source:
                with self._cond:
                    if self._latest is not None:
                        self.dropped += 1
                    self._latest = frame
                    self._cond.notify()
        except BaseException as e:  # noqa: BLE001 - handed to the consumer thread
            self._error = e
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        if not self._thread.is_alive() and not self._done:
            self._thread.start()
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._latest is not None or self._done)
                frame, self._latest = self._latest, None
                if frame is None:
                    if self._error is not None:
                        raise self._error
                    return
            self.delivered += 1
            yield frame

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the source and wait for the reader thread (bounded)."""
        self.source.stop()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("%s: capture thread still busy after %.1f s (blocked in a read)", self.source.name, timeout)

    def __enter__(self) -> "NewestFrame":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
