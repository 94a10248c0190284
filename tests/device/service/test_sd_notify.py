"""device/service/sd_notify.py and the daemon under systemd's notify protocol, against a real AF_UNIX
datagram socket named in NOTIFY_SOCKET (what systemd binds for a Type=notify unit): READY once the
bundle runs, WATCHDOG from the frame loop within WatchdogSec, RELOADING/READY around SIGHUP, STOPPING."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from edge_affectsr.device.service.sd_notify import SystemdNotifier

from _device_daemon import looping_builtin
from device_bundle import require_bundle


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def listener():
    """A bound datagram socket at a short path (AF_UNIX paths are limited to 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(folder / "notify"))
    sock.settimeout(0.2)
    yield sock, str(folder / "notify")
    sock.close()
    shutil.rmtree(folder, ignore_errors=True)


def received(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except (TimeoutError, socket.timeout):
            return out


def test_notifications_reach_the_socket_and_the_watchdog_is_rate_limited(listener):
    sock, path = listener
    clock = FakeClock()
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}, clock)
    assert notifier.enabled and notifier.watchdog_s == 2.0
    assert notifier.ready("running bundle x v1")
    assert notifier.watchdog() and not notifier.watchdog()  # a second ping in the same instant is not sent
    clock.t += 0.49
    assert not notifier.watchdog()
    clock.t += 0.02  # a quarter of the period since the last ping
    assert notifier.watchdog()
    assert notifier.stopping() and not notifier.stopping()  # once
    assert received(sock) == ["READY=1\nSTATUS=running bundle x v1", "WATCHDOG=1", "WATCHDOG=1", "STOPPING=1"]


def test_an_abstract_socket_name_is_understood():
    name = f"edge-affectsr-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(1)
    try:
        assert SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()


def test_outside_systemd_everything_is_a_no_op_and_a_dead_socket_is_logged_once(tmp_path, caplog):
    plain = SystemdNotifier({})
    assert not plain.enabled and not plain.ready() and not plain.watchdog() and not plain.stopping()
    other = SystemdNotifier({"NOTIFY_SOCKET": "/nonexistent/notify", "WATCHDOG_USEC": "1000000",
                             "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_s is None  # the watchdog is meant for another process
    assert not other.ready() and not other.status("x")
    assert len([r for r in caplog.records if "systemd notification" in r.getMessage()]) == 1
    assert SystemdNotifier({"WATCHDOG_USEC": "abc"}).watchdog_s is None


def test_the_daemon_speaks_the_protocol_from_start_to_stop(listener, tmp_path):
    """READY before the first ping, pings at least every quarter period while frames flow (12 fps),
    RELOADING then READY around a SIGHUP, STOPPING at SIGTERM, exit 0."""
    sock, path = listener
    bundle = require_bundle()
    (tmp_path / "device.yaml").write_text(looping_builtin(fps=12))
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
    log = tmp_path / "daemon.log"
    proc = subprocess.Popen([sys.executable, "-m", "edge_affectsr.cli", "run", "--model", str(bundle), "--config",
                             str(tmp_path / "device.yaml"), "--events-jsonl", "off", "--db", "off", "--http", "off"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    messages: list[tuple[float, str]] = []

    def collect(until: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages.extend((time.monotonic(), m) for m in received(sock))
            if any(m.startswith(until) for _, m in messages):
                return
            assert proc.poll() is None, log.read_text()[-2000:]
        raise AssertionError(f"no {until} within {timeout} s: {messages}\n{log.read_text()[-2000:]}")

    try:
        collect("READY=1")
        collect("WATCHDOG=1", 30)
        start = time.monotonic()
        while time.monotonic() - start < 3:
            messages.extend((time.monotonic(), m) for m in received(sock))
        proc.send_signal(signal.SIGHUP)
        collect("RELOADING=1")
        n = len(messages)
        deadline = time.monotonic() + 60
        while not any(m.startswith("READY=1") for _, m in messages[n:]) and time.monotonic() < deadline:
            messages.extend((time.monotonic(), m) for m in received(sock))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        messages.extend((time.monotonic(), m) for m in received(sock))
    finally:
        proc.kill()
    kinds = [m.split("\n")[0].split("=")[0] for _, m in messages]
    assert kinds[0] == "READY" and messages[0][1].startswith("READY=1\nSTATUS=running bundle ")
    pings = [t for t, m in messages if m == "WATCHDOG=1" and start <= t <= start + 3]
    assert len(pings) >= 5 and max(b - a for a, b in zip(pings, pings[1:])) < 1.0  # well inside WatchdogSec=2
    reload_at = kinds.index("RELOADING")
    assert messages[reload_at][1].split("\n")[1].startswith("MONOTONIC_USEC=")
    assert "READY" in kinds[reload_at:] and any("STATUS=reloaded: bundle " in m for _, m in messages[reload_at:])
    assert kinds[-1] == "STOPPING" and kinds.count("STOPPING") == 1


UNIT = Path(__file__).resolve().parents[3] / "deploy" / "edge-affectsr.service"


def test_the_unit_is_type_notify_with_a_watchdog():
    settings = dict(line.split("=", 1) for line in UNIT.read_text().splitlines() if "=" in line and not line.startswith("#"))
    assert settings["Type"] == "notify" and settings["NotifyAccess"] == "main"
    assert 10 <= int(settings["WatchdogSec"]) and "Restart" in settings


def test_systemd_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    exe = Path(sys.executable).with_name("edge-affectsr")  # the unit's ExecStart, pointed at this venv
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/edge-affectsr/venv/bin/edge-affectsr", str(exe)))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), done.stderr
