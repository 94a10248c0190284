"""A target folder on another machine, reached with the system ``ssh``.

ssh targets use the system ``ssh`` in batch mode (never a password prompt) with a connect timeout;
the copy is one tar stream over ssh (only ``sh``, ``tar``, ``df``, ``mv -T``, ``ln`` and ``flock`` are
needed on the target, which BusyBox provides; no sftp subsystem, no rsync).

The flash lock is ``flock`` on the target, held by a shell on a connection of its own for the whole
flash: it is released when that connection ends, however the flash ends (done, failed, killed, or
the network gone), so a lock is never left behind.
"""

from __future__ import annotations

import os
import posixpath
import re
import select
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from edge_affectsr.device.flash.errors import (
    FlashError, HealthCheckError, NoSpaceError, PermissionDeniedError, UnreachableHostError, last_line,
)
from edge_affectsr.device.flash.target import (
    CURRENT, DEFAULT_REMOTE_CMD, LOCK, PARTIAL, RELEASES, STALE_PARTIAL_S, Target, TargetState, locked_error,
    service_error,
)

CONNECT_TIMEOUT_S = 10
LOCK_BUSY = 75  # the lock script's exit status when another flash holds the lock (EX_TEMPFAIL)
LOCKED = b"locked"  # what the lock script prints once it holds the lock
SSH_DEFAULTS = ("-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3")


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
        self._lock_proc: subprocess.Popen | None = None

    @property
    def ssh(self) -> list[str]:
        """The ssh command line. One connection serves all the steps (a handshake costs ~0.5 s on
        a Pi): the first call starts a master the others share; close() ends it (else it exits by
        itself 60 s after its last use). The user's options come first: ssh keeps the first value."""
        if self._control_dir is None:
            self._control_dir = tempfile.mkdtemp(prefix="edge-affectsr-ssh-", dir="/tmp" if os.path.isdir("/tmp") else None)
        multiplex = ("-o", "ControlMaster=auto", "-o", f"ControlPath={self._control_dir}/%C", "-o", "ControlPersist=60")
        return ["ssh", *self.ssh_options, *SSH_DEFAULTS, *multiplex]

    def lock(self, holder: str) -> None:
        lock = shlex.quote(self.path(LOCK))
        script = (f"mkdir -p {shlex.quote(self.root)} && exec 9<>{lock} || exit 1; "
                  "command -v flock >/dev/null || { echo 'flock: command not found' >&2; exit 127; }; "
                  f"flock -n 9 || {{ cat {lock} >&2; exit {LOCK_BUSY}; }}; "
                  f"printf '%s\\n' {shlex.quote(holder)} > {lock}; echo {LOCKED.decode()}; "
                  f"cat >/dev/null; : > {lock}")  # held until our end of the connection closes
        argv = ["ssh", *self.ssh_options, *SSH_DEFAULTS, self.dest, "sh -c " + shlex.quote(script)]
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise FlashError("the ssh client is not installed here (apt-get install openssh-client)") from None
        if _first_line(proc, CONNECT_TIMEOUT_S * 3) == LOCKED:
            self._lock_proc = proc
            return
        _end(proc)
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.returncode == LOCK_BUSY:
            raise locked_error(self.describe(), stderr)
        if proc.returncode == 127:
            raise FlashError(f"flock is not installed on {self.dest} (util-linux, or BusyBox with flock); "
                             "flash needs it to lock the target")
        if proc.returncode == 255 or proc.returncode < 0:  # ssh failed, or stayed silent and was killed
            raise self._ssh_error(stderr, "taking the flash lock")
        raise self._remote_error(subprocess.CompletedProcess(argv, proc.returncode, "", stderr), "taking the flash lock")

    def close(self) -> None:
        proc, self._lock_proc = self._lock_proc, None
        if proc is not None:
            _end(proc)  # EOF on the remote `cat`: the lock is released
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
        line = last_line(stderr)
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
        line = last_line(done.stderr, done.stdout)
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
        return done.returncode, last_line(done.stdout, done.stderr)

    def restart(self, service: str) -> None:
        done = self._run(f"systemctl --no-ask-password restart {shlex.quote(service)}", f"restarting {service}", check=False)
        if done.returncode != 0:
            raise service_error(service, done.stdout + done.stderr, self.dest)

    def health(self, url: str, timeout: float, remote_cmd: str | None) -> str:
        cmd = f"{remote_cmd or DEFAULT_REMOTE_CMD} healthcheck {shlex.quote(url)} --timeout {timeout:g}"
        done = self._run(cmd, f"polling {url}", timeout=timeout + 60, check=False)
        line = last_line(done.stdout, done.stderr)
        if done.returncode != 0:
            raise HealthCheckError(f"health check on {self.dest} failed: {line.removeprefix('FAIL: ')}")
        return line


def _first_line(proc: subprocess.Popen, timeout: float) -> bytes | None:
    """The first line ``proc`` prints, stripped, or None when it ends or stays silent for ``timeout``."""
    deadline, line = time.monotonic() + timeout, b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([proc.stdout], [], [], remaining)[0]:
            return None
        chunk = os.read(proc.stdout.fileno(), 256)
        if not chunk:
            return None
        line += chunk
    return line.strip()


def _end(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Close ``proc``'s stdin and wait for it to exit (killed after ``timeout``)."""
    try:
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
