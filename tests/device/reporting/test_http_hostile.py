"""device/reporting/http_api.py against hostile but fair clients: HEAD wherever GET works (HEAD-based
health checks), an event id too large for SQLite, and arbitrary query strings (hypothesis): every
answer is a clean 200/400/404, never a 500 with a traceback in the log. A real server on a loopback
port for the HTTP semantics; the same request handler called directly for the thousands of
generated queries."""

from __future__ import annotations

import http.client
import json
import logging
import urllib.parse
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _device_events import make_event
from edge_affectsr.device.reporting.events import format_time
from edge_affectsr.device.reporting.http_api import HttpApi, HttpConfig
from edge_affectsr.device.reporting.stats import Stats
from edge_affectsr.device.reporting.store import EventStore, StoreConfig

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
ENDPOINTS = ("/healthz", "/api/stats", "/metrics", "/api/events")


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    path = tmp_path_factory.mktemp("http") / "events.db"
    with EventStore(StoreConfig(path=path, retention_days=None)) as store:
        store.insert_many([make_event(i, time=format_time(T0 + timedelta(seconds=i))) for i in range(5)])
        with HttpApi(HttpConfig(port=0, max_events=50), Stats(), store, info=lambda: {"model": "m"}) as server:
            yield server


def request(api: HttpApi, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=5)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


@pytest.mark.parametrize("path", [*ENDPOINTS, "/api/events?since=2&limit=1", "/api/events?limit=0", "/nothing"])
def test_head_answers_like_get_without_a_body(api, path):
    """HEAD was a 501 (http.server's default), so HEAD-based health checks failed on a healthy daemon."""
    got, head = request(api, "GET", path), request(api, "HEAD", path)
    assert head[0] == got[0] != 501
    for header in ("content-type", "cache-control"):
        assert head[1][header] == got[1][header]
    if path != "/metrics":  # its process metrics (CPU seconds, memory) change between two requests
        assert int(head[1]["content-length"]) == len(got[2])
    assert int(head[1]["content-length"]) > 0 and len(got[2]) > 0 and head[2] == b""


@pytest.mark.parametrize("since", ["9" * 25, str(2**63), "-" + "9" * 25, "1" + "0" * 5000])
def test_an_event_id_too_large_for_sqlite_is_a_400(api, since, caplog):
    """A 25-digit id used to reach SQLite (OverflowError): a 500 and a traceback in the log."""
    with caplog.at_level(logging.ERROR):
        status, _, body = request(api, "GET", f"/api/events?since={since}")
    assert status == 400 and "since=" in json.loads(body)["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_largest_sqlite_id_is_still_an_id(api):
    status, _, body = request(api, "GET", f"/api/events?since={2**63 - 1}")
    assert status == 200 and json.loads(body)["events"] == []


# --- arbitrary queries (hypothesis) -----------------------------------------------------------------

KEYS = st.sampled_from(["since", "limit", "x", "", "since[]"]) | st.text(max_size=8)
VALUES = (st.text(max_size=30) | st.integers().map(str) | st.sampled_from(["²", "١٢", "0x10", "1e3", " 7 ", "9" * 25])
          | st.datetimes(timezones=st.none() | st.builds(timezone, st.timedeltas(-timedelta(hours=23), timedelta(hours=23))))
          .map(lambda d: d.isoformat()))
QUERIES = st.lists(st.tuples(KEYS, VALUES), max_size=25).map(urllib.parse.urlencode)
RAW = st.text(alphabet=st.characters(codec="latin-1"), max_size=60)


def _answer(api: HttpApi, path: str, caplog) -> int:
    caplog.clear()
    response = api.handle(path)
    body = json.loads(response.body) if response.content_type == "application/json" else None
    allowed = (200, 400, 404, 503) if path.startswith("/healthz") else (200, 400, 404)  # 503: no frame yet
    assert response.status in allowed, (path, response.status, body)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], path
    if response.status == 400:
        assert isinstance(body["error"], str) and body["error"]
    return response.status


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(ENDPOINTS), query=QUERIES | RAW)
def test_any_query_is_answered_cleanly(api, endpoint, query, caplog):
    """A valid result or a 400 naming the problem, for any query string (encoded pairs, or raw text)."""
    _answer(api, f"{endpoint}?{query}", caplog)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(since=VALUES, limit=VALUES)
def test_since_and_limit_are_parsed_or_refused(api, since, limit, caplog):
    query = urllib.parse.urlencode({"since": since, "limit": limit})
    status = _answer(api, f"/api/events?{query}", caplog)
    assert status in (200, 400)
