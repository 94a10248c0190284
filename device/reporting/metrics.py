"""``/metrics``: the daemon's numbers as Prometheus families, through ``prometheus_client``.

Why the library and not hand-written text: it gets the exposition format right (escaping, types,
``_total``, ``_bucket``), and brings the process metrics every exporter has (CPU seconds, resident
memory, open file descriptors, start time; ``process_*`` and ``python_*``) for free.

Why a registry of its own: the global default registry would mix two daemons (or a daemon and a
test) in one process, and would collect whatever else registered there. Each :class:`Metrics`
has its own :class:`~prometheus_client.CollectorRegistry`.

What it holds:

- ``edge_affectsr_stage_latency_seconds``: a histogram per stage, observed as the frame loop
  records each sample (fed by :meth:`Stats.add_latency_listener`). Buckets, not the rolling
  quantiles of ``/api/stats``: Prometheus can aggregate buckets across cameras and over any range,
  quantiles it cannot.
- every counter of :class:`~edge_affectsr.device.reporting.stats.Stats` (mirrored ones included:
  every skip and every lost event) as ``edge_affectsr_<name>_total``; ``fps``, ``uptime_seconds``,
  ``last_frame_age_seconds`` and ``healthy`` (1 when ``/healthz`` says ok) as gauges; and
  ``edge_affectsr_info`` (model, version, delegate, source), all read at scrape time.

Every ``edge_affectsr_*`` sample has a ``camera`` label (``capture.camera``, default the host
name), so one Prometheus can scrape many cameras and tell them apart by more than their address.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, GCCollector, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from edge_affectsr.device.reporting.health import HealthReport
from edge_affectsr.device.reporting.stats import Stats

PREFIX = "edge_affectsr"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the text format every Prometheus version scrapes
# seconds: from a 0.5 ms stage (align) to a multi-second stall; the SR/guard stages sit at 2-20 ms
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """``render()`` -> the exposition bytes for ``/metrics``. ``info`` returns the flat labels of
    ``edge_affectsr_info`` (non-text values are left out); ``health`` the current health report."""

    def __init__(self, stats: Stats, camera: str, info: Callable[[], Mapping[str, Any]] = dict,
                 health: Callable[[], HealthReport] | None = None) -> None:
        self.camera = camera
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._latency = Histogram(f"{PREFIX}_stage_latency_seconds", "Per-stage processing time of the frame loop.",
                                  ["camera", "stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_StatsCollector(stats, camera, info, health))
        stats.add_latency_listener(self._observe)

    def _observe(self, stage: str, ms: float) -> None:
        self._latency.labels(self.camera, stage).observe(ms / 1000.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StatsCollector:
    """Reads Stats, info and health at scrape time (a custom collector: the numbers live in Stats)."""

    def __init__(self, stats: Stats, camera: str, info: Callable[[], Mapping[str, Any]],
                 health: Callable[[], HealthReport] | None) -> None:
        self.stats, self.camera, self.info, self.health = stats, camera, info, health

    def describe(self) -> list[Metric]:
        """Nothing to check for clashes at registration (names are fixed here); saves a collect()."""
        return []

    def collect(self) -> Iterator[Metric]:
        snap = self.stats.snapshot()
        labels = {"camera": self.camera}
        info = {k: str(v) for k, v in self.info().items() if isinstance(v, (str, int, float)) and k != "camera"}
        yield InfoMetricFamily(PREFIX, "Build and runtime information (value is always 1).", value={**labels, **info})
        yield _gauge("fps", f"Frames processed per second over the last {self.stats.config.fps_window_s:g} s.",
                     self.camera, snap["fps"])
        yield _gauge("uptime_seconds", "Seconds since the pipeline started.", self.camera, snap["uptime_s"])
        if snap["last_frame_age_s"] is not None:
            yield _gauge("last_frame_age_seconds", "Seconds since the last processed frame.", self.camera,
                         snap["last_frame_age_s"])
        if self.health is not None:
            yield _gauge("healthy", "1 when /healthz answers ok, 0 when starting or degraded (see its reasons).",
                         self.camera, float(self.health().healthy))
        for name, value in snap["counters"].items():
            family = CounterMetricFamily(f"{PREFIX}_{name}", self.stats.help[name], labels=["camera"])
            family.add_metric([self.camera], value)
            yield family


def _gauge(name: str, help_text: str, camera: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{PREFIX}_{name}", help_text, labels=["camera"])
    family.add_metric([camera], value)
    return family
