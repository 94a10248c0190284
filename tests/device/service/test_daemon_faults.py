"""``edge-affectsr run`` and ``bench`` as real processes against the faults of issue 17, each of which
failed before its fix: a corrupt video file (retried forever, ``bench --seconds 1`` never returned),
a dead camera (the watchdog reset its backoff, then exited 70), a folder replaced by the watchdog
(its images reported again), and an event database that fails every write (``/healthz`` said ok)."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_affectsr.device.capture.builtin import BuiltinSequence

from _device_daemon import ROOT, jsonl_events, looping_builtin, start_daemon, wait_for
from _tmpfs import small_tmpfs
from device_bundle import require_bundle


@pytest.fixture(scope="module")
def bundle() -> Path:
    return require_bundle()


@pytest.fixture
def corrupt(tmp_path) -> Path:
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(np.random.default_rng(1).bytes(20_000))
    return path


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_affectsr.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_run_on_a_corrupt_video_file_exits_2_naming_it(bundle, corrupt, tmp_path):
    done = cli("run", "--model", str(bundle), "--source", str(corrupt), "--http", "off", "--db", "off", cwd=tmp_path)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and last == (f"error: cannot open the video file {corrupt}: not a video OpenCV can "
                                             "read (corrupt, or a container this OpenCV build lacks)"), done.stderr[-2000:]
    assert "reconnect attempt" not in done.stderr and "Traceback" not in done.stderr


def test_bench_seconds_1_returns_on_a_corrupt_video(bundle, corrupt, tmp_path):
    start = time.monotonic()
    done = cli("bench", "--model", str(bundle), "--source", str(corrupt), "--seconds", "1", "--threads", "1", cwd=tmp_path)
    assert done.returncode == 2 and "corrupt.mp4" in done.stderr.strip().splitlines()[-1], done.stderr[-2000:]
    assert time.monotonic() - start < 60 and "Traceback" not in done.stderr


def test_a_dead_camera_is_left_to_its_growing_backoff_not_reopened_by_the_watchdog(bundle, tmp_path):
    """Before: every watchdog period reopened the camera, its waits restarting at initial_s, and the
    next silent period exited 70. Now the waits reach max_s and the daemon keeps running."""
    config = ("capture:\n  source: {kind: video, uri: /dev/video99, reconnect: {initial_s: 0.05, factor: 2, max_s: 0.4}}\n"
              "watchdog:\n  no_frames_s: 0.3\n")
    proc, log = start_daemon(tmp_path, "--model", str(bundle), "--http", "off", config=config)
    try:
        wait_for(lambda: log.read_text().count("in 0.40 s") >= 3, timeout=90, what="three waits of max_s", proc=proc, log=log)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    text = log.read_text()
    delays = [float(d) for d in re.findall(r"reconnect attempt \d+/unlimited in ([\d.]+) s", text)]
    assert delays[:4] == [0.05, 0.1, 0.2, 0.4] and delays == sorted(delays)
    assert "reopening the source" not in text and "watchdog:" not in text


REOPEN = """
import sys, threading, time
from edge_affectsr.device.service.daemon import Daemon
from edge_affectsr.device.service.settings import load_device_config
folder, bundle, events = sys.argv[1:4]
d = Daemon(load_device_config(None, {"bundle.path": bundle, "capture.source": {"kind": "folder", "path": folder},
                                     "capture.newest_frame_wins": False, "jsonl.path": events, "store.enabled": False,
                                     "http.enabled": False}))
def watchdog():  # what the watchdog does when a decode outlasts watchdog.no_frames_s, at a known moment
    while d.processed < 3:
        time.sleep(0.005)
    d.reopen_source()
threading.Thread(target=watchdog, daemon=True).start()
status = d.run()
print(d.stats.counter("frames"), d.stats.counter("reconnects"), status)
"""


def test_a_watchdog_reopen_of_a_folder_reports_each_image_once(bundle, tmp_path):
    """Before: the reopened folder started again at its first image (the same image reported 3 times)."""
    folder = tmp_path / "images"
    folder.mkdir()
    clip = BuiltinSequence(frames=8)
    for i in range(8):
        cv2.imwrite(str(folder / f"{i:02d}.png"), clip.render(i))
    done = subprocess.run([sys.executable, "-c", REOPEN, str(folder), str(bundle), str(tmp_path / "e.jsonl")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    frames, reconnects, status = map(int, done.stdout.split())
    assert (frames, reconnects, status) == (8, 1, 0), done.stderr[-2000:]
    seen = [e["frame"] for e in jsonl_events(tmp_path / "e.jsonl")]
    assert len(seen) == len(set(seen)) >= 4 and 4 <= max(seen) <= 7  # each image once, numbered on


def get_health(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def fill(folder: Path) -> Path:
    """Write a file until the file system is full; the file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_healthz_is_degraded_while_the_database_fails_and_recovers(bundle, tmp_path):
    """Before: with every write failing (failed_writes 130, 7 of 137 faces stored) /healthz said 200 ok."""
    with small_tmpfs(tmp_path / "small", "2m") as mnt:
        config = looping_builtin(extra="http:\n  loss_window_s: 2\n")
        proc, log = start_daemon(tmp_path, "--model", str(bundle), "--db", str(mnt / "events.db"),
                                 "--http", "127.0.0.1:0", config=config)
        try:
            url = wait_for(lambda: next((line.split("HTTP API at ")[1].strip() for line in log.read_text().splitlines()
                                         if "HTTP API at " in line), None), what="the HTTP URL", proc=proc, log=log)
            wait_for(lambda: get_health(url)[0] == 200, timeout=60, what="a healthy daemon", proc=proc, log=log)
            filler = fill(mnt)
            status, body = wait_for(lambda: (h := get_health(url))[0] == 503 and h, what="degraded", proc=proc, log=log)
            assert body["status"] == "degraded" and re.fullmatch(
                r"\d+ events lost in the last 2 s \(store_failed \d+\)", body["reasons"][0]), body
            stats = json.load(urllib.request.urlopen(url + "/api/stats", timeout=5))
            assert stats["counters"]["store_failed"] > 0 and stats["store"]["failed_writes"] > 0
            metrics = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
            assert re.search(r'edge_affectsr_store_failed_total\{camera="[^"]+"\} [1-9]', metrics)
            assert re.search(r'edge_affectsr_healthy\{camera="[^"]+"\} 0\.0', metrics)
            filler.unlink()  # space again: writes succeed, and after the window the daemon is healthy
            wait_for(lambda: get_health(url)[0] == 200, timeout=30, what="recovery", proc=proc, log=log)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()
            proc.wait(timeout=10)
