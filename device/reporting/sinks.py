"""Fan-out of one frame's events (faces, ended tracks, group summaries) to every configured sink:
SQLite first, then JSON lines, then MQTT.

Why this order: the database is the record the HTTP API serves and the one that must survive a
crash, so a frame's events are committed there (one transaction) before they are printed or
published; a consumer that sees a line can then always find it in ``/api/events``. Each sink
already turns its own failures into counted, logged no-ops (full disk, closed pipe, broker down),
so a failing sink never stops the frame loop or the other sinks.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, Sequence

from edge_affectsr.device.reporting.events import Record

log = logging.getLogger(__name__)


class Store(Protocol):
    def insert_many(self, events: Sequence[Record]) -> list[int]: ...
    def close(self) -> None: ...


class LineSink(Protocol):
    def write(self, event: Record) -> bool: ...
    def close(self) -> None: ...


class Publisher(Protocol):
    def publish(self, event: Record) -> bool: ...
    def close(self, timeout: float = 1.0) -> None: ...


class EventSinks:
    """``write(events)`` per frame from the frame loop; ``close()`` once at exit (idempotent)."""

    def __init__(self, store: Store | None = None, jsonl: LineSink | None = None, mqtt: Publisher | None = None) -> None:
        self.store, self.jsonl, self.mqtt = store, jsonl, mqtt
        self.written = 0
        self._closed = False

    def write(self, events: Sequence[Record]) -> None:
        if not events or self._closed:
            return
        if self.store is not None:
            self.store.insert_many(events)
        for event in events:
            if self.jsonl is not None:
                self.jsonl.write(event)
            if self.mqtt is not None:
                self.mqtt.publish(event)
        self.written += len(events)

    def summary(self) -> dict[str, Any]:
        return {"events_written": self.written}

    def close(self, timeout: float = 0.5) -> None:
        """Close every sink; an error closing one is logged and the others are still closed."""
        if self._closed:
            return
        self._closed = True
        for name, close in (("mqtt", lambda: self.mqtt.close(timeout)), ("jsonl", lambda: self.jsonl.close()),
                            ("store", lambda: self.store.close())):
            if getattr(self, name) is None:
                continue
            try:
                close()
            except Exception as e:  # noqa: BLE001 - shutting down: report and go on with the next sink
                log.error("closing the %s sink failed: %s", name, e)
