"""device/service/daemon.py as the user runs it: ``edge-affectsr run`` in a real process, with a real bundle,
SQLite database and JSON-lines file: a finite run, SIGTERM, SIGHUP (good and tampered bundle), SIGKILL."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from edge_affectsr.bundle import MANIFEST, SIGNATURE, write_bundle

from device_bundle import copy_bundle, require_bundle
from _device_daemon import ROOT, db_events, jsonl_events, looping_builtin, start_daemon, wait_for


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    require_bundle()
    return copy_bundle(tmp_path_factory.mktemp("bundle") / "b")


def test_max_frames_run_ends_by_itself_with_every_event_stored(tmp_path: Path, bundle: Path):
    done = subprocess.run([sys.executable, "-m", "edge_affectsr.cli", "run", "--model", str(bundle), "--max-frames", "10",
                           "--events-jsonl", str(tmp_path / "e.jsonl"), "--db", str(tmp_path / "e.db"), "--http", "off"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = jsonl_events(tmp_path / "e.jsonl")
    stored = db_events(tmp_path / "e.db")
    assert 5 <= len(lines) <= 10 and stored == lines  # one face, found in most of the 10 frames
    assert max(e["frame"] for e in lines) <= 9
    assert {"time", "frame", "source", "track_id", "bbox", "lr_size", "expression", "probabilities", "guard",
            "latency_ms", "model", "model_version"} <= set(lines[0])
    assert "delegate cpu" in done.stderr and "stopped (max frames (10))" in done.stderr
    tracks, groups = jsonl_events(tmp_path / "e.jsonl", "track"), jsonl_events(tmp_path / "e.jsonl", "group")
    assert tracks and all(t["ended"] == "end of input" for t in tracks) and len(groups) == 1  # the run's summaries
    assert groups[0]["frames"] == 10 and db_events(tmp_path / "e.db", "groups") == groups
    assert db_events(tmp_path / "e.db", "tracks") == tracks


def release(src: Path, dest: Path, version: str) -> Path:
    """A copy of ``src`` as another version, hashed and written by the converter's own write_bundle."""
    staging = Path(shutil.copytree(src, dest.with_name(dest.name + ".staging")))
    for name in (MANIFEST, SIGNATURE):
        (staging / name).unlink(missing_ok=True)
    doc = {k: v for k, v in json.loads((src / MANIFEST).read_text()).items() if k not in ("files", "schema_version")}
    return write_bundle(staging, dest, {**doc, "version": version})


