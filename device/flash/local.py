"""A target folder on this machine (a mounted SD card, or the camera itself): plain file operations."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from edge_affectsr.device.flash.errors import (
    FlashError, NoSpaceError, PermissionDeniedError, ServiceError, last_line, one_line,
)
from edge_affectsr.device.flash.health import poll_health
from edge_affectsr.device.flash.target import (
    CURRENT, LOCK, PARTIAL, RELEASES, STALE_PARTIAL_S, Target, TargetState, locked_error, service_error,
)


def _local_error(e: OSError, doing: str) -> FlashError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpaceError(f"no space left on the target while {doing} ({e.filename or ''})")
    if e.errno in (errno.EACCES, errno.EPERM):
        return PermissionDeniedError(f"permission denied while {doing}: {e.filename or ''} "
                                     "(flash as a user who may write there, or choose another --to)")
    if e.errno == errno.EROFS:
        return PermissionDeniedError(f"read-only file system while {doing}: {e.filename or ''}")
    return FlashError(f"{doing} failed: {one_line(e)}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalTarget(Target):
    """A folder on this machine (a mounted SD card, or the camera itself)."""

    def __init__(self, root: str | Path) -> None:
        self.root = str(Path(root).expanduser().absolute())
        self._lock_fd: int | None = None

    def describe(self) -> str:
        return self.root

    def lock(self, holder: str) -> None:
        path = Path(self.path(LOCK))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _local_error(e, f"creating the flash lock {path}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held_by = os.pread(fd, 4096, 0).decode(errors="replace")
            os.close(fd)
            raise locked_error(self.describe(), held_by) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode() + b"\n", 0)
        self._lock_fd = fd

    def close(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # a released lock names no holder
            os.close(fd)

    def prepare(self, release: str) -> TargetState:
        releases = Path(self.path(RELEASES))
        try:
            releases.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _local_error(e, f"creating {releases}") from None
        if not os.access(releases, os.W_OK | os.X_OK):
            raise PermissionDeniedError(f"permission denied: {releases} is not writable by this user")
        current = Path(self.path(CURRENT))
        if current.is_symlink():
            link = os.readlink(current)
        elif current.exists():
            raise FlashError(f"{current} exists and is not a symlink; move it away (flash manages it as a link)")
        else:
            link = None
        return TargetState(link, shutil.disk_usage(releases).free, os.path.lexists(releases / release))

    def install(self, bundle: Path, files: list[str], staging: str, release: str) -> None:
        dst = Path(staging)
        try:
            dst.mkdir()
            for rel in files:
                out = dst / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with open(Path(bundle) / rel, "rb") as src, open(out, "wb") as fh:
                    shutil.copyfileobj(src, fh, 1 << 20)
                    fh.flush()
                    os.fsync(fh.fileno())
            _fsync_dir(dst)
        except OSError as e:
            raise _local_error(e, f"copying the bundle to {dst}") from None
        final = Path(self.path(RELEASES, release))
        try:
            if os.path.lexists(final):
                shutil.rmtree(final)
            os.rename(staging, final)
            _fsync_dir(final.parent)
        except OSError as e:
            raise _local_error(e, f"renaming {staging} to {final}") from None

    def link_current(self, link: str | None, activate: str | None = None) -> None:
        current = Path(self.path(CURRENT))
        try:
            if activate:
                os.utime(self.path(RELEASES, activate))
            if link is None:
                if current.is_symlink():
                    current.unlink()
            else:
                tmp = Path(self.path(f"{CURRENT}.tmp-{os.getpid()}"))
                if os.path.lexists(tmp):
                    tmp.unlink()
                os.symlink(link, tmp)
                os.replace(tmp, current)
            _fsync_dir(current.parent)
        except OSError as e:
            raise _local_error(e, f"switching {current}") from None

    def list_releases(self) -> list[str]:
        releases = Path(self.path(RELEASES))
        entries = [p for p in releases.iterdir() if not p.name.startswith(".")]
        return [p.name for p in sorted(entries, key=lambda p: p.lstat().st_mtime, reverse=True)]

    def remove(self, paths: list[str], stale_partials: bool = False) -> None:
        if stale_partials:
            now = time.time()
            paths = list(paths) + [str(p) for p in Path(self.path(RELEASES)).glob(f".*{PARTIAL}*")
                                   if now - p.lstat().st_mtime > STALE_PARTIAL_S]
        for path in paths:
            p = Path(path)
            try:
                if p.is_symlink() or p.is_file():
                    p.unlink()
                elif p.exists():
                    shutil.rmtree(p)
            except OSError as e:
                raise _local_error(e, f"removing {p}") from None

    def selftest(self, release_dir: str, remote_cmd: str | None, timeout: float) -> tuple[int, str]:
        argv = shlex.split(remote_cmd) if remote_cmd else [sys.executable, "-m", "edge_affectsr.cli"]
        try:
            done = subprocess.run([*argv, "selftest", release_dir], capture_output=True, text=True,
                                  timeout=timeout, cwd="/", stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            return 127, f"{argv[0]}: command not found"
        except subprocess.TimeoutExpired:
            return 124, f"selftest did not finish within {timeout:.0f} s"
        return done.returncode, last_line(done.stdout, done.stderr)

    def restart(self, service: str) -> None:
        try:
            done = subprocess.run(["systemctl", "--no-ask-password", "restart", service], capture_output=True, text=True,
                                  timeout=120, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise ServiceError(f"cannot restart {service}: systemctl is not installed here") from None
        except subprocess.TimeoutExpired:
            raise ServiceError(f"systemctl restart {service} did not return within 120 s") from None
        if done.returncode != 0:
            raise service_error(service, done.stdout + done.stderr, self.describe())

    def health(self, url: str, timeout: float, remote_cmd: str | None) -> str:
        return poll_health(url, timeout)
