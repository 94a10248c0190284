"""Track and group events through the real sinks: SQLite (their tables, a file from before them, retention),
JSON lines (one line each, with its kind), the fan-out, and the latest group on the real HTTP server."""

from __future__ import annotations

import io
import json
import sqlite3
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from _device_events import make_event, make_group_event, make_track_event
from edge_affectsr.device.reporting.events import EVENT_KINDS, FaceEvent, GroupEvent, TrackEvent, format_time
from edge_affectsr.device.reporting.http_api import HttpApi, HttpConfig
from edge_affectsr.device.reporting.jsonl import JsonlSink
from edge_affectsr.device.reporting.sinks import EventSinks
from edge_affectsr.device.reporting.stats import Stats
from edge_affectsr.device.reporting.store import EventStore, StoreConfig

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
V1_SCHEMA = """
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, track_id INTEGER NOT NULL,
                     frame INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX events_ts ON events(ts);
CREATE INDEX events_track ON events(track_id, ts);
PRAGMA user_version=1;
"""


def at(seconds: float) -> str:
    return format_time(NOW + timedelta(seconds=seconds))


def test_each_kind_goes_to_its_table_in_the_frames_transaction(tmp_path):
    with EventStore(StoreConfig(path=tmp_path / "e.db", retention_days=None)) as store:
        face, track, group = make_event(1, time=at(1)), make_track_event(4, time=at(2)), make_group_event(time=at(3))
        assert store.insert_many([face, track, group]) == [1, 1, 1]  # one id space per table
        assert [FaceEvent.from_dict(r) for r in store.events_since(None)] == [face]
        assert [TrackEvent.from_dict(r) for r in store.events_since(None, kind="track")] == [track]
        assert [GroupEvent.from_dict(r) for r in store.events_since(0, kind="group")] == [group]
        assert store.events_since(at(2.5), kind="track") == []  # the time cursor works per table too
        db = sqlite3.connect(store.path)
        assert db.execute("SELECT track_id FROM tracks").fetchall() == [(4,)]
        assert db.execute("SELECT count(*) FROM events").fetchone() == (1,)
        db.close()


def test_a_file_from_before_the_summary_tables_gets_them_and_keeps_its_events(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(V1_SCHEMA)
    legacy = make_event(0, time=at(0)).to_dict()
    legacy = {k: v for k, v in legacy.items() if k not in ("kind", "raw_expression", "raw_probabilities")}
    legacy["guard"] = {k: v for k, v in legacy["guard"].items() if k != "landmark_checked"}
    old.execute("INSERT INTO events(ts, track_id, frame, data) VALUES (?, 1, 0, ?)", (NOW.timestamp(), json.dumps(legacy)))
    old.commit()
    old.close()
    with EventStore(StoreConfig(path=path, retention_days=None)) as store:
        store.insert_many([make_track_event(), make_group_event()])
        (row,) = store.events_since(None)
        event = FaceEvent.from_dict(row)  # an event as the earlier release wrote it
        assert event.raw_probabilities == event.probabilities and event.guard.landmark_checked
        assert len(store.events_since(None, kind="track")) == len(store.events_since(None, kind="group")) == 1
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == 1  # an older release still opens it


def test_retention_by_age_applies_to_every_table(tmp_path):
    clock = [NOW.timestamp()]
    cfg = StoreConfig(path=tmp_path / "e.db", retention_days=1.0, max_size_mb=None)
    with EventStore(cfg, clock=lambda: clock[0]) as store:
        store.insert_many([make_event(0, time=at(0)), make_track_event(time=at(0)), make_group_event(time=at(0))])
        store.insert_many([make_track_event(2, time=at(86_400))])
        clock[0] += 1.5 * 86_400
        assert store.prune() == 3
        assert [r["track_id"] for r in store.events_since(None, kind="track")] == [2]
        assert store.events_since(None, kind="group") == [] and store.events_since(None) == []


def test_every_kind_is_one_json_line_saying_its_kind():
    out = io.StringIO()
    sink = JsonlSink(out)
    empty = make_group_event(faces=0, probabilities=dict.fromkeys(("happy", "sad"), float("nan")))
    events = [make_event(3), make_track_event(), empty]
    assert all(sink.write(e) for e in events)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    parsed = [json.loads(line) for line in lines]
    assert [p["kind"] for p in parsed] == ["face", "track", "group"]
    assert parsed[2]["probabilities"] == {"happy": None, "sad": None}  # an empty group: no NaN in the JSON
    assert [EVENT_KINDS[p["kind"]].from_dict(p) for p in parsed[:2]] == events[:2]


def test_the_fan_out_writes_every_kind_to_every_sink(tmp_path):
    store = EventStore(StoreConfig(path=tmp_path / "e.db"))
    out = io.StringIO()
    sinks = EventSinks(store, JsonlSink(out))
    sinks.write([make_event(0), make_event(1), make_track_event(), make_group_event()])
    assert sinks.written == 4 and len(out.getvalue().splitlines()) == 4
    assert len(store.events_since(None)) == 2 and len(store.events_since(None, kind="track")) == 1
    sinks.close()


def test_api_stats_shows_the_latest_group_summary():
    stats = Stats()
    with HttpApi(HttpConfig(port=0), stats) as api:
        with urllib.request.urlopen(api.url + "/api/stats", timeout=5) as r:
            assert "group" not in json.loads(r.read())  # none yet
        stats.publish("group", make_group_event(faces=2).to_dict())
        latest = make_group_event(faces=3, time=at(10))
        stats.publish("group", latest.to_dict())
        with urllib.request.urlopen(api.url + "/api/stats", timeout=5) as r:
            body = json.loads(r.read())
    assert body["group"] == json.loads(latest.to_json()) and body["group"]["histogram"]["happy"] == 2


@pytest.mark.parametrize("maker", [make_track_event, make_group_event])
def test_summaries_round_trip(maker):
    event = maker()
    assert type(event).from_json(event.to_json()) == event and "\n" not in event.to_json()
