"""The SQLite event store: every reported face (``events``), ended track (``tracks``) and group summary
(``groups``), queryable by the HTTP API, bounded by age and size.

Why these settings: WAL lets the HTTP thread read while the frame loop writes, and with
``synchronous=NORMAL`` a commit costs no fsync (the WAL is synced at checkpoints), yet a killed
process (SIGKILL, OOM killer) loses nothing it committed: only power loss can roll back the last
few transactions, and the database stays consistent either way. Each frame's events are one small
transaction, so a crash loses at most the frame in flight.

Ids come from ``AUTOINCREMENT`` and are never reused after retention deletes old rows, so a
client's ``since=<id>`` cursor stays valid. Retention runs from the writer thread every
``prune_interval_s`` (no second writer): rows older than ``retention_days`` go first, then the
oldest rows until the live data fits ``max_size_mb``; freed pages are returned to the file system
(``auto_vacuum=INCREMENTAL``), so the quota holds for the file on disk.

Each event is stored as its JSON line (``data``; time, track and frame are columns only for the
queries), so a new event field needs no schema change (``SCHEMA_VERSION`` stays): rows written before
it read back with the field's default (``landmarks`` -> ``facemesh``, the only path there was), and
an older reader ignores keys it does not know. A new table is no incompatible change either: opening
a file creates the tables it lacks (a file from before ``tracks`` and ``groups`` gets them, its
events untouched), and an older release, after a rollback, reads ``events`` as before and ignores
them, so the version is not bumped for it (a bump would make that release refuse the file).
Retention by age applies to every table; the size quota deletes the oldest face events (the bulk:
one row per face per frame against one per track and one per ``summaries.group_every_s``).

A database that cannot be written (full disk, I/O error) does not stop the daemon: the failure is
logged once when it starts and once when it ends, and failed inserts are counted in ``failed``.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr.device.reporting.events import Record, parse_time
from edge_affectsr.errors import UserError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_LIMIT = 10_000
MAX_EVENT_ID = 2**63 - 1  # SQLite's largest INTEGER
_CHUNK = 2_000  # rows per DELETE transaction during retention: keeps each write lock short
_SIZE_TARGET = 0.9  # prune down to this fraction of max_size_mb, so pruning does not run every insert

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    track_id INTEGER NOT NULL,
    frame INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE INDEX IF NOT EXISTS events_track ON events(track_id, ts);
CREATE TABLE IF NOT EXISTS tracks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    track_id INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tracks_ts ON tracks(ts);
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS groups_ts ON groups(ts);
"""
TABLES = {"face": "events", "track": "tracks", "group": "groups"}  # event kind -> its table
_INSERT = {
    "face": "INSERT INTO events(ts, track_id, frame, data) VALUES (?, ?, ?, ?)",
    "track": "INSERT INTO tracks(ts, track_id, data) VALUES (?, ?, ?)",
    "group": "INSERT INTO groups(ts, data) VALUES (?, ?)",
}


class StoreError(UserError):
    """An event database that cannot be opened or used; the message names the file and the fix."""


class SinceError(UserError, ValueError):
    """A ``since`` value that is neither an event id nor an ISO 8601 time."""


