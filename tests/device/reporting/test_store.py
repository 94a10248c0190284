"""device/reporting/store.py: the SQLite event store (WAL, small transactions, retention, crash safety)."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from _device_events import make_event, make_track_event
from _tmpfs import small_tmpfs
from edge_affectsr.config import ConfigError, validate
from edge_affectsr.device.reporting.events import FaceEvent, Guard, TrackEvent, format_time
from edge_affectsr.device.reporting.store import EventStore, SinceError, StoreConfig, StoreError, parse_since

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


def at(seconds: float) -> str:
    return format_time(NOW + timedelta(seconds=seconds))


@pytest.fixture
def store(tmp_path):
    with EventStore(StoreConfig(path=tmp_path / "events.db", retention_days=None, max_size_mb=None)) as s:
        yield s


def test_wal_and_normal_sync(store):
    store.insert(make_event(0))
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL (per connection)
    other = sqlite3.connect(store.path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental: retention gives space back
    indexes = {row[1] for row in other.execute("PRAGMA index_list(events)")}
    assert {"events_ts", "events_track"} <= indexes
    other.close()


def test_insert_and_read_back(store):
    first = store.insert(make_event(0, time=at(0)))
    ids = store.insert_many([make_event(i, time=at(i)) for i in range(1, 5)])
    assert [first, *ids] == [1, 2, 3, 4, 5]
    rows = store.events_since(2)
    assert [r["id"] for r in rows] == [3, 4, 5]
    assert FaceEvent.from_dict(rows[0]) == make_event(2, time=at(2))
    assert [r["id"] for r in store.events_since(0, limit=2)] == [1, 2]
    assert [r["id"] for r in store.events_since(None, limit=2)] == [4, 5]  # newest, oldest first
    assert [r["id"] for r in store.events_since(at(3))] == [4, 5]  # a time is inclusive
    assert [r["id"] for r in store.events_since("2025-06-01T14:00:02+02:00")] == [3, 4, 5]  # any offset
    assert store.events_since(5) == [] and store.insert_many([]) == []
    assert store.summary()["events"] == 5


def test_the_landmark_path_is_stored_and_rows_from_before_it_read_back(store):
    """Events are stored as JSON: a new field needs no schema change, and old rows get its default."""
    store.insert(make_event(0, time=at(0), landmarks="keypoints"))
    legacy = {k: v for k, v in make_event(1, time=at(1)).to_dict().items() if k != "landmarks"}
    with store._write_lock:  # a row as an earlier version wrote it
        store._db.execute("INSERT INTO events(ts, track_id, frame, data) VALUES (?, ?, ?, ?)",
                          (NOW.timestamp() + 1, 1, 1, json.dumps(legacy)))
    rows = store.events_since(None)
    assert [r.get("landmarks") for r in rows] == ["keypoints", None]
    assert [FaceEvent.from_dict(r).landmarks for r in rows] == ["keypoints", "facemesh"]
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == 1


def test_guard_verdicts_are_stored_and_rows_from_before_them_read_back(tmp_path):
    """A database an earlier version wrote (its rows' guards without ``verdict``, its tracks without
    ``guard_unverified``) opens, serves its rows as they were and reads back with the defaults."""
    path = tmp_path / "old.db"
    with EventStore(StoreConfig(path=path, retention_days=None)) as old:
        with old._write_lock:
            for i, preserved in enumerate((True, False)):
                row = make_event(i, time=at(i), guard=Guard(preserved, True, 0.1, 0.05)).to_dict()
                del row["guard"]["verdict"]
                old._db.execute("INSERT INTO events(ts, track_id, frame, data) VALUES (?, ?, ?, ?)",
                                (NOW.timestamp() + i, 1, i, json.dumps(row)))
            track = make_track_event().to_dict()
            del track["guard_unverified"]
            old._db.execute("INSERT INTO tracks(ts, track_id, data) VALUES (?, ?, ?)", (NOW.timestamp(), 1, json.dumps(track)))
    with EventStore(StoreConfig(path=path, retention_days=None)) as store:
        store.insert(make_event(2, time=at(2), guard=Guard.judged("unverified", agreement=True, kl=0.2,
                                                                   landmark_error=math.nan)))
        rows = store.events_since(None)
        assert [r["guard"].get("verdict") for r in rows] == [None, None, "unverified"]
        assert [FaceEvent.from_dict(r).guard.verdict for r in rows] == ["preserved", "changed", "unverified"]
        assert TrackEvent.from_dict(store.events_since(None, kind="track")[0]).guard_unverified == 0


def test_since_parsing():
    assert parse_since("42") == 42
    assert parse_since("2025-06-01T12:00:00Z") == NOW
    for bad in ("-1", "yesterday", "12abc", "2025-13-01"):
        with pytest.raises(SinceError, match="neither an event id nor"):
            parse_since(bad)


def test_reads_from_other_threads_while_writing(store):
    errors, seen = [], []

    def reader():
        try:
            cursor = 0
            while cursor < 400:
                rows = store.events_since(cursor, limit=50)
                assert [r["id"] for r in rows] == list(range(cursor + 1, cursor + 1 + len(rows)))  # no gaps
                cursor = rows[-1]["id"] if rows else cursor
                seen.extend(rows)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(0, 400, 4):
        store.insert_many([make_event(i + k) for k in range(4)])
    for t in threads:
        t.join(10)
    assert not errors and len(seen) == 800


def test_retention_by_age(tmp_path):
    clock = [NOW.timestamp()]
    cfg = StoreConfig(path=tmp_path / "e.db", retention_days=1, max_size_mb=None, prune_interval_s=3600)
    with EventStore(cfg, clock=lambda: clock[0]) as store:
        store.insert_many([make_event(i, time=at(-3 * 86400 + i)) for i in range(5)])  # 3 days old
        store.insert_many([make_event(i, time=at(-3600 + i)) for i in range(5, 8)])  # an hour old
        assert store.prune() == 5
        assert [r["frame"] for r in store.events_since(0)] == [5, 6, 7]
        clock[0] += 86400  # a day later the rest is too old as well
        assert store.prune() == 3 and store.count() == 0
        assert store.insert(make_event(9)) == 9  # ids are never reused: since=<id> cursors stay valid


def test_retention_by_size_keeps_the_file_within_the_quota(tmp_path, caplog):
    cfg = StoreConfig(path=tmp_path / "e.db", retention_days=None, max_size_mb=0.25, prune_interval_s=3600)
    with EventStore(cfg) as store:
        for start in range(0, 2000, 50):
            store.insert_many([make_event(i) for i in range(start, start + 50)])
        assert store.file_bytes() > 0.5e6
        with caplog.at_level(logging.INFO, logger="edge_affectsr.device.reporting.store"):
            deleted = store.prune()
        assert deleted > 1000
        assert store.file_bytes() <= 0.25e6  # the file on disk, WAL included, not just the live pages
        ids = [r["id"] for r in store.events_since(0, limit=5000)]
        assert ids == list(range(2001 - len(ids), 2001))  # the newest survive, oldest went first
        assert len(ids) > 150  # ~0.9 KB a row with its index entries (raw and smoothed probabilities)
        assert any("retention removed 0 events by age" in r.getMessage() for r in caplog.records)


def test_retention_runs_periodically_from_the_insert_path(tmp_path):
    clock = [NOW.timestamp()]
    cfg = StoreConfig(path=tmp_path / "e.db", retention_days=1, max_size_mb=None, prune_interval_s=0.05)
    with EventStore(cfg, clock=lambda: clock[0]) as store:
        store.insert(make_event(0, time=at(-2 * 86400)))
        time.sleep(0.06)
        store.insert(make_event(1, time=at(0)))
        assert [r["frame"] for r in store.events_since(0)] == [1]


def test_a_full_disk_is_counted_not_raised(tmp_path, caplog):
    with small_tmpfs(tmp_path / "small", "256k") as mnt:  # room for the database, its WAL and index
        store = EventStore(StoreConfig(path=mnt / "e.db", retention_days=None, max_size_mb=None))
        with caplog.at_level(logging.ERROR, logger="edge_affectsr.device.reporting.store"):
            ids = []
            for i in range(0, 400, 4):
                ids += store.insert_many([make_event(i + k) for k in range(4)])
        assert store.failed > 0 and len(ids) + store.failed == 400
        assert len([r for r in caplog.records if "write failed" in r.getMessage()]) == 1  # one line, not one per frame
        assert [r["id"] for r in store.events_since(0, limit=1000)] == ids  # what was committed is readable
        store.close()


def test_unusable_files_are_user_errors(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not an sqlite database at all" * 200)
    with pytest.raises(StoreError, match="junk.db is not a usable event database"):
        EventStore(StoreConfig(path=junk))
    newer = tmp_path / "newer.db"
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(StoreError, match="newer edge-affectsr"):
        EventStore(StoreConfig(path=newer))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open"):
        EventStore(StoreConfig(path=blocker / "e.db"))


def test_closed_store(tmp_path):
    store = EventStore(StoreConfig(path=tmp_path / "e.db"))
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.events_since(0)
    with pytest.raises(StoreError, match="closed"):
        store.insert(make_event(0))
    assert store.prune() == 0 and store.summary()["events"] is None


def test_config_names_the_key():
    with pytest.raises(ConfigError, match="retention_days"):
        validate({"retention_days": -1}, StoreConfig)
    with pytest.raises(ConfigError, match="max_size: unknown key"):
        validate({"max_size": 3}, StoreConfig)


CHILD = """
import sys
sys.path.insert(0, "tests")
from _device_events import make_event
from edge_affectsr.device.reporting.store import EventStore, StoreConfig
store = EventStore(StoreConfig(path=sys.argv[1], prune_interval_s=3600))
i = 0
while True:
    if i % 3 == 0:  # a frame with two faces: one transaction
        ids = store.insert_many([make_event(i), make_event(i + 1)])
        i += 2
    else:
        ids = [store.insert(make_event(i))]
        i += 1
    print(*ids, flush=True)  # only after the commit returned
"""


def test_sigkill_loses_nothing_committed(tmp_path):
    path = tmp_path / "killed.db"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    printed: list[int] = []
    try:
        deadline = time.monotonic() + 10
        while len(printed) < 300 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            printed += [int(x) for x in line.split()]
        assert len(printed) >= 300, "the child did not write"
        assert Path(f"{path}-wal").exists()  # killed with a WAL that was never checkpointed at close
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        printed += [int(x) for x in child.stdout.read().split()]  # lines already in the pipe
    finally:
        child.kill()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    stored = [row[0] for row in db.execute("SELECT id FROM events ORDER BY id")]
    db.close()
    assert set(printed) <= set(stored)  # every committed event survived
    assert stored == list(range(1, len(stored) + 1))  # and no transaction was half-applied
    with EventStore(StoreConfig(path=path)) as again:  # the daemon restarts on it
        assert again.insert(make_event(0)) == len(stored) + 1
