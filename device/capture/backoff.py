"""The waits between a failing camera's reconnect attempts: ``initial_s``, x ``factor``, up to ``max_s``.

Why an object and not a fresh schedule per open: the daemon's watchdog replaces a silent source
with a new one, and a schedule that started over each time would never wait longer than the
watchdog's period (every 10 s back to 0.5 s, so ``max_s`` was never reached). The replacing source
takes over its predecessor's :class:`Backoff`; only a delivered frame ends an outage and resets it.
"""

from __future__ import annotations

from edge_affectsr.device.capture.config import ReconnectConfig


class Backoff:
    """``next_delay()`` before each attempt (None once ``max_attempts`` are spent), ``reset()`` on a frame."""

    def __init__(self, config: ReconnectConfig | None = None) -> None:
        self.config = config or ReconnectConfig()
        self.attempts = 0  # attempts in the current outage

    def next_delay(self) -> float | None:
        """The wait before the next attempt, or None when this outage has used every attempt."""
        cfg = self.config
        if cfg.max_attempts is not None and self.attempts >= cfg.max_attempts:
            return None
        delay = cfg.initial_s
        for _ in range(self.attempts):  # factor ** attempts would overflow after months of outage
            delay = min(delay * cfg.factor, cfg.max_s)
            if delay == cfg.max_s:
                break
        self.attempts += 1
        return min(delay, cfg.max_s)

    def reset(self) -> None:
        """A frame arrived: the outage is over, the next one starts at ``initial_s``."""
        self.attempts = 0

    @property
    def limit(self) -> str:
        """``max_attempts`` for the log (``unlimited`` when null)."""
        return str(self.config.max_attempts) if self.config.max_attempts is not None else "unlimited"
