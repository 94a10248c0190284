"""A flash that cannot be tricked or raced: manifest paths that leave the bundle are refused before
anything is written (local and ssh targets), a second flash to a target fails at once naming the
first (a real flash held in its health check; the target's flock), and with --trust only bundles
signed by a trusted key are flashed. Real files, a real sshd on a loopback port, real subprocesses."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from edge_affectsr.bundle import MANIFEST, SIGNATURE, verify_bundle
from edge_affectsr.device.flash.errors import FlashLockedError, TamperedBundleError
from edge_affectsr.device.flash.release import FlashOptions, flash
from edge_affectsr.device.flash.target import CURRENT, LOCK, RELEASES
from edge_affectsr.signing import SigningKey, generate_keypair

from _flash_env import CLI, REMOTE_CMD, ROOT, GateServer, bundles, sshd  # noqa: F401 - fixtures
from tiny_bundle import edit_manifest, make_bundle


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its contents (empty when ``path`` does not exist)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()} if path.exists() else {}


# --- manifest paths that leave the bundle -------------------------------------------------------------


def escaping_bundle(tmp_path: Path, name: str, rel: str, source: Path) -> Path:
    """A tiny bundle at tmp_path/src/<name>/b/bundle that lists ``rel`` with ``source``'s real sha256."""
    bundle = make_bundle(tmp_path / "src" / name / "b" / "bundle")
    edit_manifest(bundle, lambda doc: doc["files"].update({rel: hashlib.sha256(source.read_bytes()).hexdigest()}))
    return bundle


@pytest.fixture
def traversal(tmp_path: Path) -> tuple[Path, Path]:
    """``../../../x.txt``: from the bundle (tmp/src/traversal/b/bundle), tmp/src/x.txt, which exists, so
    its hash matched; from the staging folder tmp/dst/root/releases/.<release>.partial-<pid>/, the file
    tmp/dst/x.txt: outside the target root."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "x.txt").write_text("planted")
    return escaping_bundle(tmp_path, "traversal", "../../../x.txt", tmp_path / "src" / "x.txt"), tmp_path / "dst"


@pytest.fixture
def absolute(tmp_path: Path) -> tuple[Path, Path]:
    """An absolute entry naming a file of the flashing machine: the copy opened it for writing as its
    own source, truncating it to 0 bytes."""
    victim = tmp_path / "victim.conf"
    victim.write_text("precious")
    return escaping_bundle(tmp_path, "absolute", str(victim), victim), victim


def test_a_traversing_entry_is_refused_before_anything_is_written_locally(traversal, tmp_path):
    bundle, dst = traversal
    with pytest.raises(TamperedBundleError, match=r"refusing to flash: .*'../../../x.txt' leaves the bundle"):
        flash(bundle, str(dst / "root"))
    assert tree(dst) == {}


def test_an_absolute_entry_is_refused_and_the_file_it_names_is_untouched(absolute, tmp_path):
    bundle, victim = absolute
    with pytest.raises(TamperedBundleError, match="is absolute"):
        flash(bundle, str(tmp_path / "dst" / "root"))
    assert victim.read_text() == "precious" and tree(tmp_path / "dst") == {}
    done = subprocess.run([*CLI, "flash", "--model", str(bundle), "--to", str(tmp_path / "dst" / "root")], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: refusing to flash")
    assert "Traceback" not in done.stderr and victim.read_text() == "precious" and tree(tmp_path / "dst") == {}


def test_escaping_entries_are_refused_on_an_ssh_target(traversal, absolute, sshd, tmp_path):
    for bundle in (traversal[0], absolute[0]):
        with pytest.raises(TamperedBundleError, match="leaves the bundle|is absolute"):
            flash(bundle, sshd.to(tmp_path / "dst" / "root"), FlashOptions(ssh_options=sshd.options(),
                                                                          remote_cmd=REMOTE_CMD))
    assert tree(tmp_path / "dst") == {} and absolute[1].read_text() == "precious"


# --- one flash per target --------------------------------------------------------------------------


@contextlib.contextmanager
def held_flash(bundle: Path, to: str, *extra: str) -> Iterator[subprocess.Popen]:
    """``edge-affectsr flash`` in a subprocess, held in its health check (so holding the target's
    lock) for the block; then let go. Its stderr is in ``proc.stderr_text`` after the block."""
    gate = GateServer()
    proc = subprocess.Popen([*CLI, "flash", "--model", str(bundle), "--to", to, "--health-url", gate.url, "--health-timeout", "120",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while gate.requests == 0:  # polled: the release is copied, tested and switched, the lock held
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the flash never reached its health check: {proc.communicate()[1][-2000:]}")
            time.sleep(0.05)
        yield proc
        gate.open()
        proc.stderr_text = proc.communicate(timeout=120)[1]
    finally:
        gate.open()
        gate.close()
        if proc.poll() is None:
            proc.kill()


def refused_fast(bundle: Path, to: str, holder_pid: int, opts: FlashOptions | None = None) -> str:
    start = time.monotonic()
    with pytest.raises(FlashLockedError, match=f"another flash to .* is in progress \\(pid {holder_pid} on ") as err:
        flash(bundle, to, opts)
    assert time.monotonic() - start < 15 and "\n" not in str(err.value)
    return str(err.value)


def ssh_flags(sshd) -> list[str]:
    return ["--remote-cmd", REMOTE_CMD, *(a for v in sshd.option_values() for a in ("--ssh-option", v))]


def test_a_second_flash_to_a_local_target_fails_fast_naming_the_first(bundles, tmp_path):
    """Before: no lock; one flash pruned the other's fresh release, the other's rollback reverted the
    first's switch, and both could report success."""
    root = tmp_path / "root"
    with held_flash(bundles["v1"], str(root)) as first:
        switched = os.readlink(root / CURRENT)
        assert "flashing bundle-x4 v1.0.0" in refused_fast(bundles["v2"], str(root), first.pid)
        assert os.readlink(root / CURRENT) == switched and len(os.listdir(root / RELEASES)) == 1  # untouched
    assert first.returncode == 0, first.stderr_text[-2000:]
    assert (root / LOCK).read_text() == ""  # released, naming no holder
    second = flash(bundles["v2"], str(root))  # the lock is free again
    assert second.switched and verify_bundle(root / CURRENT).version == "2.0.0"


