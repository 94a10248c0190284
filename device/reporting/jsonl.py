"""JSON-lines sink: one event per line (faces, ended tracks, group summaries; each says its ``kind``)
on stdout or appended to a file, flushed per event.

Why flushed per event: a consumer reading the pipe (``edge-affectsr run | jq``) or tailing the file
sees each face as it is reported, and a crash loses no line already written. A file is opened in
append mode, so a restart continues it instead of truncating history.

A sink that stops accepting writes (the reader of the pipe went away, the disk is full) is turned
off with one log line instead of ending the daemon; ``failed`` counts the events it did not write.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path
from typing import TextIO

from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr.device.reporting.events import Record
from edge_affectsr.errors import UserError

log = logging.getLogger(__name__)

STDOUT = "-"


class JsonlError(UserError):
    """A JSON-lines file that cannot be opened; the message names it."""


class JsonlConfig(BaseModel):
    """The ``jsonl:`` section of the device config: ``path: "-"`` is stdout."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="write one JSON line per event")
    path: str = Field(STDOUT, description="a file (appended to), or - for stdout")


class JsonlSink:
    """``write(event)`` from any thread; ``close()`` closes a file (never stdout)."""

    def __init__(self, target: str | Path | TextIO = STDOUT) -> None:
        self.written = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._owned = False
        if isinstance(target, (str, Path)) and str(target) == STDOUT:
            self._out: TextIO | None = sys.stdout
            self.name = "stdout"
        elif isinstance(target, (str, Path)):
            self._out, self.name, self._owned = _open_append(Path(target)), str(target), True
        else:
            self._out, self.name = target, getattr(target, "name", "stream")

    @classmethod
    def from_config(cls, config: JsonlConfig) -> "JsonlSink | None":
        """The sink a config asks for, or None when it is disabled."""
        return cls(config.path) if config.enabled else None

    def write(self, event: Record) -> bool:
        """Write one line and flush it; False (and counted) when the sink is off or the write failed."""
        line = event.to_json() + "\n"
        with self._lock:
            if self._out is None:
                self.failed += 1
                return False
            try:
                self._out.write(line)
                self._out.flush()
            except (OSError, ValueError) as e:  # ValueError: the stream was closed under us
                self.failed += 1
                self._disable(e)
                return False
            self.written += 1
        return True

    def _disable(self, error: Exception) -> None:
        log.error("JSON-lines output %s failed (%s); no more events go there", self.name, error)
        if isinstance(error, BrokenPipeError) and not self._owned:
            _silence(self._out)
        self._close_locked()

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        out, self._out = self._out, None
        if out is not None and self._owned:
            try:
                out.close()
            except OSError as e:
                log.warning("closing %s: %s", self.name, e)

    def __enter__(self) -> "JsonlSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_append(path: Path) -> TextIO:
    """``path`` opened for appending, line-buffered UTF-8; JsonlError when it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a", buffering=1, encoding="utf-8", newline="\n")
    except OSError as e:
        raise JsonlError(f"cannot open the JSON-lines file {path}: {e.strerror or e}; check jsonl.path") from None


def _silence(stream: TextIO | None) -> None:
    """Point a dead pipe's descriptor at /dev/null, so the line still buffered in ``stream`` is discarded
    when it is flushed at exit instead of raising BrokenPipeError there (Python's documented recipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # no real descriptor (a test's capture object)
        pass
