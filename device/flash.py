"""Flash a model bundle onto a camera: verify, copy, self-test there, switch, restart, roll back.

``edge-affectsr flash BUNDLE --to user@host:/opt/edge-affectsr`` (or ``--to /local/dir``) lays the
target out as::

    <root>/releases/<name>-<version>-<sha12>/   one folder per release (sha12: of manifest.json)
    <root>/current -> releases/<...>           the release the daemon runs (a relative symlink)

and goes through these steps, each of which either finishes or leaves the target as it was:

1. verify every sha256 in the manifest here (a tampered bundle is refused, naming the file, before
   anything is copied); only the manifest and the files it lists are copied;
2. check the target (the releases folder can be created and written, ``current`` is a link, there is
   room for the bundle), copy into ``releases/.<release>.partial-<pid>`` and rename that to the
   release folder, so a half copy is never a release;
3. self-test there: ``<remote-cmd> selftest <release dir>`` verifies every hash again (so the copy is
   checked), loads the models on the target's delegate and runs the golden input (exit 0/1, one
   line). A failed release folder is removed; ``current`` has not moved;
4. switch ``current`` atomically: a new link ``current.tmp-<pid>`` renamed over ``current``
   (``os.replace`` here, ``ln -sfn`` + ``mv -Tf`` over ssh); the daemon never sees a missing link;
5. restart the service (``systemctl restart`` with ``--service``) and poll ``--health-url`` until it
   answers 200 (``/healthz`` answers 503 ``starting`` until the first frame). The URL is fetched *on
   the target* (``<remote-cmd> healthcheck`` over ssh), so the daemon's default 127.0.0.1 bind works;
6. on any failure after the switch: point ``current`` back at the previous link, restart again,
   remove the new release; on success keep the newest ``--keep`` releases, never deleting the
   current or the previous one (the rollback target).

ssh targets use the system ``ssh`` in batch mode (never a password prompt) with a connect timeout;
the copy is one tar stream over ssh (only ``sh``, ``tar``, ``df``, ``mv -T``, ``ln`` are needed on
the target, which BusyBox provides; no sftp subsystem, no rsync). Every failure the user can fix
is a :class:`FlashError` with a one-line message. One flash per target at a time.
"""

from __future__ import annotations

import errno
import http.client
import json
import logging
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from edge_affectsr.bundle import MANIFEST, BundleError, Manifest, sha256_file, verify_bundle
from edge_affectsr.errors import UserError

log = logging.getLogger(__name__)

RELEASES = "releases"
CURRENT = "current"
PARTIAL = ".partial-"
DEFAULT_REMOTE_CMD = "edge-affectsr"
CONNECT_TIMEOUT_S = 10
SSH_DEFAULTS = ("-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3")
STALE_PARTIAL_S = 3600  # leftover staging folders of an interrupted flash older than this are removed


class FlashError(UserError):
    """A flash that cannot go on; the message (one line) says what and where."""


class UnreachableHostError(FlashError):
    """The ssh target does not answer (refused, no route, timed out, unknown name)."""


class PermissionDeniedError(FlashError):
    """Login refused, or the target folder (or systemctl) is not writable/allowed for this user."""


class NoSpaceError(FlashError):
    """The target's filesystem has no room for the release."""


class TamperedBundleError(FlashError, BundleError):
    """The bundle fails verification here (a file's sha256, a missing file, a bad or newer manifest)."""


class SelfTestFailedError(FlashError):
    """The copied bundle did not pass ``selftest`` on the target (or it could not be run there)."""


class ServiceError(FlashError):
    """``systemctl restart`` failed on the target."""


class HealthCheckError(FlashError):
    """The health URL did not answer 200 within the timeout after the restart."""


