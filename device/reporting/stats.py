"""Rolling pipeline statistics: per-stage latency quantiles, fps, counters; as JSON and as Prometheus text.

Why rolling: on a camera that runs for months, what matters is how it performs now, so latency
quantiles are taken over the last ``window`` samples of each stage and fps over the last
``fps_window_s`` seconds. Counters are cumulative since start (Prometheus computes rates itself).
The frame loop records, HTTP threads read: every method takes one lock, and the percentiles are
computed at read time, so recording costs a deque append.

Prometheus exposition (text format 0.0.4): names prefixed ``edge_affectsr_``, counters end in
``_total``, stage latency is a summary in seconds (the Prometheus base unit) with ``quantile``
labels over the window plus cumulative ``_sum`` and ``_count``; the JSON keeps milliseconds for people.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from typing import Any, Callable, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

PREFIX = "edge_affectsr_"
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

    def set_counter(self, counter: str, value: int) -> None:
        """Mirror a count kept elsewhere (e.g. ``NewestFrame.dropped``); it never goes backwards."""
        with self._lock:
            if counter not in self._counters:
                raise KeyError(f"unknown counter {counter!r}; declare it in extra_counters")
            self._counters[counter] = max(self._counters[counter], int(value))

    # --- reading (HTTP threads) ------------------------------------------------------------------

    def last_frame_age(self) -> float | None:
        """Seconds since the last processed frame, None before the first."""
        with self._lock:
            return None if self._last_frame is None else self._clock() - self._last_frame

    def counter(self, name: str) -> int:
        with self._lock:
            return self._counters[name]

    def snapshot(self) -> dict[str, Any]:
        """Everything as plain numbers: fps, uptime, counters, and per stage p50/p95/mean ms over the window."""
        with self._lock:
            return self._snapshot_locked()

    def _snapshot_locked(self) -> dict[str, Any]:
        now = self._clock()
        self._trim_frames(now)
        stages = {stage: self._stage_summary(stage) for stage in self._samples}
        age = None if self._last_frame is None else round(now - self._last_frame, 3)
        return {"fps": round(self._fps(now), 2), "uptime_s": round(now - self._started, 1),
                "last_frame_age_s": age, "counters": dict(self._counters), "latency_ms": stages}

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

    # --- Prometheus ------------------------------------------------------------------------------

    def to_prometheus(self, info: Mapping[str, Any] | None = None) -> str:
        """Prometheus text exposition (format 0.0.4). ``info`` (model, version, delegate, ...) becomes the
        labels of ``edge_affectsr_info 1``."""
        with self._lock:
            snap, sums = self._snapshot_locked(), dict(self._sums)
        lines: list[str] = []
        if info:
            _family(lines, "info", "gauge", "Build and runtime information (value is always 1).")
            lines.append(f"{PREFIX}info{_labels(info)} 1")
        _family(lines, "fps", "gauge", f"Frames processed per second over the last {self.config.fps_window_s:g} s.")
        lines.append(f"{PREFIX}fps {_num(snap['fps'])}")
        _family(lines, "uptime_seconds", "gauge", "Seconds since the pipeline started.")
        lines.append(f"{PREFIX}uptime_seconds {_num(snap['uptime_s'])}")
        if snap["last_frame_age_s"] is not None:
            _family(lines, "last_frame_age_seconds", "gauge", "Seconds since the last processed frame.")
            lines.append(f"{PREFIX}last_frame_age_seconds {_num(snap['last_frame_age_s'])}")
        for name, value in snap["counters"].items():
            _family(lines, f"{name}_total", "counter", self.help[name])
            lines.append(f"{PREFIX}{name}_total {value}")
        if snap["latency_ms"]:
            _family(lines, "stage_latency_seconds", "summary",
                    f"Per-stage latency; quantiles over the last {self.config.window} samples.")
        for stage, summary in snap["latency_ms"].items():
            for q, key in zip(QUANTILES, ("p50", "p95")):
                labels = _labels({"stage": stage, "quantile": q})
                lines.append(f"{PREFIX}stage_latency_seconds{labels} {_num(summary[key] / 1000)}")
            lines.append(f"{PREFIX}stage_latency_seconds_sum{_labels({'stage': stage})} {_num(sums[stage] / 1000)}")
            lines.append(f"{PREFIX}stage_latency_seconds_count{_labels({'stage': stage})} {summary['count']}")
        return "\n".join(lines) + "\n"


def _family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    help_text = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    lines += [f"# HELP {PREFIX}{name} {help_text}", f"# TYPE {PREFIX}{name} {kind}"]


def _labels(values: Mapping[str, Any]) -> str:
    """``{k="v",...}`` with label values escaped as the format requires (backslash, quote, newline)."""
    parts = []
    for key, value in values.items():
        text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{re.sub(r"[^a-zA-Z0-9_]", "_", str(key))}="{text}"')
    return "{" + ",".join(parts) + "}"


def _num(value: float) -> str:
    """A sample value: Go float syntax (NaN, +Inf, -Inf) for the non-finite ones."""
    value = float(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)
