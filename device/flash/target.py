"""The target's layout (``releases/``, the ``current`` link) and the interface every target implements."""

from __future__ import annotations

import datetime as dt
import getpass
import os
import posixpath
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from edge_affectsr.device.flash.errors import (
    FlashError, FlashLockedError, PermissionDeniedError, ServiceError, last_line, one_line,
)

RELEASES = "releases"
CURRENT = "current"
PARTIAL = ".partial-"
LOCK = ".flash.lock"  # <root>/.flash.lock: flock'ed for a whole flash; holds a line naming the holder
DEFAULT_REMOTE_CMD = "edge-affectsr"
STALE_PARTIAL_S = 3600  # leftover staging folders of an interrupted flash older than this are removed


@dataclass(frozen=True)
class TargetState:
    current: str | None  # link text of <root>/current, None when there is no link
    avail_bytes: int | None  # free space for the releases folder, None when unknown
    release_exists: bool


class Target:
    """Where releases live; every path is a string in the target's (POSIX) syntax."""

    root: str

    def describe(self) -> str:
        raise NotImplementedError

    def lock(self, holder: str) -> None:
        """Take the target's flash lock (``<root>/.flash.lock``, created with the root if need be) and
        hold it until :meth:`close`, writing ``holder`` into it; FlashLockedError naming the holder
        at once when another flash holds it. Why: two flashes to one target would prune each other's
        fresh release and roll back each other's switch, and both could report success."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the lock and connections (ssh)."""

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def release_of(self, link: str | None) -> str | None:
        """The release folder name ``current``'s link text points at, if it is one of ours."""
        if not link:
            return None
        link = link.rstrip("/")
        for prefix in (f"{RELEASES}/", self.path(RELEASES) + "/"):
            if link.startswith(prefix) and "/" not in link[len(prefix):]:
                return link[len(prefix):]
        return None

    def prepare(self, release: str) -> TargetState:
        raise NotImplementedError

    def install(self, bundle: Path, files: list[str], staging: str, release: str) -> None:
        """Copy ``files`` of ``bundle`` into the new folder ``staging``, then rename it to
        ``releases/<release>`` (replacing a stale one). The caller removes ``staging`` on failure."""
        raise NotImplementedError

    def link_current(self, link: str | None, activate: str | None = None) -> None:
        """Point ``current`` at ``link`` atomically (None: remove it); mark ``activate`` newest."""
        raise NotImplementedError

    def list_releases(self) -> list[str]:
        """Release folder names, most recently activated first."""
        raise NotImplementedError

    def remove(self, paths: list[str], stale_partials: bool = False) -> None:
        raise NotImplementedError

    def selftest(self, release_dir: str, remote_cmd: str | None, timeout: float) -> tuple[int, str]:
        """``(exit status, its one line)`` of ``selftest`` run on the target."""
        raise NotImplementedError

    def restart(self, service: str) -> None:
        raise NotImplementedError

    def health(self, url: str, timeout: float, remote_cmd: str | None) -> str:
        raise NotImplementedError


def holder_line(what: str) -> str:
    """Who holds a lock: ``pid 123 on host (user) since <UTC time>: <what>``, one line."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no $USER (some containers)
        user = f"uid {os.getuid()}"
    since = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return " ".join(f"pid {os.getpid()} on {socket.gethostname()} ({user}) since {since}: {what}".split())


def locked_error(where: str, holder: str) -> FlashLockedError:
    """The refusal of a second flash, naming the first (``holder``: the lock file's line)."""
    return FlashLockedError(f"another flash to {where} is in progress ({one_line(holder) or 'holder not yet recorded'}); "
                            "wait for it to end: its lock is released when it exits")


def service_error(service: str, output: str, where: str) -> FlashError:
    """A failed ``systemctl restart`` (here or over ssh) as the error that says what to do about it."""
    line = last_line(output)
    if re.search(r"access denied|interactive authentication required|permission denied", output, re.I):
        return PermissionDeniedError(f"not allowed to restart {service} on {where}: {line} "
                                     "(flash as root, or allow this user to run systemctl restart)")
    return ServiceError(f"systemctl restart {service} failed on {where}: {line}")
