"""device/reporting/stats.py: rolling latency quantiles, fps, counters; JSON and Prometheus text exposition."""

from __future__ import annotations

import math
import re
import threading

import numpy as np
import pytest

from edge_affectsr.config import ConfigError, validate
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
    stats.set_counter("drops", 7)  # mirrored from NewestFrame.dropped
    stats.set_counter("drops", 5)  # a counter never goes backwards
    counters = stats.snapshot()["counters"]
    assert set(COUNTERS) <= set(counters)
    assert counters["faces"] == 3 and counters["no_face"] == 1 and counters["drops"] == 7 and counters["mqtt_dropped"] == 2
    with pytest.raises(KeyError, match="unknown counter 'face'"):
        stats.inc("face")
    with pytest.raises(ValueError, match="not a valid metric name"):
        Stats(extra_counters={"bad-name": "x"})


def test_thread_safe_under_concurrent_recording_and_reading():
    stats = Stats(StatsConfig(window=50))
    stop = threading.Event()
    errors = []

    def reader():
        while not stop.is_set():
            try:
                stats.snapshot()
                stats.to_prometheus({"model": "m"})
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


# --- Prometheus text format 0.0.4 -----------------------------------------------------------------

SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse_exposition(text: str) -> tuple[dict[str, tuple[str, str]], list[tuple[str, dict[str, str], float]]]:
    """A strict reader: families {name: (type, help)} and samples; asserts on anything malformed."""
    assert text.endswith("\n")
    families: dict[str, list[str]] = {}
    samples = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, help_text = line[7:].split(" ", 1)
            families.setdefault(name, [None, None])[1] = help_text
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert kind in ("counter", "gauge", "summary", "histogram", "untyped")
            assert families.setdefault(name, [None, None])[0] is None, f"second TYPE for {name}"
            families[name][0] = kind
        else:
            m = SAMPLE.match(line)
            assert m, f"malformed sample line: {line!r}"
            raw = m["labels"] or ""
            labels = dict(LABEL.findall(raw))
            assert "".join(f'{k}="{v}",' for k, v in labels.items()).rstrip(",") == raw, raw
            samples.append((m["name"], labels, float(m["value"])))
    for name, _, _ in samples:
        family = re.sub(r"_(sum|count)$", "", name) if name not in families else name
        assert family in families, f"sample {name} has no TYPE/HELP"
        assert family.startswith("edge_affectsr_")
    return {k: tuple(v) for k, v in families.items()}, samples


def test_prometheus_exposition_is_well_formed():
    clock = FakeClock()
    stats = Stats(StatsConfig(window=10), clock=clock)
    for i in range(20):
        stats.record_frame()
        stats.record_latency("sr", 2.0 + i % 5)
        stats.record_latency("detect", 3.0)
        clock.t += 0.04
    stats.inc("faces", 20)
    text = stats.to_prometheus({"model": "affectsr-student-x4", "model_version": "0.1.0", "delegate": 'cpu "xnn\\pack"'})
    families, samples = parse_exposition(text)
    assert families["edge_affectsr_frames_total"][0] == "counter"
    assert families["edge_affectsr_fps"][0] == "gauge"
    assert families["edge_affectsr_stage_latency_seconds"][0] == "summary"
    assert all(name.endswith("_total") for name, (kind, _) in families.items() if kind == "counter")
    values = {(n, tuple(sorted(l.items()))): v for n, l, v in samples}
    assert values[("edge_affectsr_frames_total", ())] == 20
    assert values[("edge_affectsr_faces_total", ())] == 20
    sr_p50 = values[("edge_affectsr_stage_latency_seconds", (("quantile", "0.5"), ("stage", "sr")))]
    assert sr_p50 == pytest.approx(np.percentile([2.0 + i % 5 for i in range(10, 20)], 50) / 1000)
    assert values[("edge_affectsr_stage_latency_seconds_count", (("stage", "sr"),))] == 20
    assert values[("edge_affectsr_stage_latency_seconds_sum", (("stage", "sr"),))] == pytest.approx(sum(2.0 + i % 5 for i in range(20)) / 1000)
    info = [l for n, l, _ in samples if n == "edge_affectsr_info"]
    assert info[0]["delegate"] == 'cpu \\"xnn\\\\pack\\"'  # escaped as the format requires
    assert not any(math.isnan(v) for _, _, v in samples)


def test_empty_stats_render():
    families, samples = parse_exposition(Stats().to_prometheus())
    assert "edge_affectsr_stage_latency_seconds" not in families  # no samples yet, no empty summary
    assert "edge_affectsr_last_frame_age_seconds" not in families


def test_config_names_the_key():
    with pytest.raises(ConfigError, match="window"):
        validate({"window": 0}, StatsConfig)
