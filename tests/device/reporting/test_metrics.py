"""device/reporting/metrics.py: /metrics through prometheus_client, read back by a strict reader of the
text format 0.0.4: a registry per daemon, process metrics, latency histograms, a camera label."""

from __future__ import annotations

import math
import re

import pytest

from edge_affectsr.device.reporting.health import Health
from edge_affectsr.device.reporting.metrics import LATENCY_BUCKETS, Metrics
from edge_affectsr.device.reporting.stats import Stats, StatsConfig

SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
SUFFIXES = ("_total", "_created", "_bucket", "_sum", "_count", "_info")


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def parse_exposition(text: str) -> tuple[dict[str, tuple[str, str]], list[tuple[str, dict[str, str], float]]]:
    """A strict reader: families {name: (type, help)} and samples; asserts on anything malformed."""
    assert text.endswith("\n")
    families: dict[str, list] = {}
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
        family = name if name in families else next(
            (name[:-len(s)] for s in SUFFIXES if name.endswith(s) and name[:-len(s)] in families), None)
        assert family is not None, f"sample {name} has no TYPE/HELP"
    return {k: tuple(v) for k, v in families.items()}, samples


def values(samples) -> dict[tuple[str, tuple], float]:
    return {(n, tuple(sorted(l.items()))): v for n, l, v in samples}


def test_exposition_has_histograms_counters_process_metrics_and_a_camera_label():
    clock = FakeClock()
    stats = Stats(StatsConfig(window=10), clock=clock)
    metrics = Metrics(stats, "door-1", lambda: {"model": "affectsr-student-x4", "model_version": "0.1.0",
                                                "delegate": 'cpu "xnn\\pack"', "crops": {"saved": 3}})
    for i in range(20):
        stats.record_frame()
        stats.record_latency("sr", 2.0 + i % 5)  # 2..6 ms
        stats.record_latency("detect", 30.0)
        clock.t += 0.04
    stats.inc("faces", 20)
    families, samples = parse_exposition(metrics.render().decode())
    got = values(samples)
    cam = ("camera", "door-1")

    assert families["edge_affectsr_stage_latency_seconds"][0] == "histogram"  # not a hand-rolled summary
    assert got[("edge_affectsr_stage_latency_seconds_count", (cam, ("stage", "sr")))] == 20
    assert got[("edge_affectsr_stage_latency_seconds_sum", (cam, ("stage", "sr")))] == pytest.approx(
        sum(2.0 + i % 5 for i in range(20)) / 1000)
    buckets = {l["le"]: v for n, l, v in samples if n == "edge_affectsr_stage_latency_seconds_bucket" and l["stage"] == "sr"}
    assert buckets["0.002"] == 4 and buckets["0.005"] == 16 and buckets["0.01"] == 20 and buckets["+Inf"] == 20
    assert len(buckets) == len(LATENCY_BUCKETS) + 1
    assert {l["le"]: v for n, l, v in samples if n.endswith("_bucket") and l["stage"] == "detect"}["0.02"] == 0

    assert families["edge_affectsr_frames_total"][0] == "counter" and got[("edge_affectsr_frames_total", (cam,))] == 20
    assert got[("edge_affectsr_faces_total", (cam,))] == 20
    assert got[("edge_affectsr_fps", (cam,))] == pytest.approx(25.0, rel=0.05)
    assert all(l.get("camera") == "door-1" for n, l, _ in samples if n.startswith("edge_affectsr_"))
    info = next(l for n, l, _ in samples if n == "edge_affectsr_info")
    assert info["delegate"] == 'cpu \\"xnn\\\\pack\\"' and "crops" not in info  # escaped; nested values left out
    assert got[("process_resident_memory_bytes", ())] > 10e6  # process metrics for free
    assert "process_cpu_seconds_total" in families and "python_info" in families
    assert not any(math.isnan(v) for _, _, v in samples)


def test_two_daemons_in_one_process_do_not_share_metrics():
    a, b = Stats(), Stats()
    ma, mb = Metrics(a, "a"), Metrics(b, "b")
    a.record_latency("sr", 1.0)
    a.inc("faces", 5)
    _, samples_b = parse_exposition(mb.render().decode())
    assert values(samples_b)[("edge_affectsr_faces_total", (("camera", "b"),))] == 0
    assert not [s for s in samples_b if s[0] == "edge_affectsr_stage_latency_seconds_count"]
    _, samples_a = parse_exposition(ma.render().decode())
    assert values(samples_a)[("edge_affectsr_stage_latency_seconds_count", (("camera", "a"), ("stage", "sr")))] == 1


def test_every_skip_and_loss_is_a_counter_and_health_is_a_gauge():
    clock = FakeClock()
    stats = Stats(clock=clock)
    lost = {"store_failed": 0}
    stats.mirror("store_failed", "Events the SQLite store failed to write.", lambda: lost["store_failed"])
    health = Health(stats, no_frames_s=10, loss_window_s=60, losses=lambda: dict(lost), clock=clock)
    metrics = Metrics(stats, "cam", health=health.check)
    stats.record_frame()
    _, samples = parse_exposition(metrics.render().decode())
    assert values(samples)[("edge_affectsr_healthy", (("camera", "cam"),))] == 1
    lost["store_failed"] = 3
    _, samples = parse_exposition(metrics.render().decode())
    assert values(samples)[("edge_affectsr_store_failed_total", (("camera", "cam"),))] == 3
    assert values(samples)[("edge_affectsr_healthy", (("camera", "cam"),))] == 0


def test_an_empty_registry_renders():
    families, samples = parse_exposition(Metrics(Stats(), "cam").render().decode())
    assert not [s for s in samples if s[0].startswith("edge_affectsr_stage_latency")]  # no samples yet
    assert "edge_affectsr_last_frame_age_seconds" not in families
