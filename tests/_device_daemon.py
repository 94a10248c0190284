"""Running ``edge-affectsr run`` as a real process in tests: start it, wait for log lines and events."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_daemon(tmp: Path, *args: str, config: str | None = None) -> tuple[subprocess.Popen, Path]:
    """The daemon with events in ``tmp/events.jsonl`` and ``tmp/events.db``, stderr in ``tmp/daemon.log``."""
    cmd = [sys.executable, "-m", "edge_affectsr.cli", "run", "--events-jsonl", str(tmp / "events.jsonl"),
           "--db", str(tmp / "events.db"), *args]
    if config is not None:
        (tmp / "device.yaml").write_text(config)
        cmd += ["--config", str(tmp / "device.yaml")]
    log = tmp / "daemon.log"
    proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    return proc, log


def wait_for(predicate, timeout: float = 20.0, what: str = "condition", proc: subprocess.Popen | None = None,
             log: Path | None = None):
    """Poll ``predicate()`` until truthy; on timeout fail with the daemon's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    status = f" (the daemon exited with {proc.returncode})" if proc is not None and proc.poll() is not None else ""
    raise AssertionError(f"timed out waiting for {what}{status}\n{tail}")


def jsonl_events(path: Path, kind: str = "face") -> list[dict]:
    """The complete lines of one event kind (face, track, group) in a JSON-lines file."""
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return [e for e in lines if e.get("kind", "face") == kind]


def db_events(path: Path, table: str = "events") -> list[dict]:
    """Every event in a table of the database (events, tracks, groups), after checking it is intact (a
    fresh read-only connection)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [json.loads(data) for (data,) in db.execute(f"SELECT data FROM {table} ORDER BY id")]
    finally:
        db.close()


def looping_builtin(fps: float = 12.0, extra: str = "") -> str:
    """A config whose source never ends (the built-in clip, looped and paced like a camera)."""
    return (f"capture:\n  source: {{kind: builtin, frames: 60, loop: true, fps: {fps}}}\n"
            f"  newest_frame_wins: true\n{extra}")