@dataclass(frozen=True)
class FlashOptions:
    keep: int = 3
    service: str | None = None
    health_url: str | None = None
    health_timeout_s: float = 60.0
    remote_cmd: str | None = None  # None: edge-affectsr over ssh, this interpreter for a local target
    ssh_options: tuple[str, ...] = ()  # ready-made ssh arguments, see ssh_option_args
    selftest_timeout_s: float = 300.0


@dataclass
class FlashResult:
    target: str
    release: str
    release_dir: str
    previous: str | None  # what `current` pointed at before (the link text), None on a first flash
    switched: bool
    selftest: str
    health: str | None = None
    pruned: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        if not self.switched:
            return f"{self.target}: {self.release} is already current; self-test: {self.selftest}"
        parts = [f"{self.target}: current -> {RELEASES}/{self.release} (was {self.previous or 'nothing'})",
                 f"self-test: {self.selftest}"]
        if self.health:
            parts.append(f"health: {self.health}")
        if self.pruned:
            parts.append(f"removed old releases: {', '.join(self.pruned)}")
        return "; ".join(parts) + f" [{self.seconds:.1f} s]"


@dataclass(frozen=True)
class TargetState:
    current: str | None  # link text of <root>/current, None when there is no link
    avail_bytes: int | None  # free space for the releases folder, None when unknown
    release_exists: bool


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _last_line(*texts: str | None) -> str:
    """The last non-empty line of the first text that has one."""
    for text in texts:
        lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
        if lines:
            return _one_line(lines[-1])
    return "no output"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"


def release_name(bundle: Path, manifest: Manifest) -> str:
    """``<name>-<version>-<first 12 hex of sha256(manifest.json)>``: the manifest holds every file's
    hash, so the same name always means the same content."""
    return f"{_safe(manifest.name)}-{_safe(manifest.version)}-{sha256_file(Path(bundle) / MANIFEST)[:12]}"


