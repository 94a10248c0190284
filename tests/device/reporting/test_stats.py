"""device/reporting/stats.py: rolling latency quantiles, fps, counters (kept and mirrored), read while recorded."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edge_affectsr.config import ConfigError, validate
from edge_affectsr.device.reporting.metrics import Metrics
from edge_affectsr.device.reporting.stats import COUNTERS, Stats, StatsConfig


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_latency_quantiles_over_the_last_window_samples():
    stats = Stats(StatsConfig(window=100))
    for ms in range(1, 1001):  # only the last 100 (901..1000) count for the quantiles
        stats.record_latency("sr", float(ms))
    sr = stats.snapshot()["latency_ms"]["sr"]
    window = np.arange(901, 1001, dtype=float)
    assert sr["p50"] == pytest.approx(np.percentile(window, 50))
    assert sr["p95"] == pytest.approx(np.percentile(window, 95))
    assert sr["samples"] == 100 and sr["count"] == 1000


def test_fps_over_the_window_and_decay_when_stalled():
    clock = FakeClock()
    stats = Stats(StatsConfig(fps_window_s=2.0), clock=clock)
    assert stats.snapshot()["fps"] == 0.0 and stats.last_frame_age() is None
    for _ in range(100):  # 25 fps for 4 s
        stats.record_frame()
        clock.t += 0.04
    assert stats.snapshot()["fps"] == pytest.approx(25.0, rel=0.03)
    assert stats.counter("frames") == 100
    clock.t += 1.0  # a stall: the rate falls instead of freezing at its last value
    assert 5 < stats.snapshot()["fps"] < 20
    clock.t += 2.0
    assert stats.snapshot()["fps"] == 0.0
    assert stats.last_frame_age() == pytest.approx(3.04)


def test_counters():
    stats = Stats(extra_counters={"mqtt_dropped": "Events the MQTT queue dropped."})
    stats.inc("faces", 3)
    stats.inc("no_face")
    stats.inc("mqtt_dropped", 2)
    stats.inc("drops", 7)
    counters = stats.snapshot()["counters"]
    assert set(COUNTERS) <= set(counters)
    assert counters["faces"] == 3 and counters["no_face"] == 1 and counters["drops"] == 7 and counters["mqtt_dropped"] == 2
    with pytest.raises(KeyError, match="unknown counter 'face'"):
        stats.inc("face")
    with pytest.raises(ValueError, match="not a valid metric name"):
        Stats(extra_counters={"bad-name": "x"})


def test_mirrored_counters_are_read_from_their_owner_at_snapshot_time():
    class Store:
        failed = 0

    store = Store()
    stats = Stats()
    stats.mirror("store_failed", "Events the store failed to write.", lambda: store.failed)
    assert stats.snapshot()["counters"]["store_failed"] == 0
    store.failed = 4
    assert stats.snapshot()["counters"]["store_failed"] == 4 and stats.counter("store_failed") == 4
    with pytest.raises(ValueError, match="already declared"):
        stats.mirror("frames", "x", lambda: 0)
    with pytest.raises(KeyError):
        stats.inc("store_failed")  # its owner counts it


def test_thread_safe_under_concurrent_recording_and_reading():
    stats = Stats(StatsConfig(window=50))
    metrics = Metrics(stats, "cam", lambda: {"model": "m"})
    stop = threading.Event()
    errors = []

    def reader():
        while not stop.is_set():
            try:
                stats.snapshot()
                metrics.render()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers:
        t.start()
    writers = [threading.Thread(target=lambda: [(stats.record_frame(), stats.record_latency(f"s{i % 3}", 1.0),
                                                 stats.inc("faces")) for i in range(2000)]) for _ in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors
    assert stats.counter("frames") == 8000 and stats.counter("faces") == 8000
    assert sum(s["count"] for s in stats.snapshot()["latency_ms"].values()) == 8000


def test_config_names_the_key():
    with pytest.raises(ConfigError, match="window"):
        validate({"window": 0}, StatsConfig)
