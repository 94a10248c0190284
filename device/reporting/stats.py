"""Rolling pipeline statistics: per-stage latency quantiles, fps, counters, as plain numbers.

Why rolling: on a camera that runs for months, what matters is how it performs now, so latency
quantiles are taken over the last ``window`` samples of each stage and fps over the last
``fps_window_s`` seconds. Counters are cumulative since start (Prometheus computes rates itself).
The frame loop records, HTTP threads read: every method takes one lock, and the percentiles are
computed at read time, so recording costs a deque append.

Counts that another component keeps (the store's failed writes, the MQTT queue's drops, the
source's skipped images) are *mirrored*: read from their owner when a snapshot is taken, so
``/api/stats`` and ``/metrics`` show every skip and loss without a second copy to keep in step.
The JSON keeps milliseconds for people; ``device/reporting/metrics.py`` turns the same numbers into
Prometheus families (with latency histograms fed through :meth:`Stats.add_latency_listener`).
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from typing import Any, Callable, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

QUANTILES = (0.5, 0.95)
COUNTERS: dict[str, str] = {
    "frames": "Frames processed.",
    "faces": "Faces reported (one event each).",
    "drops": "Frames dropped because processing was slower than capture.",
    "no_face": "Frames in which no face was found.",
    "too_small": "Faces skipped as too small to upscale.",
    "too_large": "Faces skipped as too large to need upscaling.",
    "fallbacks": "Upscales replaced by bicubic because the expression guard failed.",
    "errors": "Frames whose processing failed.",
}
_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class StatsConfig(BaseModel):
    """The ``stats:`` section of the device config."""

    model_config = ConfigDict(extra="forbid")
    window: int = Field(300, ge=1, description="latency samples kept per stage (quantiles are over these)")
    fps_window_s: float = Field(10.0, gt=0, description="fps is measured over this many seconds")


class Stats:
    """Thread-safe counters and rolling stats. ``clock`` is monotonic seconds (tests pass a fake)."""

    def __init__(self, config: StatsConfig | None = None, extra_counters: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or StatsConfig()
        self.help = {**COUNTERS, **(extra_counters or {})}
        for name in self.help:
            if not _NAME.match(name):
                raise ValueError(f"counter name {name!r} is not a valid metric name")
        self._clock = clock
        self._lock = threading.Lock()
        self._counters = dict.fromkeys(self.help, 0)
        self._samples: dict[str, deque[float]] = {}
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._frame_times: deque[float] = deque()
        self._started = clock()
        self._last_frame: float | None = None
        self._sections: dict[str, dict[str, Any]] = {}
        self._mirrors: dict[str, Callable[[], int]] = {}
        self._latency_listeners: list[Callable[[str, float], None]] = []

    # --- recording (frame loop) ------------------------------------------------------------------

    def record_latency(self, stage: str, ms: float) -> None:
        """One latency sample of ``stage`` (any name; it becomes a label value) in milliseconds."""
        with self._lock:
            if stage not in self._samples:
                self._samples[stage] = deque(maxlen=self.config.window)
                self._sums[stage], self._counts[stage] = 0.0, 0
            self._samples[stage].append(float(ms))
            self._sums[stage] += float(ms)
            self._counts[stage] += 1
            listeners = tuple(self._latency_listeners)
        for listener in listeners:
            listener(stage, float(ms))

    def add_latency_listener(self, listener: Callable[[str, float], None]) -> None:
        """Call ``listener(stage, ms)`` with every latency sample (e.g. a Prometheus histogram)."""
        with self._lock:
            self._latency_listeners.append(listener)

    def mirror(self, counter: str, help_text: str, read: Callable[[], int]) -> None:
        """Show the count ``read()`` returns as the counter ``counter`` (read at snapshot time; its owner
        keeps it). ``read`` must not call back into these Stats."""
        if not _NAME.match(counter) or counter in self.help:
            raise ValueError(f"counter name {counter!r} is not a valid metric name, or already declared")
        with self._lock:
            self.help[counter] = help_text
            self._mirrors[counter] = read

    def record_frame(self) -> None:
        """A frame finished processing: counts it, feeds fps and the health check."""
        with self._lock:
            now = self._clock()
            self._counters["frames"] += 1
            self._last_frame = now
            self._frame_times.append(now)
            self._trim_frames(now)

    def inc(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to a counter; KeyError for a name that was not declared (catches typos)."""
        with self._lock:
            if counter not in self._counters:
                raise KeyError(f"unknown counter {counter!r}; declare it in extra_counters")
            self._counters[counter] += n

    def publish(self, name: str, section: Mapping[str, Any]) -> None:
        """Show ``section`` (plain JSON values, e.g. the latest group summary) under ``name`` in the
        snapshot until it is published again."""
        with self._lock:
            self._sections[name] = dict(section)

    # --- reading (HTTP threads) ------------------------------------------------------------------

    def last_frame_age(self) -> float | None:
        """Seconds since the last processed frame, None before the first."""
        with self._lock:
            return None if self._last_frame is None else self._clock() - self._last_frame

    def counter(self, name: str) -> int:
        with self._lock:
            read = self._mirrors.get(name)
            if read is None:
                return self._counters[name]
        return int(read())

    def snapshot(self) -> dict[str, Any]:
        """Everything as plain numbers: fps, uptime, counters (mirrored ones included), and per stage
        p50/p95/mean ms over the window."""
        with self._lock:
            mirrors = dict(self._mirrors)
        mirrored = {name: int(read()) for name, read in mirrors.items()}  # outside the lock: owners lock too
        with self._lock:
            now = self._clock()
            self._trim_frames(now)
            stages = {stage: self._stage_summary(stage) for stage in self._samples}
            age = None if self._last_frame is None else round(now - self._last_frame, 3)
            return {"fps": round(self._fps(now), 2), "uptime_s": round(now - self._started, 1),
                    "last_frame_age_s": age, "counters": {**self._counters, **mirrored}, "latency_ms": stages,
                    **self._sections}

    def _stage_summary(self, stage: str) -> dict[str, float | int]:
        samples = np.fromiter(self._samples[stage], dtype=np.float64)
        p50, p95 = np.percentile(samples, [q * 100 for q in QUANTILES])
        return {"p50": round(float(p50), 4), "p95": round(float(p95), 4), "mean": round(float(samples.mean()), 3),
                "samples": int(samples.size), "count": self._counts[stage]}

    def _trim_frames(self, now: float) -> None:
        while self._frame_times and self._frame_times[0] < now - self.config.fps_window_s:
            self._frame_times.popleft()

    def _fps(self, now: float) -> float:
        """Frames per second over the window: (n - 1) intervals since the oldest frame in it, measured
        up to now, so a stalled pipeline decays to 0 instead of reporting its last rate."""
        n = len(self._frame_times)
        span = now - self._frame_times[0] if n else 0.0
        return (n - 1) / span if n >= 2 and span > 0 else 0.0