def ssh_option_args(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``--ssh-option`` values as ssh arguments: ``"-i key -p 2222"`` is split as a shell would;
    a value without a leading dash is an ``-o`` option (``StrictHostKeyChecking=no``)."""
    out: list[str] = []
    for value in values:
        tokens = shlex.split(value)
        if tokens and tokens[0].startswith("-"):
            out.extend(tokens)
        elif tokens:
            out.extend(["-o", value.strip()])
    return tuple(out)


# --- targets -------------------------------------------------------------------------------------


class Target:
    """Where releases live; every path is a string in the target's (POSIX) syntax."""

    root: str

    def describe(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (ssh)."""

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


def _local_error(e: OSError, doing: str) -> FlashError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpaceError(f"no space left on the target while {doing} ({e.filename or ''})")
    if e.errno in (errno.EACCES, errno.EPERM):
        return PermissionDeniedError(f"permission denied while {doing}: {e.filename or ''} "
                                     "(flash as a user who may write there, or choose another --to)")
    if e.errno == errno.EROFS:
        return PermissionDeniedError(f"read-only file system while {doing}: {e.filename or ''}")
    return FlashError(f"{doing} failed: {_one_line(e)}")


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

    def describe(self) -> str:
        return self.root

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
        return done.returncode, _last_line(done.stdout, done.stderr)

    def restart(self, service: str) -> None:
        try:
            done = subprocess.run(["systemctl", "--no-ask-password", "restart", service], capture_output=True, text=True,
                                  timeout=120, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise ServiceError(f"cannot restart {service}: systemctl is not installed here") from None
        except subprocess.TimeoutExpired:
            raise ServiceError(f"systemctl restart {service} did not return within 120 s") from None
        if done.returncode != 0:
            raise _service_error(service, done.stdout + done.stderr, self.describe())

    def health(self, url: str, timeout: float, remote_cmd: str | None) -> str:
        return poll_health(url, timeout)


def _service_error(service: str, output: str, where: str) -> FlashError:
    line = _last_line(output)
    if re.search(r"access denied|interactive authentication required|permission denied", output, re.I):
        return PermissionDeniedError(f"not allowed to restart {service} on {where}: {line} "
                                     "(flash as root, or allow this user to run systemctl restart)")
    return ServiceError(f"systemctl restart {service} failed on {where}: {line}")


_UNREACHABLE = re.compile(r"connection refused|no route to host|timed out|could not resolve|name or service not known|"
                          r"network is unreachable|connection closed|connection reset|broken pipe|"
                          r"temporary failure in name resolution|host is down", re.I)


class SshTarget(Target):
    """A folder on another machine, reached with the system ssh (keys only: BatchMode=yes)."""

    def __init__(self, user: str | None, host: str, root: str, ssh_options: tuple[str, ...] = ()) -> None:
        if not host or host.startswith("-"):
            raise FlashError(f"invalid ssh host {host!r}")
        if not root:
            raise FlashError("give a folder after the ':' of --to user@host:/folder")
        self.user, self.host = user, host
        self.dest = f"{user}@{host}" if user else host
        self.root = posixpath.normpath(root)
        self.ssh_options = tuple(ssh_options)
        self._control_dir: str | None = None

    @property
    def ssh(self) -> list[str]:
        """The ssh command line. One connection serves all the steps (a handshake costs ~0.5 s on
        a Pi): the first call starts a master the others share; close() ends it (else it exits by
        itself 60 s after its last use). The user's options come first: ssh keeps the first value."""
        if self._control_dir is None:
            self._control_dir = tempfile.mkdtemp(prefix="edge-affectsr-ssh-", dir="/tmp" if os.path.isdir("/tmp") else None)
        multiplex = ("-o", "ControlMaster=auto", "-o", f"ControlPath={self._control_dir}/%C", "-o", "ControlPersist=60")
        return ["ssh", *self.ssh_options, *SSH_DEFAULTS, *multiplex]

    def close(self) -> None:
        if self._control_dir is None:
            return
        try:
            subprocess.run([*self.ssh, "-O", "exit", self.dest], capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self._control_dir, ignore_errors=True)
        self._control_dir = None

    def describe(self) -> str:
        return f"{self.dest}:{self.root}"

    def _run(self, script: str, doing: str, *, stdin=None, timeout: float = 120, check: bool = True
             ) -> subprocess.CompletedProcess:
        argv = [*self.ssh, self.dest, "sh -c " + shlex.quote(script)]
        try:
            done = subprocess.run(argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                  capture_output=True, timeout=timeout)
        except FileNotFoundError:
            raise FlashError("the ssh client is not installed here (apt-get install openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise UnreachableHostError(f"{self.dest}: {doing} got no answer within {timeout:.0f} s") from None
        done.stdout = done.stdout.decode(errors="replace")
        done.stderr = done.stderr.decode(errors="replace")
        if done.returncode == 255:  # ssh itself failed (or the remote command exited 255)
            raise self._ssh_error(done.stderr, doing)
        if check and done.returncode != 0:
            raise self._remote_error(done, doing)
        return done

    def _ssh_error(self, stderr: str, doing: str) -> FlashError:
        line = _last_line(stderr)
        if "permission denied" in stderr.lower() and ("publickey" in stderr.lower() or "password" in stderr.lower()):
            return PermissionDeniedError(f"ssh login to {self.dest} refused ({line}); check the user, the key "
                                         "(--ssh-option '-i KEY') and the target's authorized_keys")
        if "host key verification failed" in stderr.lower():
            return FlashError(f"ssh to {self.dest}: host key verification failed; add the host to known_hosts "
                              "(ssh it once by hand) or pass --ssh-option StrictHostKeyChecking=accept-new")
        if _UNREACHABLE.search(stderr) or not stderr.strip():
            return UnreachableHostError(f"cannot reach {self.dest} over ssh while {doing}: {line}")
        return FlashError(f"ssh to {self.dest} failed while {doing}: {line}")

    def _remote_error(self, done: subprocess.CompletedProcess, doing: str) -> FlashError:
        out = f"{done.stderr}\n{done.stdout}"
        line = _last_line(done.stderr, done.stdout)
        low = out.lower()
        if "no space left" in low or "disk quota exceeded" in low:
            return NoSpaceError(f"no space left on {self.dest} while {doing}: {line}")
        if "permission denied" in low or "operation not permitted" in low or "read-only file system" in low:
            return PermissionDeniedError(f"permission denied on {self.dest} while {doing}: {line}")
        return FlashError(f"{doing} failed on {self.dest}: {line}")

    def prepare(self, release: str) -> TargetState:
        script = f"""set -e
root={shlex.quote(self.root)}
mkdir -p "$root/{RELEASES}"
[ -w "$root/{RELEASES}" ] || {{ echo "Permission denied: $root/{RELEASES} is not writable by $(id -un)" >&2; exit 13; }}
if [ -e "$root/{CURRENT}" ] && [ ! -L "$root/{CURRENT}" ]; then
  echo "$root/{CURRENT} exists and is not a symlink; move it away (flash manages it as a link)" >&2; exit 3
fi
if [ -L "$root/{CURRENT}" ]; then echo "current=$(readlink "$root/{CURRENT}")"; fi
echo "avail_kb=$(df -Pk "$root/{RELEASES}" 2>/dev/null | awk 'NR==2 {{print $4}}')"
if [ -e "$root/{RELEASES}/"{shlex.quote(release)} ] || [ -L "$root/{RELEASES}/"{shlex.quote(release)} ]; then echo exists=1; fi
"""
        done = self._run(script, f"checking {self.root}")
        values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        avail = values.get("avail_kb", "").strip()
        return TargetState(values.get("current") or None, int(avail) * 1024 if avail.isdigit() else None,
                           values.get("exists") == "1")

    def install(self, bundle: Path, files: list[str], staging: str, release: str) -> None:
        final = self.path(RELEASES, release)
        with tempfile.TemporaryFile() as stream:
            with tarfile.open(fileobj=stream, mode="w", format=tarfile.GNU_FORMAT) as tar:
                for rel in files:
                    info = tar.gettarinfo(str(Path(bundle) / rel), arcname=rel)
                    info.uid = info.gid = 0
                    info.uname = info.gname = "root"
                    info.mode = 0o644
                    with open(Path(bundle) / rel, "rb") as fh:
                        tar.addfile(info, fh)
            stream.seek(0)
            # One round trip: unpack into the staging folder, flush it, and only then rename it.
            q_staging, q_final = shlex.quote(staging), shlex.quote(final)
            script = (f"set -e; mkdir {q_staging}; tar -xf - -C {q_staging}; sync; "
                      f"if [ -e {q_final} ]; then rm -rf {q_final}; fi; mv {q_staging} {q_final}")
            self._run(script, f"copying the bundle to {final}", stdin=stream, timeout=1800)

    def link_current(self, link: str | None, activate: str | None = None) -> None:
        steps = ["set -e", f"cd {shlex.quote(self.root)}"]
        if activate:
            steps.append(f"touch {shlex.quote(posixpath.join(RELEASES, activate))}")
        if link is None:
            steps.append(f"if [ -L {CURRENT} ]; then rm -f {CURRENT}; fi")
        else:
            tmp = f"{CURRENT}.tmp-{os.getpid()}"
            steps += [f"ln -sfn {shlex.quote(link)} {tmp}", f"mv -Tf {tmp} {CURRENT}"]
        self._run("; ".join(steps), f"switching {self.path(CURRENT)}")

    def list_releases(self) -> list[str]:
        done = self._run(f"cd {shlex.quote(self.path(RELEASES))} && ls -1t", "listing releases")
        return [name for name in done.stdout.splitlines() if name and not name.startswith(".")]

    def remove(self, paths: list[str], stale_partials: bool = False) -> None:
        script = "rm -rf -- " + " ".join(map(shlex.quote, paths)) if paths else "true"
        if stale_partials:
            script += (f"; find {shlex.quote(self.path(RELEASES))} -maxdepth 1 -name '.*{PARTIAL}*' "
                       f"-mmin +{STALE_PARTIAL_S // 60} -exec rm -rf {{}} + 2>/dev/null || true")
        self._run(script, "removing " + (", ".join(paths) or "stale staging folders"))

    def selftest(self, release_dir: str, remote_cmd: str | None, timeout: float) -> tuple[int, str]:
        cmd = f"{remote_cmd or DEFAULT_REMOTE_CMD} selftest {shlex.quote(release_dir)}"
        done = self._run(cmd, "running the self-test", timeout=timeout, check=False)
        return done.returncode, _last_line(done.stdout, done.stderr)

    def restart(self, service: str) -> None:
        done = self._run(f"systemctl --no-ask-password restart {shlex.quote(service)}", f"restarting {service}", check=False)
        if done.returncode != 0:
            raise _service_error(service, done.stdout + done.stderr, self.dest)

    def health(self, url: str, timeout: float, remote_cmd: str | None) -> str:
        cmd = f"{remote_cmd or DEFAULT_REMOTE_CMD} healthcheck {shlex.quote(url)} --timeout {timeout:g}"
        done = self._run(cmd, f"polling {url}", timeout=timeout + 60, check=False)
        line = _last_line(done.stdout, done.stderr)
        if done.returncode != 0:
            raise HealthCheckError(f"health check on {self.dest} failed: {line.removeprefix('FAIL: ')}")
        return line


_SSH_TARGET = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>\[[^\]/]+\]|[^:/@\[\]]+):(?P<path>.*)$")


def parse_target(to: str, ssh_options: tuple[str, ...] = ()) -> Target:
    """``[user@]host:/folder`` (as scp: no ``/`` before the first ``:``) or a local folder."""
    m = _SSH_TARGET.match(to)
    if m:
        return SshTarget(m["user"], m["host"].strip("[]"), m["path"], ssh_options)
    return LocalTarget(to)


# --- health --------------------------------------------------------------------------------------


def poll_health(url: str, timeout: float = 60.0, interval: float = 0.5) -> str:
    """Poll ``url`` until it answers 200 (then a short line) or ``timeout`` passes (HealthCheckError).
    A refused connection or a 503 (``/healthz`` says ``starting`` until the first frame) is retried."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise FlashError(f"--health-url must be an http(s) URL, got {url!r}")
    start = time.monotonic()
    deadline = start + timeout
    last = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=max(0.5, min(5.0, remaining))) as r:
                status, body = r.status, r.read(4096)
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read(4096)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            status, body = None, b""
            last = f"no answer ({_one_line(getattr(e, 'reason', e))})"
        if status is not None:
            last = f"HTTP {status}{_status_field(body)}"
            if status == 200:
                return f"{url} {last} after {time.monotonic() - start:.1f} s"
        if time.monotonic() >= deadline:
            raise HealthCheckError(f"{url} not healthy within {timeout:g} s (last: {last})")
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))


def _status_field(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    return f" {doc['status']}" if isinstance(doc, dict) and "status" in doc else ""


# --- the command ---------------------------------------------------------------------------------


def verify_for_flash(bundle: Path) -> Manifest:
    """:func:`verify_bundle`, refusing with :class:`TamperedBundleError` (naming the file)."""
    try:
        return verify_bundle(bundle)
    except BundleError as e:
        raise TamperedBundleError(f"refusing to flash: {_one_line(e)}") from None


def flash(bundle: str | Path, to: str, options: FlashOptions | None = None) -> FlashResult:
    """Install ``bundle`` as the current release of ``to`` (see the module docstring)."""
    opts = options or FlashOptions()
    if opts.keep < 1:
        raise FlashError("--keep must be at least 1")
    if opts.health_url and urllib.parse.urlsplit(opts.health_url).scheme not in ("http", "https"):
        raise FlashError(f"--health-url must be an http(s) URL, got {opts.health_url!r}")
    start = time.monotonic()
    bundle = Path(bundle)
    manifest = verify_for_flash(bundle)
    files = [MANIFEST, *sorted(manifest.files)]
    unlisted = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*")
                      if p.is_file() and str(p.relative_to(bundle)) not in files)
    if unlisted:
        log.warning("not copying files the manifest does not list: %s", ", ".join(unlisted))
    size = sum((bundle / rel).stat().st_size for rel in files)
    target = parse_target(to, opts.ssh_options)
    try:
        return _flash(target, bundle, manifest, files, size, opts, start)
    finally:
        target.close()


def _flash(target: Target, bundle: Path, manifest: Manifest, files: list[str], size: int, opts: FlashOptions,
           start: float) -> FlashResult:
    release = release_name(bundle, manifest)
    where = target.describe()
    log.info("flashing %s v%s (%d files, %.1f MB) to %s as %s/%s", manifest.name, manifest.version,
             len(files), size / 1e6, where, RELEASES, release)

    state = target.prepare(release)
    previous, previous_release = state.current, target.release_of(state.current)
    release_dir = target.path(RELEASES, release)
    if previous_release == release:
        line = _selftest(target, release_dir, opts, remove_on_failure=False)
        log.info("%s is already the current release on %s; nothing to switch", release, where)
        return FlashResult(where, release, release_dir, previous, False, line, seconds=time.monotonic() - start)

    needed = int(size * 1.05) + (1 << 20)
    if state.avail_bytes is not None and state.avail_bytes < needed:
        raise NoSpaceError(f"not enough space on {where}: the release needs {needed / 1e6:.1f} MB, "
                           f"{state.avail_bytes / 1e6:.1f} MB free; remove old releases (--keep) or free space")

    staging = target.path(RELEASES, f".{release}{PARTIAL}{os.getpid()}")
    try:
        target.install(bundle, files, staging, release)
    except BaseException:
        _quietly(target.remove, [staging])
        raise
    log.info("copied to %s", release_dir)
    line = _selftest(target, release_dir, opts, remove_on_failure=True)

    link = f"{RELEASES}/{release}"
    progress: list[str] = []  # "restart" once a restart was attempted: the rollback restarts again
    try:
        # A failed switch may still have switched (the connection dropped after the rename):
        # from here on every failure restores the previous link before removing the release.
        target.link_current(link, activate=release)
        log.info("switched %s -> %s (was %s)", target.path(CURRENT), link, previous or "nothing")
        health = _restart_and_check(target, opts, progress)
    except BaseException as e:
        note = _rollback(target, previous, release_dir, opts, restart="restart" in progress)
        if isinstance(e, FlashError):
            raise type(e)(f"{e}; {note}") from None
        raise
    pruned = _prune(target, opts.keep, protect={release, previous_release})
    return FlashResult(where, release, release_dir, previous, True, line, health, pruned, time.monotonic() - start)


def _selftest(target: Target, release_dir: str, opts: FlashOptions, remove_on_failure: bool) -> str:
    log.info("self-test on %s", target.describe())
    try:
        status, line = target.selftest(release_dir, opts.remote_cmd, opts.selftest_timeout_s)
    except BaseException:
        if remove_on_failure:
            _quietly(target.remove, [release_dir])
        raise
    if status == 0:
        log.info("self-test passed: %s", line)
        return line
    if remove_on_failure:
        _quietly(target.remove, [release_dir])
    hint = (" (pass --remote-cmd with the path of edge-affectsr on the target)" if status in (126, 127) else "")
    kept = "removed the release; current unchanged" if remove_on_failure else "current unchanged"
    raise SelfTestFailedError(f"self-test failed on {target.describe()}: {line}{hint}; {kept}")


def _restart_and_check(target: Target, opts: FlashOptions, progress: list[str]) -> str | None:
    if opts.service:
        log.info("restarting %s", opts.service)
        progress.append("restart")
        target.restart(opts.service)
    else:
        log.info("no --service given: not restarting anything (the daemon picks the release up on its next start)")
    if not opts.health_url:
        return None
    log.info("waiting up to %g s for %s", opts.health_timeout_s, opts.health_url)
    line = target.health(opts.health_url, opts.health_timeout_s, opts.remote_cmd)
    log.info("healthy: %s", line)
    return line


def _rollback(target: Target, previous: str | None, release_dir: str, opts: FlashOptions, restart: bool) -> str:
    """Undo a switch: ``current`` back to ``previous`` (removed if there was none), restart, remove
    the new release. Returns one line for the error message; never raises."""
    try:
        target.link_current(previous)
    except Exception as e:  # noqa: BLE001 - report, the caller raises the original error
        fix = (f"cd {target.root} && ln -sfn {previous} current.tmp && mv -Tf current.tmp current" if previous
               else f"rm {target.path(CURRENT)}")
        note = (f"ROLLBACK FAILED ({_one_line(e)}): {target.path(CURRENT)} may still point at the new release "
                f"{posixpath.basename(release_dir)} (kept); fix on {target.describe()}: {fix}")
        log.error(note)
        return note
    note = f"rolled back: current -> {previous}" if previous else "rolled back: current removed (no previous release)"
    if opts.service and restart:
        try:
            target.restart(opts.service)
            note += f", {opts.service} restarted"
        except Exception as e:  # noqa: BLE001
            note += f", but restarting {opts.service} failed too ({_one_line(e)})"
    try:
        target.remove([release_dir])
        note += f", {posixpath.basename(release_dir)} removed"
    except Exception as e:  # noqa: BLE001
        note += f", could not remove {release_dir} ({_one_line(e)})"
    log.warning(note)
    return note


def _prune(target: Target, keep: int, protect: set[str | None]) -> list[str]:
    """Delete all but the newest ``keep`` releases, never one in ``protect``; a failure only warns."""
    try:
        names = target.list_releases()
        doomed = [name for name in names[keep:] if name not in protect]
        target.remove([target.path(RELEASES, name) for name in doomed], stale_partials=True)
    except (UserError, OSError) as e:
        log.warning("could not remove old releases: %s", _one_line(e))
        return []
    if doomed:
        log.info("removed old releases: %s", ", ".join(doomed))
    return doomed


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - cleanup after another error: log, keep the first error
        log.warning("cleanup failed: %s", _one_line(e))


# --- what runs on the target ---------------------------------------------------------------------


def selftest(path: str | Path, config: Path | None = None) -> tuple[bool, str]:
    """Verify, load and golden-check a bundle here: ``(passed, one line)``. Never raises."""
    try:
        from edge_affectsr.device.bundle_loader import load_bundle  # noqa: PLC0415 - loads the TFLite runtime

        interpreter = None
        if config is not None:
            from edge_affectsr.device.settings import load_device_config  # noqa: PLC0415

            interpreter = load_device_config(config).interpreter
        bundle = load_bundle(path, interpreter=interpreter, self_test=False)
        result = bundle.self_test()
    except UserError as e:
        return False, f"FAIL: {_one_line(e)}"
    except Exception as e:  # noqa: BLE001 - a crash in a model is a failed self-test, said in one line
        return False, f"FAIL: {path}: {type(e).__name__}: {_one_line(e)}"
    return True, (f"ok: {bundle.name} v{bundle.version} at {path}: golden PSNR {result.psnr_db:.1f} dB "
                  f">= {result.min_psnr_db:.1f} dB on {bundle.delegate.delegate} ({result.ms:.1f} ms)")
