"""Flash a model bundle onto a camera: verify, copy, self-test there, switch, restart, roll back.

``edge-affectsr flash --model BUNDLE --to user@host:/opt/edge-affectsr`` (or ``--to /local/dir``) lays the
target out as::

    <root>/releases/<name>-<version>-<sha12>/   one folder per release (sha12: of manifest.json)
    <root>/current -> releases/<...>           the release the daemon runs (a relative symlink)

and goes through these steps, each of which either finishes or leaves the target as it was:

1. verify the bundle here, before anything is copied or the target is touched: with ``--trust`` keys
   the manifest's signature, every path it names (relative, normalised, inside the bundle: an entry
   ``../../x`` or ``/etc/x`` is refused) and every sha256; only the manifest, its signature and the
   files it lists are copied;
2. lock the target (``flock`` on ``<root>/.flash.lock``, held for the whole flash; a second flash to
   the same target fails at once, naming the holder), check the target (the releases folder can be created and written, ``current`` is a link, there is
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

Every failure the user can fix is a :class:`~edge_affectsr.device.flash.errors.FlashError` with a one-line
message. The targets: ``flash/local.py`` (a folder here) and
``flash/ssh.py`` (a folder on another machine, over the system ssh).
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from edge_affectsr.bundle import MANIFEST, SIGNATURE, BundleError, Manifest, verify_bundle
from edge_affectsr.device.flash.errors import (
    FlashError, NoSpaceError, SelfTestFailedError, TamperedBundleError, one_line,
)
from edge_affectsr.device.flash.local import LocalTarget
from edge_affectsr.device.flash.ssh import SshTarget
from edge_affectsr.device.flash.target import CURRENT, PARTIAL, RELEASES, Target, holder_line
from edge_affectsr.errors import UserError
from edge_affectsr.signing import TrustedKeys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlashOptions:
    keep: int = 3
    service: str | None = None
    health_url: str | None = None
    health_timeout_s: float = 60.0
    remote_cmd: str | None = None  # None: edge-affectsr over ssh, this interpreter for a local target
    ssh_options: tuple[str, ...] = ()  # ready-made ssh arguments, see ssh_option_args
    selftest_timeout_s: float = 300.0
    trust: tuple[str, ...] = ()  # trusted public keys (files, folders, "project"); empty: signatures not checked


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


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"


def release_name(bundle: Path, manifest: Manifest) -> str:
    """``<name>-<version>-<first 12 hex of sha256(manifest.json [+ manifest.sig])>``: the manifest
    holds every file's hash, so the same name always means the same content, signature included (a
    bundle signed after an unsigned flash is a new release, not "already current" without its signature)."""
    digest = hashlib.sha256((Path(bundle) / MANIFEST).read_bytes())
    if (Path(bundle) / SIGNATURE).is_file():
        digest.update((Path(bundle) / SIGNATURE).read_bytes())
    return f"{_safe(manifest.name)}-{_safe(manifest.version)}-{digest.hexdigest()[:12]}"


_SSH_TARGET = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>\[[^\]/]+\]|[^:/@\[\]]+):(?P<path>.*)$")


def parse_target(to: str, ssh_options: tuple[str, ...] = ()) -> Target:
    """``[user@]host:/folder`` (as scp: no ``/`` before the first ``:``) or a local folder."""
    m = _SSH_TARGET.match(to)
    if m:
        return SshTarget(m["user"], m["host"].strip("[]"), m["path"], ssh_options)
    return LocalTarget(to)


def verify_for_flash(bundle: Path, trust: tuple[str, ...] = ()) -> Manifest:
    """:func:`verify_bundle` (signed by one of ``trust`` when it names keys), refusing with
    :class:`TamperedBundleError` naming the file, path or signature at fault."""
    try:
        return verify_bundle(bundle, TrustedKeys.load(trust))
    except BundleError as e:
        raise TamperedBundleError(f"refusing to flash: {one_line(e, 1000)}") from None


def flash(bundle: str | Path, to: str, options: FlashOptions | None = None) -> FlashResult:
    """Install ``bundle`` as the current release of ``to`` (see the module docstring)."""
    opts = options or FlashOptions()
    if opts.keep < 1:
        raise FlashError("--keep must be at least 1")
    if opts.health_url and urllib.parse.urlsplit(opts.health_url).scheme not in ("http", "https"):
        raise FlashError(f"--health-url must be an http(s) URL, got {opts.health_url!r}")
    start = time.monotonic()
    bundle = Path(bundle)
    manifest = verify_for_flash(bundle, opts.trust)
    files = [MANIFEST, *([SIGNATURE] if (bundle / SIGNATURE).is_file() else []), *sorted(manifest.files)]
    unlisted = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*")
                      if p.is_file() and str(p.relative_to(bundle)) not in files)
    if unlisted:
        log.warning("not copying files the manifest does not list: %s", ", ".join(unlisted))
    size = sum((bundle / rel).stat().st_size for rel in files)
    target = parse_target(to, opts.ssh_options)
    try:
        target.lock(holder_line(f"flashing {manifest.name} v{manifest.version} from {bundle.resolve()}"))
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
        note = (f"ROLLBACK FAILED ({one_line(e)}): {target.path(CURRENT)} may still point at the new release "
                f"{posixpath.basename(release_dir)} (kept); fix on {target.describe()}: {fix}")
        log.error(note)
        return note
    note = f"rolled back: current -> {previous}" if previous else "rolled back: current removed (no previous release)"
    if opts.service and restart:
        try:
            target.restart(opts.service)
            note += f", {opts.service} restarted"
        except Exception as e:  # noqa: BLE001
            note += f", but restarting {opts.service} failed too ({one_line(e)})"
    try:
        target.remove([release_dir])
        note += f", {posixpath.basename(release_dir)} removed"
    except Exception as e:  # noqa: BLE001
        note += f", could not remove {release_dir} ({one_line(e)})"
    log.warning(note)
    return note


def _prune(target: Target, keep: int, protect: set[str | None]) -> list[str]:
    """Delete all but the newest ``keep`` releases, never one in ``protect``; a failure only warns."""
    try:
        names = target.list_releases()
        doomed = [name for name in names[keep:] if name not in protect]
        target.remove([target.path(RELEASES, name) for name in doomed], stale_partials=True)
    except (UserError, OSError) as e:
        log.warning("could not remove old releases: %s", one_line(e))
        return []
    if doomed:
        log.info("removed old releases: %s", ", ".join(doomed))
    return doomed


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - cleanup after another error: log, keep the first error
        log.warning("cleanup failed: %s", one_line(e))