def test_the_ssh_lock_excludes_flashes_over_ssh_and_on_the_target_itself(bundles, sshd, tmp_path):
    root = tmp_path / "root"
    ssh_opts = FlashOptions(ssh_options=sshd.options(), remote_cmd=REMOTE_CMD)
    with held_flash(bundles["v1"], sshd.to(root), *ssh_flags(sshd)) as first:
        refused_fast(bundles["v2"], sshd.to(root), first.pid, ssh_opts)
        refused_fast(bundles["v2"], str(root), first.pid)  # the same flock as a local flash on the camera
    assert first.returncode == 0, first.stderr_text[-2000:]
    assert verify_bundle(root / CURRENT).version == "1.0.0"
    assert flash(bundles["v2"], sshd.to(root), ssh_opts).switched  # released when the first one's connection closed


@pytest.mark.parametrize("remote", [False, True], ids=["local", "ssh"])
def test_a_killed_flash_leaves_no_lock_behind(bundles, tmp_path, remote, request):
    """The lock lives as long as the flash's process (local flock) or connection (ssh): SIGKILL frees it."""
    server = request.getfixturevalue("sshd") if remote else None
    to, flags = (server.to(tmp_path / "root"), ssh_flags(server)) if server else (str(tmp_path / "root"), [])
    opts = FlashOptions(ssh_options=server.options(), remote_cmd=REMOTE_CMD) if server else None
    with held_flash(bundles["v1"], to, *flags) as first:
        first.kill()
        first.wait(timeout=30)
    deadline = time.monotonic() + 20
    while True:  # over ssh, the remote shell ends once sshd notices the closed connection
        try:
            assert flash(bundles["v2"], to, opts).switched
            return
        except FlashLockedError:
            assert time.monotonic() < deadline, "the lock outlived the killed flash"
            time.sleep(0.5)


# --- signatures (--trust) ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing(bundles, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("signing")
    for name in ("release", "other"):
        generate_keypair(tmp / f"{name}.key", tmp / f"{name}.pub")
    signed = Path(shutil.copytree(bundles["v1"], tmp / "signed"))
    SigningKey.load(tmp / "release.key").sign_bundle(signed)
    by_other = Path(shutil.copytree(bundles["v1"], tmp / "by-other"))
    SigningKey.load(tmp / "other.key").sign_bundle(by_other)
    changed = Path(shutil.copytree(signed, tmp / "changed"))  # signed, then its manifest edited
    doc = json.loads((changed / MANIFEST).read_text())
    doc["version"] = "9.9.9"
    (changed / MANIFEST).write_text(json.dumps(doc, indent=2))
    return {"trust": (str(tmp / "release.pub"),), "signed": signed, "by_other": by_other, "changed": changed}


def test_with_trust_a_signed_bundle_is_flashed_with_its_signature(signing, bundles, tmp_path):
    root = tmp_path / "root"
    result = flash(signing["signed"], str(root), FlashOptions(trust=signing["trust"]))
    assert result.switched and (root / CURRENT / SIGNATURE).read_bytes() == (signing["signed"] / SIGNATURE).read_bytes()
    unsigned = flash(bundles["v1"], str(root))  # no --trust: the unsigned twin is accepted, as a release of its own
    assert unsigned.switched and unsigned.release != result.release


@pytest.mark.parametrize("case, why", [("unsigned", "not signed"), ("by_other", "which is not trusted"),
                                       ("changed", "does not match manifest.json")])
def test_with_trust_unsigned_wrongly_signed_and_changed_bundles_are_refused(signing, bundles, tmp_path, case, why):
    bundle = bundles["v1"] if case == "unsigned" else signing[case]
    with pytest.raises(TamperedBundleError, match=f"refusing to flash: .*{why}"):
        flash(bundle, str(tmp_path / "root"), FlashOptions(trust=signing["trust"]))
    assert not (tmp_path / "root").exists()
    done = subprocess.run([*CLI, "flash", "--model", str(bundle), "--to", str(tmp_path / "root"), "--trust", signing["trust"][0]],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and why in done.stderr.strip().splitlines()[-1] and not (tmp_path / "root").exists()


def test_selftest_checks_the_signature_with_trust(signing, bundles):
    """What a camera can run before a restart: `selftest --trust` (exit 1 and one FAIL line when unsigned)."""
    for bundle, status, start in ((signing["signed"], 0, "ok: "), (bundles["v1"], 1, "FAIL: ")):
        done = subprocess.run([*CLI, "selftest", "--model", str(bundle), "--trust", signing["trust"][0]], capture_output=True,
                              text=True, timeout=120, cwd=ROOT)
        assert done.returncode == status and done.stdout.startswith(start) and done.stdout.count("\n") == 1, done.stdout
    assert "not signed" in done.stdout
