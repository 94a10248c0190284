"""systemd's service notification protocol (sd_notify(3)), spoken directly: readiness, watchdog, stopping.

Why not a package: the protocol is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named
in ``$NOTIFY_SOCKET`` (``@name`` for the abstract namespace), which the standard library sends in a
few lines; the pure-Python ``sdnotify`` package has had no release since 2017 and swallows every
error, and ``systemd-python`` needs libsystemd's headers to build (not on a Pi OS Lite image).

With ``Type=notify`` systemd waits for ``READY=1`` (sent once the bundle passed its self-test and
the outputs are open, so ``systemctl start`` returns when the camera really runs); with
``WatchdogSec=`` it sets ``$WATCHDOG_USEC`` and restarts the service when no ``WATCHDOG=1`` came
within that time. The daemon pings from its frame loop, so a pipeline wedged in a driver or a
delegate is restarted by systemd even when the process itself still answers HTTP. Outside systemd
(no ``$NOTIFY_SOCKET``) every call is a no-op, so ``edge-affectsr run`` in a shell is unchanged.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Callable, Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    """``ready()``, ``watchdog()`` (rate-limited, call it as often as you like), ``reloading()``,
    ``stopping()``, ``status(text)``; each returns whether the datagram was sent."""

    def __init__(self, environ: Mapping[str, str] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path
        self.watchdog_s = _watchdog_seconds(env)
        self._clock = clock
        self._last_ping = float("-inf")
        self._failed = False
        self._stopping_sent = False
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) if self.address else None

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``KEY=VALUE``) as one datagram; False outside systemd or when sending failed
        (logged once: a notification is never worth stopping the camera for)."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as e:
            if not self._failed:
                log.warning("systemd notification to %s failed: %s", self.address.replace("\0", "@"), e)
            self._failed = True
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> bool:
        """``STOPPING=1``, once (the stop signal and the end of the input may both ask)."""
        if self._stopping_sent:
            return False
        self._stopping_sent = True
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        """``WATCHDOG=1`` when a quarter of the watchdog period has passed since the last one (so a
        frame loop at 30 fps sends a few a period, not 30 a second); False when none was due."""
        if self.watchdog_s is None:
            return False
        now = self._clock()
        if now - self._last_ping < self.watchdog_s / 4:
            return False
        self._last_ping = now
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    """The watchdog period systemd set for this process, or None (none set, for another PID, or malformed)."""
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6
