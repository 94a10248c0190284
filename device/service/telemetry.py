"""The daemon's numbers and everyone who reads them: counters, health, /metrics, MQTT stats, systemd status.

Why one place: the same facts reach four audiences (``/api/stats`` for people, ``/metrics`` for
Prometheus, ``<prefix>/stats`` for MQTT dashboards and Home Assistant, systemd's ``STATUS=``), and
each loss or skip must show in all of them. The counts stay with the components that make them
(the store's failed writes, the MQTT queue's drops, the source's skipped images); :class:`Telemetry`
mirrors them into :class:`Stats`, feeds the loss counts to :class:`Health`, and publishes a
snapshot every ``mqtt.stats_every_s`` from the supervisor's tick.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from edge_affectsr.device.capture.frame import FrameSource
from edge_affectsr.device.inference.pipeline import EXTRA_COUNTERS
from edge_affectsr.device.reporting.crops import CropSaver
from edge_affectsr.device.reporting.events import utc_now_iso
from edge_affectsr.device.reporting.health import Health, HealthReport
from edge_affectsr.device.reporting.metrics import Metrics
from edge_affectsr.device.reporting.sinks import EventSinks
from edge_affectsr.device.reporting.stats import Stats
from edge_affectsr.device.service.sd_notify import SystemdNotifier
from edge_affectsr.device.service.settings import DeviceConfig
from edge_affectsr.runtime.bundle_models import LoadedBundle

STATUS_EVERY_S = 30.0  # systemd's STATUS= line when MQTT stats are off
DAEMON_COUNTERS = {**EXTRA_COUNTERS, "reloads": "Bundles reloaded on SIGHUP.",
                   "reconnects": "Times the watchdog reopened a silent source."}
# mirrored counts, by owner: name -> (help, attribute of the owner)
SOURCE_COUNTS = {"unreadable_inputs": ("Input images or frames that could not be decoded, skipped.", "unreadable"),
                 "oversized_inputs": ("Inputs over capture.limits, skipped before decoding.", "oversized")}
LOSS_COUNTS = {"store_failed": ("Events the SQLite store failed to write (missing from /api/events).", "store", "failed"),
               "jsonl_failed": ("Events not written as JSON lines.", "jsonl", "failed"),
               "mqtt_dropped": ("Events dropped from the MQTT queue (broker away too long, or left at exit).", "mqtt",
                                "dropped"),
               "mqtt_failed": ("Events the MQTT client refused to send.", "mqtt", "failed")}


class Telemetry:
    """Built before the bundle loads (the counters exist from the start); ``attach`` the outputs once
    they are open; ``tick()`` from the supervisor a few times a second."""

    def __init__(self, config: DeviceConfig, bundle: Callable[[], LoadedBundle | None],
                 source: Callable[[], FrameSource | None], notifier: SystemdNotifier,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.bundle, self.source, self.notifier = config, bundle, source, notifier
        self.camera = config.capture.camera_name()
        self.stats = Stats(config.stats, extra_counters=DAEMON_COUNTERS, clock=clock)
        self.sinks: EventSinks | None = None
        self.crops: CropSaver | None = None
        for name, (help_text, attr) in SOURCE_COUNTS.items():
            self.stats.mirror(name, help_text, lambda attr=attr: getattr(self.source(), attr, 0))
        for name, (help_text, sink, attr) in LOSS_COUNTS.items():
            self.stats.mirror(name, help_text, lambda sink=sink, attr=attr: self._sink_count(sink, attr))
        self.stats.mirror("crops_failed", "Face crops not saved (encoding or write errors, disk full).",
                          lambda: self.crops.errors + self.crops.disk_full if self.crops else 0)
        self.health = Health(self.stats, config.http.watchdog_s, config.http.loss_window_s, self.losses,
                             [self.delegate_problem], clock)
        self.metrics = Metrics(self.stats, self.camera, self.info, self.health.check)
        self._clock = clock
        self._next_publish = clock()

    def attach(self, sinks: EventSinks, crops: CropSaver | None) -> None:
        self.sinks, self.crops = sinks, crops

    def _sink_count(self, sink: str, attr: str) -> int:
        owner = getattr(self.sinks, sink, None) if self.sinks is not None else None
        return int(getattr(owner, attr, 0)) if owner is not None else 0

    def losses(self) -> dict[str, int]:
        """Cumulative lost events per kind (for the health check's window)."""
        return {name: self._sink_count(sink, attr) for name, (_, sink, attr) in LOSS_COUNTS.items()}

    def delegate_problem(self) -> str | None:
        """The SR model on another delegate than the first of an explicitly configured
        ``interpreter.delegate_order`` (the default order's fallback to the CPU is expected)."""
        interpreter, bundle = self.config.interpreter, self.bundle()
        if bundle is None or "delegate_order" not in interpreter.model_fields_set:
            return None
        wanted, used = interpreter.delegate_order[0], bundle.delegate.delegate
        if used == wanted:
            return None
        why = "; ".join(f"{a.delegate}: {a.error}" for a in bundle.delegate.attempts if not a.ok)
        return f"SR model runs on {used}, not {wanted} as interpreter.delegate_order asks ({why or 'fell back'})"

    def info(self) -> dict[str, Any]:
        """Flat fields that can change while running: /healthz, /api/stats, the labels of edge_affectsr_info."""
        bundle, source = self.bundle(), self.source()
        out: dict[str, Any] = {"camera": self.camera}
        if bundle is not None:
            out.update(model=bundle.name, model_version=bundle.version, delegate=bundle.delegate.delegate)
        out["source"] = source.name if source else None
        return out

    def sections(self) -> dict[str, Callable[[], Any]]:
        """Blocks of /api/stats beyond the counters: the MQTT publisher's and the crop saver's numbers."""
        out: dict[str, Callable[[], Any]] = {}
        if self.crops is not None:
            out["crops"] = self.crops.summary
        if self.sinks is not None and self.sinks.mqtt is not None:
            out["mqtt"] = self.sinks.mqtt.summary
        return out

    def snapshot(self, report: HealthReport) -> dict[str, Any]:
        """What ``<prefix>/stats`` carries: time, camera, model, fps, health and every counter."""
        snap = self.stats.snapshot()
        return {"time": utc_now_iso(), **self.info(), "fps": _finite(snap["fps"]), "uptime_s": snap["uptime_s"],
                "last_frame_age_s": snap["last_frame_age_s"], "status": report.status, "reasons": list(report.reasons),
                "counters": snap["counters"]}

    def tick(self) -> None:
        """Sample losses for the health window; every ``mqtt.stats_every_s`` (``STATUS_EVERY_S`` when
        that is off), publish the stats and tell systemd the status line."""
        self.health.sample()
        every, now = self.config.mqtt.stats_every_s, self._clock()
        if now < self._next_publish:
            return
        self._next_publish = now + (every or STATUS_EVERY_S)
        report = self.health.check()
        snap = self.snapshot(report)
        if every is not None and self.sinks is not None and self.sinks.mqtt is not None:
            self.sinks.mqtt.publish_stats(snap)
        self.notifier.status(f"{report.status}: {snap['counters']['frames']} frames, {snap['fps']:.1f} fps"
                             + (f" ({'; '.join(report.reasons)})" if report.reasons else ""))


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0
