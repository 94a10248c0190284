"""device/reporting/http_api.py: the real server on an ephemeral loopback port, queried with urllib."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from _device_events import make_event
from edge_affectsr.config import ConfigError, validate
from edge_affectsr.device.reporting.events import format_time
from edge_affectsr.device.reporting.health import Health
from edge_affectsr.device.reporting.http_api import PROMETHEUS, HttpApi, HttpConfig, HttpError
from edge_affectsr.device.reporting.stats import Stats
from edge_affectsr.device.reporting.store import EventStore, StoreConfig

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
INFO = {"model": "affectsr-student-x4", "model_version": "0.1.0", "delegate": "cpu"}


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def get(url: str) -> tuple[int, str, bytes]:
    """Status, content type, body; 4xx/5xx answers are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def get_json(url: str) -> tuple[int, dict]:
    status, ctype, body = get(url)
    assert ctype == "application/json", (ctype, body)
    return status, json.loads(body)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(tmp_path):
    with EventStore(StoreConfig(path=tmp_path / "events.db", retention_days=None)) as s:
        s.insert_many([make_event(i, time=format_time(T0 + timedelta(seconds=i))) for i in range(10)])
        yield s


@pytest.fixture
def api(store, clock):
    stats = Stats(clock=clock)
    with HttpApi(HttpConfig(port=0, watchdog_s=5.0, max_events=50), stats, store, info=lambda: INFO) as server:
        yield server


def test_healthz_follows_the_watchdog(api, clock):
    status, body = get_json(api.url + "/healthz")
    assert status == 503 and body["status"] == "starting"
    api.stats.record_frame()
    clock.t += 1.0
    status, body = get_json(api.url + "/healthz")
    assert status == 200 and body["status"] == "ok" and body["last_frame_age_s"] == 1.0 and body["reasons"] == []
    assert body["model_version"] == "0.1.0" and body["frames"] == 1
    clock.t += 5.0  # no frame for longer than watchdog_s
    status, body = get_json(api.url + "/healthz")
    assert status == 503 and body["status"] == "degraded" and body["reasons"] == ["no frame for 6.0 s (> 5 s)"]
    api.stats.record_frame()
    assert get_json(api.url + "/healthz")[0] == 200


def test_healthz_is_degraded_while_events_are_lost_within_the_window(store, clock):
    """Issue 17: with the database failing every write, /healthz said 200 "ok". Losses are sampled from
    their owners' counts; a loss in the last loss_window_s degrades, and it recovers by itself."""
    lost = {"store_failed": 0, "mqtt_dropped": 0}
    stats = Stats(clock=clock)
    health = Health(stats, no_frames_s=5.0, loss_window_s=10.0, losses=lambda: dict(lost), clock=clock)
    with HttpApi(HttpConfig(port=0), stats, store, info=lambda: INFO, health=health) as server:
        stats.record_frame()
        assert get_json(server.url + "/healthz")[0] == 200
        lost["store_failed"] = 3
        lost["mqtt_dropped"] = 1
        clock.t += 1.0
        stats.record_frame()
        status, body = get_json(server.url + "/healthz")
        assert status == 503 and body["status"] == "degraded" and body["events_lost_in_window"] == 4
        assert body["reasons"] == ["4 events lost in the last 10 s (mqtt_dropped 1, store_failed 3)"]
        assert get_json(server.url + "/api/stats")[1]["health"]["status"] == "degraded"
        for _ in range(9):  # frames go on, no more losses: still degraded until the window has passed
            clock.t += 1.0
            stats.record_frame()
            health.sample()
        assert get_json(server.url + "/healthz")[0] == 503
        clock.t += 1.5
        stats.record_frame()
        status, body = get_json(server.url + "/healthz")
        assert status == 200 and body["status"] == "ok" and body["events_lost_in_window"] == 0


def test_healthz_names_every_failed_check(store, clock):
    stats = Stats(clock=clock)
    health = Health(stats, 5.0, 10.0, checks=[lambda: None, lambda: "SR model on cpu, not edgetpu as configured"],
                    clock=clock)
    with HttpApi(HttpConfig(port=0), stats, store, health=health) as server:
        stats.record_frame()
        status, body = get_json(server.url + "/healthz")
    assert status == 503 and body["reasons"] == ["SR model on cpu, not edgetpu as configured"]


def test_stats_json(api):
    api.sections["mqtt"] = lambda: {"connected": False, "dropped": 3}
    api.stats.record_frame()
    api.stats.record_latency("sr", 2.5)
    api.stats.inc("faces")
    status, body = get_json(api.url + "/api/stats")
    assert status == 200
    assert body["delegate"] == "cpu" and body["model_version"] == "0.1.0"
    assert body["counters"]["frames"] == 1 and body["counters"]["faces"] == 1
    assert body["latency_ms"]["sr"]["p50"] == 2.5 and "fps" in body
    assert body["store"]["events"] == 10 and body["mqtt"] == {"connected": False, "dropped": 3}
    assert body["health"] == {"status": "ok", "reasons": []}


