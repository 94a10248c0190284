"""device/service/telemetry.py: the daemon's counters, health and published stats, with a real bundle
loaded on this machine (whose Edge TPU delegate cannot load: a real fall-back), a real SQLite store
and a real JSON-lines file."""

from __future__ import annotations

import pytest

from _device_events import make_event
from edge_affectsr.device.reporting.jsonl import JsonlSink
from edge_affectsr.device.reporting.sinks import EventSinks
from edge_affectsr.device.reporting.store import EventStore, StoreConfig
from edge_affectsr.device.service.sd_notify import SystemdNotifier
from edge_affectsr.device.service.settings import load_device_config
from edge_affectsr.device.service.telemetry import Telemetry
from edge_affectsr.runtime.bundle_models import load_bundle

from device_bundle import require_bundle


def telemetry(overrides: dict, bundle=None, source=None) -> Telemetry:
    config = load_device_config(None, {"capture.camera": "gate", **overrides})
    return Telemetry(config, lambda: bundle, lambda: source, SystemdNotifier({}))


@pytest.fixture(scope="module")
def fell_back():
    """The shipped bundle with the Edge TPU asked for first: no Coral here, so the SR model runs on the CPU."""
    config = load_device_config(None, {"interpreter.delegate_order": ["edgetpu", "cpu"]})
    return load_bundle(require_bundle(), config.interpreter, self_test=False)


def test_a_delegate_fallback_from_an_explicit_order_degrades_health(fell_back):
    assert fell_back.delegate.delegate == "cpu" and fell_back.delegate.fell_back
    t = telemetry({"interpreter.delegate_order": ["edgetpu", "cpu"]}, fell_back)
    t.stats.record_frame()
    report = t.health.check()
    assert report.status == "degraded" and len(report.reasons) == 1
    assert report.reasons[0].startswith("SR model runs on cpu, not edgetpu as interpreter.delegate_order asks (edgetpu: ")
    assert t.info()["delegate"] == "cpu" and t.info()["camera"] == "gate"


def test_the_default_orders_fallback_is_expected_not_a_fault(fell_back):
    t = telemetry({}, fell_back)  # delegate_order left at its default (edgetpu, gpu, cpu): whatever loads
    t.stats.record_frame()
    assert t.health.check().status == "ok"


def test_losses_of_every_sink_are_counted_and_degrade_health(tmp_path):
    t = telemetry({"http.loss_window_s": 60})
    store = EventStore(StoreConfig(path=tmp_path / "e.db"))
    jsonl = JsonlSink(tmp_path / "e.jsonl")
    sinks = EventSinks(store, jsonl)
    t.attach(sinks, None)
    sinks.write([make_event(0)])
    t.stats.record_frame()
    assert t.health.check().status == "ok" and t.losses() == {"store_failed": 0, "jsonl_failed": 0, "mqtt_dropped": 0,
                                                              "mqtt_failed": 0}
    jsonl.close()  # the JSON-lines file goes away under the daemon: its next events are lost, and counted
    sinks.write([make_event(1), make_event(2)])
    counters = t.stats.snapshot()["counters"]
    assert counters["jsonl_failed"] == 2 and counters["store_failed"] == 0 and store.count() == 3
    report = t.health.check()
    assert report.status == "degraded" and report.reasons == ("2 events lost in the last 60 s (jsonl_failed 2)",)
    snap = t.snapshot(report)
    assert snap["camera"] == "gate" and snap["status"] == "degraded" and snap["counters"]["jsonl_failed"] == 2
    assert {"unreadable_inputs", "oversized_inputs", "crops_failed", "reloads", "reconnects"} <= set(snap["counters"])
    store.close()