def test_sigterm_stops_within_two_seconds_and_sighup_reloads(tmp_path: Path, bundle: Path):
    """SIGHUP with a new version: the events after it carry its model_version, /api/stats reports it and
    counts the reload (a reload that logged but never swapped the model passed the old test); a
    tampered release is refused and the running version stays."""
    live = copy_bundle(tmp_path / "live")
    proc, log = start_daemon(tmp_path, "--model", str(live), "--http", "127.0.0.1:0", config=looping_builtin())
    try:
        wait_for(lambda: len(jsonl_events(tmp_path / "events.jsonl")) >= 3, what="3 events", proc=proc, log=log)
        url = wait_for(lambda: next((line.split("HTTP API at ")[1].strip() for line in log.read_text().splitlines()
                                     if "HTTP API at " in line), None), what="the HTTP URL", proc=proc, log=log)
        health = json.load(urllib.request.urlopen(f"{url}/healthz", timeout=5))
        assert health["status"] == "ok" and health["model"] and health["delegate"] == "cpu"

        old_version = health["model_version"]
        # a new release put in place the way deployments do it (a rename; never rewrite a running
        # bundle's files in place: the interpreters memory-map them)
        release(live, tmp_path / "v2", "2.0-test")
        live.rename(tmp_path / "previous")
        (tmp_path / "v2").rename(live)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "now running bundle" in log.read_text() and "v2.0-test" in log.read_text(), what="the reload",
                 proc=proc, log=log)
        before = len(jsonl_events(tmp_path / "events.jsonl"))
        wait_for(lambda: len(jsonl_events(tmp_path / "events.jsonl")) > before + 2, what="events after the reload",
                 proc=proc, log=log)
        after = jsonl_events(tmp_path / "events.jsonl")[before:]
        assert {e["model_version"] for e in after} == {"2.0-test"} != {old_version}  # the model was swapped
        stats = json.load(urllib.request.urlopen(f"{url}/api/stats", timeout=5))
        assert stats["model_version"] == "2.0-test" and stats["counters"]["reloads"] == 1

        bad = copy_bundle(tmp_path / "bad")  # a tampered release: refused, v2.0-test runs on
        data = bytearray((bad / "sr_int8.tflite").read_bytes())
        data[100] ^= 0xFF
        (bad / "sr_int8.tflite").write_bytes(bytes(data))
        live.rename(tmp_path / "previous-2")
        bad.rename(live)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed, keeping bundle" in log.read_text(), what="the refused reload", proc=proc, log=log)
        before = len(jsonl_events(tmp_path / "events.jsonl"))
        wait_for(lambda: len(jsonl_events(tmp_path / "events.jsonl")) > before + 2, what="events after the refusal",
                 proc=proc, log=log)
        assert "sr_int8.tflite does not match" in log.read_text()
        assert {e["model_version"] for e in jsonl_events(tmp_path / "events.jsonl")[before:]} == {"2.0-test"}
        stats = json.load(urllib.request.urlopen(f"{url}/api/stats", timeout=5))
        assert stats["model_version"] == "2.0-test" and stats["counters"]["reloads"] == 1

        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=5)
        elapsed = time.monotonic() - start
    finally:
        proc.kill()
    assert rc == 0 and elapsed < 2.0, (rc, elapsed, log.read_text()[-2000:])
    lines = jsonl_events(tmp_path / "events.jsonl")
    assert db_events(tmp_path / "events.db") == lines and "stopped (SIGTERM)" in log.read_text()


def test_sigkill_leaves_a_readable_db_with_every_committed_event(tmp_path: Path, bundle: Path):
    proc, log = start_daemon(tmp_path, "--model", str(bundle), "--http", "off", config=looping_builtin(fps=25))
    try:
        wait_for(lambda: len(jsonl_events(tmp_path / "events.jsonl")) >= 8, what="8 events", proc=proc, log=log)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)
    printed = jsonl_events(tmp_path / "events.jsonl")  # a line is printed only after its commit
    stored = db_events(tmp_path / "events.db")
    assert len(stored) >= len(printed) >= 8
    assert stored[:len(printed)] == printed


def test_the_watchdog_exits_non_zero_when_inference_is_stuck(tmp_path: Path, bundle: Path):
    """A frame in processing for longer than watchdog.stuck_s: the process leaves with exit_code."""
    script = f"""
import time
from edge_affectsr.device.service.daemon import Daemon
from edge_affectsr.device.service.settings import load_device_config
d = Daemon(load_device_config(None, {{"bundle.path": {str(bundle)!r}, "watchdog.stuck_s": 1, "watchdog.exit_code": 71}}))
d._busy_since = time.monotonic() - 5
d._watchdog()
print("not reached")
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 71 and "not reached" not in done.stdout
    assert "watchdog: frame processing stuck" in done.stderr


def test_the_watchdog_reopens_a_silent_source(tmp_path: Path, bundle: Path):
    config = ("capture:\n  source: {kind: builtin, frames: 60, loop: true, fps: 0.5}\n  newest_frame_wins: true\n"
              "watchdog:\n  no_frames_s: 0.5\n")
    proc, log = start_daemon(tmp_path, "--model", str(bundle), "--http", "off", config=config)
    try:
        wait_for(lambda: "reopening the source" in log.read_text(), what="a reconnect", proc=proc, log=log)
        wait_for(lambda: jsonl_events(tmp_path / "events.jsonl"), what="events after reopening", proc=proc, log=log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()