def test_metrics_is_prometheus_text(api):
    api.stats.record_latency("sr", 2.0)
    status, ctype, body = get(api.url + "/metrics")
    assert status == 200 and ctype == PROMETHEUS == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    assert "# TYPE edge_affectsr_frames_total counter" in text
    assert "# TYPE edge_affectsr_stage_latency_seconds histogram" in text
    assert 'edge_affectsr_stage_latency_seconds_bucket{camera="' in text and 'le="0.002",stage="sr"} 1.0' in text
    assert 'delegate="cpu",model="affectsr-student-x4",model_version="0.1.0"} 1.0' in text
    assert "process_resident_memory_bytes " in text


def test_events_since_id_time_and_limit(api):
    status, body = get_json(api.url + "/api/events?since=7")
    assert status == 200 and [e["id"] for e in body["events"]] == [8, 9, 10] and body["next_since"] == 10
    assert body["events"][0]["frame"] == 7 and body["events"][0]["guard"]["preserved"] is True
    status, body = get_json(api.url + "/api/events?since=10")
    assert body["events"] == [] and body["next_since"] == 10  # nothing new: keep the cursor
    since = urllib.parse.quote("2025-06-01T14:00:08+02:00")  # = 12:00:08Z, inclusive
    status, body = get_json(f"{api.url}/api/events?since={since}")
    assert [e["frame"] for e in body["events"]] == [8, 9]
    status, body = get_json(api.url + "/api/events?limit=3")  # no since: the newest
    assert [e["id"] for e in body["events"]] == [8, 9, 10] and body["count"] == 3
    status, body = get_json(api.url + "/api/events?since=0&limit=2")
    assert [e["id"] for e in body["events"]] == [1, 2]


@pytest.mark.parametrize("query,message", [
    ("since=abc", "neither an event id nor an ISO 8601 time"),
    ("since=2025-02-30T00:00:00Z", "neither an event id"),
    ("since=", "give since once"),
    ("since=1&since=2", "give since once"),
    ("limit=0", "from 1 to 50"),
    ("limit=51", "from 1 to 50"),
    ("limit=-3", "from 1 to 50"),
    ("limit=ten", "from 1 to 50"),
    ("sinse=4", "unknown query parameter(s) sinse"),
])
def test_bad_event_queries_are_400_with_a_json_error(api, query, message):
    status, body = get_json(f"{api.url}/api/events?{query}")
    assert status == 400 and message in body["error"]


def test_unknown_paths_are_404(api):
    status, body = get_json(api.url + "/api/nothing")
    assert status == 404 and "/api/events" in body["endpoints"]
    assert get_json(api.url + "/")[0] == 404


def test_a_failing_handler_is_a_500_without_traceback(store, caplog):
    def broken_info():
        raise RuntimeError("model registry exploded")

    with HttpApi(HttpConfig(port=0), Stats(), store, info=broken_info) as server:
        status, body = get_json(server.url + "/api/stats")
        assert get_json(server.url + "/api/events?since=0&limit=1")[0] == 200  # other endpoints still work
    assert status == 500 and "Traceback" not in json.dumps(body) and "exploded" not in body["error"]
    assert any("exploded" in r.exc_text for r in caplog.records if r.exc_text)  # the log has it


def test_events_without_a_store_is_404():
    with HttpApi(HttpConfig(port=0), Stats()) as server:
        status, body = get_json(server.url + "/api/events")
        assert status == 404 and "store" in body["error"]


def test_a_stalled_client_does_not_block_others(api):
    idle = socket.create_connection(("127.0.0.1", api.port))  # connects, sends nothing
    try:
        start = time.monotonic()
        assert get(api.url + "/metrics")[0] == 200
        assert time.monotonic() - start < 2
    finally:
        idle.close()


def test_port_in_use_is_a_user_error_and_stop_frees_it():
    first = HttpApi(HttpConfig(port=0))
    first.start()
    with pytest.raises(HttpError, match=f"127.0.0.1:{first.port}.*http.port"):
        HttpApi(HttpConfig(port=first.port)).start()
    port = first.port
    start = time.monotonic()
    first.stop()
    assert time.monotonic() - start < 1.0  # within the daemon's 2 s exit budget
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    first.stop()  # idempotent


def test_config_names_the_key():
    assert HttpConfig().host == "127.0.0.1"  # loopback unless asked
    with pytest.raises(ConfigError, match="port"):
        validate({"port": 70000}, HttpConfig)
    with pytest.raises(ConfigError, match="hots: unknown key"):
        validate({"hots": "0.0.0.0"}, HttpConfig)