class StoreConfig(BaseModel):
    """The ``store:`` section of the device config."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="keep events in a SQLite database (for /api/events)")
    path: Path = Field(Path("events.db"), description="the database file")
    retention_days: float | None = Field(
        30.0, gt=0, description="events older than this many days are deleted; null: kept regardless of age")
    max_size_mb: float | None = Field(
        256.0, gt=0, description="size limit of the database, MB: the oldest events go first; null: none")
    prune_interval_s: float = Field(300.0, gt=0, description="seconds between retention runs")


def parse_since(text: str) -> int | datetime:
    """An API ``since`` value: digits are an event id (exclusive), anything else an ISO time (inclusive)."""
    text = text.strip()
    if text.isascii() and text.isdigit():  # ("²".isdigit() is True)
        if len(text) > len(str(MAX_EVENT_ID)) or int(text) > MAX_EVENT_ID:  # SQLite would raise OverflowError
            raise SinceError(f"since={text!r} is larger than any event id ({MAX_EVENT_ID})")
        return int(text)
    try:
        return parse_time(text)
    except ValueError:
        raise SinceError(f"since={text!r} is neither an event id nor an ISO 8601 time "
                         "(e.g. 42 or 2025-01-31T12:00:00Z)") from None


class EventStore:
    """``insert``/``insert_many`` from the frame loop, ``events_since`` from any thread, ``close`` at exit."""

    def __init__(self, config: StoreConfig | None = None, clock=time.time) -> None:
        self.config = config or StoreConfig()
        self.path = Path(self.config.path)
        self.failed = 0  # inserts lost to a write error
        self._clock = clock  # wall clock for retention by age (tests move it)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._failing = False
        self._next_prune = 0.0
        self._db = self._open()
        self.prune()

    # --- opening ---------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        """Create or open the database, set WAL and NORMAL sync, create the table; StoreError if unusable."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open the event database {self.path}: {e}; check store.path") from None
        try:
            self._check_version(db)
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect only on a new, empty file
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                log.warning("%s: journal mode is %s, not WAL (file system without shared memory?)", self.path, mode)
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.OperationalError as e:  # full disk, read-only file system, locked by another process
            db.close()
            raise StoreError(f"cannot set up the event database {self.path}: {e}; check store.path and free space") from None
        except sqlite3.DatabaseError as e:  # not an SQLite file, or corrupt
            db.close()
            raise StoreError(f"{self.path} is not a usable event database ({e}); move it away or set store.path") from None
        log.info("event store %s open (%d events)", self.path, self.count(db))
        return db

    def _check_version(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            db.close()
            raise StoreError(f"{self.path} was written by a newer edge-affectsr (schema {version} > {SCHEMA_VERSION}); "
                             "upgrade, or set store.path to a new file")

    # --- writing ---------------------------------------------------------------------------------

    def insert(self, event: Record) -> int | None:
        """Store one event in its own transaction; its id, or None when the write failed (counted)."""
        ids = self.insert_many([event])
        return ids[0] if ids else None

    def insert_many(self, events: Iterable[Record]) -> list[int]:
        """Store events of any kind (one frame's faces and summaries) in one transaction: all are
        committed or none. Their ids (each in its kind's table), in order; [] when the write failed
        (logged when failures start, counted in ``failed``)."""
        rows = [_row(e) for e in events]
        if not rows:
            return []
        with self._write_lock:
            if self._db is None:
                raise StoreError(f"event store {self.path} is closed")
            try:
                ids = self._insert_rows(rows)
            except sqlite3.OperationalError as e:
                self._write_failed(len(rows), e)
                return []
            self._write_ok()
            if time.monotonic() >= self._next_prune:
                self._prune_locked()
        return ids

    def _insert_rows(self, rows: list[tuple[str, tuple]]) -> list[int]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            ids = [self._db.execute(sql, row).lastrowid for sql, row in rows]
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return ids

    def _write_failed(self, n: int, error: Exception) -> None:
        self.failed += n
        if not self._failing:
            self._failing = True
            log.error("event store %s: write failed (%s); events are being lost until it recovers", self.path, error)

    def _write_ok(self) -> None:
        if self._failing:
            self._failing = False
            log.info("event store %s: writing again (%d events lost)", self.path, self.failed)

    # --- retention -------------------------------------------------------------------------------

    def prune(self) -> int:
        """Apply retention now (also runs every ``prune_interval_s`` from the insert path); rows deleted."""
        with self._write_lock:
            return self._prune_locked() if self._db is not None else 0

    def _prune_locked(self) -> int:
        self._next_prune = time.monotonic() + self.config.prune_interval_s
        try:
            by_age = self._prune_age()
            by_size = self._prune_size()
            if by_age or by_size:
                self._db.executescript("PRAGMA incremental_vacuum;")  # execute() would free one page only
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                log.info("event store %s: retention removed %d events by age, %d by size; %.2f MB on disk",
                         self.path, by_age, by_size, self.file_bytes() / 1e6)
        except sqlite3.OperationalError as e:
            log.error("event store %s: retention failed (%s)", self.path, e)
            return 0
        return by_age + by_size

    def _prune_age(self) -> int:
        if self.config.retention_days is None:
            return 0
        cutoff = self._clock() - self.config.retention_days * 86400.0
        return sum(self._delete_where(table, "ts < ?", (cutoff,), limit=None) for table in TABLES.values())

    def _prune_size(self) -> int:
        if self.config.max_size_mb is None:
            return 0
        limit = self.config.max_size_mb * 1e6
        deleted = 0
        for _ in range(8):  # each round re-measures: indexes and page fill make bytes per row approximate
            used, rows = self.used_bytes(), self.count()
            if used <= limit or rows == 0:
                break
            excess = used - limit * _SIZE_TARGET
            deleted += self._delete_where("events", "1", (), limit=max(1, math.ceil(excess / (used / rows))))
        return deleted

    def _delete_where(self, table: str, condition: str, params: tuple, limit: int | None) -> int:
        """Delete the oldest rows of ``table`` matching ``condition`` (at most ``limit``), in short transactions."""
        deleted = 0
        while limit is None or deleted < limit:
            chunk = _CHUNK if limit is None else min(_CHUNK, limit - deleted)
            cur = self._db.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {condition} "
                                   "ORDER BY id LIMIT ?)", (*params, chunk))
            deleted += cur.rowcount
            if cur.rowcount < chunk:
                break
        return deleted

    # --- reading ---------------------------------------------------------------------------------

    def events_since(self, since: int | str | datetime | None = None, limit: int = 100,
                     kind: str = "face") -> list[dict[str, Any]]:
        """Events of ``kind`` (face, track, group) after id ``since`` (exclusive) or at/after time ``since``
        (inclusive), oldest first, at most ``limit``; with no ``since``, the newest ``limit`` (oldest
        first). Each is the event's dict with its ``id`` first. Safe from any thread (its own read-only
        connection)."""
        if isinstance(since, str):
            since = parse_since(since)
        limit = max(1, min(int(limit), MAX_LIMIT))
        table = TABLES[kind]
        if since is None:
            sql = f"SELECT id, data FROM (SELECT id, data FROM {table} ORDER BY id DESC LIMIT ?) ORDER BY id"
            params: tuple = (limit,)
        elif isinstance(since, datetime):
            sql, params = f"SELECT id, data FROM {table} WHERE ts >= ? ORDER BY id LIMIT ?", (since.timestamp(), limit)
        else:
            sql, params = f"SELECT id, data FROM {table} WHERE id > ? ORDER BY id LIMIT ?", (int(since), limit)
        with self._read_lock:
            rows = self._read_connection().execute(sql, params).fetchall()
        return [{"id": row_id, **json.loads(data)} for row_id, data in rows]

    def _read_connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"event store {self.path} is closed")
        if self._reader is None:
            self._reader = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
            self._reader.execute("PRAGMA query_only=ON")
        return self._reader

    def count(self, db: sqlite3.Connection | None = None) -> int:
        return (db or self._db).execute("SELECT count(*) FROM events").fetchone()[0]

    def used_bytes(self) -> int:
        """Bytes of pages holding data (excludes free pages), the measure the size quota applies to."""
        page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * page_size

    def file_bytes(self) -> int:
        """The database file plus its WAL, as on disk."""
        wal = self.path.with_name(self.path.name + "-wal")
        return sum(p.stat().st_size for p in (self.path, wal) if p.exists())

    def summary(self) -> dict[str, Any]:
        """Numbers for /api/stats."""
        with self._write_lock:
            if self._db is None:
                return {"path": str(self.path), "events": None, "mb_on_disk": None, "failed_writes": self.failed}
            return {"path": str(self.path), "events": self.count(), "mb_on_disk": round(self.file_bytes() / 1e6, 3),
                    "failed_writes": self.failed}

    # --- closing ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Close both connections (the last close checkpoints the WAL into the database). Idempotent."""
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        with self._write_lock:
            if self._db is not None:
                self._db.close()
                self._db = None
                log.info("event store %s closed", self.path)

    def __enter__(self) -> "EventStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _row(event: Record) -> tuple[str, tuple]:
    """The INSERT statement of the event's kind and its values."""
    ts, data = parse_time(event.time).timestamp(), event.to_json()
    if event.kind == "face":
        return _INSERT["face"], (ts, event.track_id, event.frame, data)
    if event.kind == "track":
        return _INSERT["track"], (ts, event.track_id, data)
    return _INSERT[event.kind], (ts, data)
