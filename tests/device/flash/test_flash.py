"""device/flash/: flashing a real bundle onto a local folder and, over a real sshd started on a
loopback port, onto "another machine"; the self-test really runs (`edge-affectsr selftest` in a
subprocess there). Skips cleanly without a bundle, and the ssh tests without ssh/sshd."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from edge_affectsr.bundle import MANIFEST, verify_bundle
from edge_affectsr.device.flash.errors import (
    FlashError, HealthCheckError, NoSpaceError, PermissionDeniedError, SelfTestFailedError, TamperedBundleError,
    UnreachableHostError,
)
from edge_affectsr.device.flash.local import LocalTarget
from edge_affectsr.device.flash.release import FlashOptions, flash, parse_target
from edge_affectsr.device.flash.ssh import SshTarget, ssh_option_args
from edge_affectsr.device.flash.target import CURRENT, LOCK, RELEASES

from _flash_env import CLI, REMOTE_CMD, ROOT, HealthServer, bundles, free_port, sshd  # noqa: F401 - fixtures
from _tmpfs import small_tmpfs


@pytest.fixture(scope="module")
def flashed_v1(bundles, tmp_path_factory) -> Path:
    """A target root with v1 flashed (copy it per test: the link is relative)."""
    root = tmp_path_factory.mktemp("flashed") / "root"
    flash(bundles["v1"], str(root))
    return root


@pytest.fixture
def root_v1(flashed_v1, tmp_path) -> Path:
    return Path(shutil.copytree(flashed_v1, tmp_path / "root", symlinks=True))


def current(root: Path) -> str:
    return os.readlink(root / CURRENT)


def releases(root: Path) -> set[str]:
    return {p.name for p in (root / RELEASES).iterdir()}


# --- local folder target ---------------------------------------------------------------------------


def test_first_flash_then_a_new_version_switches_current(bundles, tmp_path):
    root = tmp_path / "opt" / "edge-affectsr"
    first = flash(bundles["v1"], str(root))
    assert first.switched and first.previous is None and first.selftest.startswith("ok: ")
    assert "-1.0.0-" in first.release
    assert current(root) == f"{RELEASES}/{first.release}"  # relative: the tree can be mounted elsewhere
    assert verify_bundle(root / CURRENT).version == "1.0.0"
    assert sorted(os.listdir(root / CURRENT)) == sorted([MANIFEST, *verify_bundle(bundles["v1"]).files])

    second = flash(bundles["v2"], str(root))
    assert second.switched and second.previous == f"{RELEASES}/{first.release}"
    assert current(root) == f"{RELEASES}/{second.release}"
    assert verify_bundle(root / CURRENT).version == "2.0.0"
    assert releases(root) == {first.release, second.release}  # no staging folder, no tmp link left
    assert sorted(os.listdir(root)) == sorted([LOCK, CURRENT, RELEASES])

    again = flash(bundles["v2"], str(root))  # the same bundle again: tested, nothing switched
    assert not again.switched and current(root) == f"{RELEASES}/{second.release}"


def test_keep_one_prunes_all_but_current_and_previous(bundles, root_v1):
    v1 = current(root_v1).split("/")[1]
    time.sleep(0.01)  # distinct activation times
    v2 = flash(bundles["v2"], str(root_v1), FlashOptions(keep=1))
    assert v2.pruned == [] and releases(root_v1) == {v1, v2.release}  # v1 is the previous: kept
    v3 = flash(bundles["v3"], str(root_v1), FlashOptions(keep=1))
    assert v3.pruned == [v1]
    assert releases(root_v1) == {v2.release, v3.release}
    assert current(root_v1) == f"{RELEASES}/{v3.release}"


def test_tampered_bundle_is_refused_before_anything_is_copied(bundles, root_v1, tmp_path):
    bad = Path(shutil.copytree(bundles["v2"], tmp_path / "tampered"))
    model = bad / "sr_int8.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    before = (current(root_v1), releases(root_v1))
    with pytest.raises(TamperedBundleError, match="sr_int8.tflite"):
        flash(bad, str(root_v1))
    assert (current(root_v1), releases(root_v1)) == before
    fresh = tmp_path / "fresh"
    with pytest.raises(TamperedBundleError):
        flash(bad, str(fresh))
    assert not fresh.exists()

    # the command line: one "error: ..." line naming the file, exit status 2
    done = subprocess.run([*CLI, "flash", "--model", str(bad), "--to", str(fresh)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: refusing to flash")
    assert "sr_int8.tflite" in done.stderr and not fresh.exists()


def test_selftest_failure_leaves_current_on_the_previous_release(bundles, root_v1):
    before = current(root_v1)
    with pytest.raises(SelfTestFailedError, match="golden output PSNR") as err:
        flash(bundles["bad"], str(root_v1))
    assert "\n" not in str(err.value)
    assert current(root_v1) == before
    assert releases(root_v1) == {before.split("/")[1]}  # the failed release folder is gone


def test_selftest_command_prints_one_line_and_exits_0_or_1(bundles):
    good = subprocess.run([*CLI, "selftest", "--model", str(bundles["v1"])], capture_output=True, text=True, timeout=120, cwd=ROOT)
    bad = subprocess.run([*CLI, "selftest", "--model", str(bundles["bad"])], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert good.returncode == 0 and good.stdout.count("\n") == 1 and good.stdout.startswith("ok: bundle")
    assert bad.returncode == 1 and bad.stdout.count("\n") == 1 and bad.stdout.startswith("FAIL: ")


def test_health_check_waits_through_starting(bundles, root_v1):
    server = HealthServer(starting=2)
    try:
        result = flash(bundles["v2"], str(root_v1), FlashOptions(health_url=server.url, health_timeout_s=20))
    finally:
        server.close()
    assert server.requests == 3 and "HTTP 200 ok" in result.health
    assert current(root_v1) == f"{RELEASES}/{result.release}"


def test_unhealthy_after_switch_rolls_back_to_the_previous_release(bundles, root_v1):
    before, kept = current(root_v1), releases(root_v1)
    server = HealthServer(starting=None)
    try:
        with pytest.raises(HealthCheckError, match=r"HTTP 503 starting.*rolled back: current -> releases/") as err:
            flash(bundles["v2"], str(root_v1), FlashOptions(health_url=server.url, health_timeout_s=1.5))
    finally:
        server.close()
    assert server.requests >= 2 and "\n" not in str(err.value)
    assert current(root_v1) == before and releases(root_v1) == kept  # the new release folder is removed


def test_service_that_cannot_restart_rolls_back(bundles, root_v1):
    """No such unit (or no systemd, or no systemctl): whichever way it fails here, it fails after the
    switch, so current goes back."""
    before, kept = current(root_v1), releases(root_v1)
    with pytest.raises(FlashError, match=r"edge-affectsr-no-such-unit.*rolled back: current -> releases/"):
        flash(bundles["v2"], str(root_v1), FlashOptions(service="edge-affectsr-no-such-unit"))
    assert current(root_v1) == before and releases(root_v1) == kept


def test_target_without_space_is_refused_before_copying(bundles, tmp_path):
    with small_tmpfs(tmp_path / "sdcard", size="64k") as sdcard:
        with pytest.raises(NoSpaceError, match="not enough space"):
            flash(bundles["v1"], str(sdcard / "edge-affectsr"))
        assert os.listdir(sdcard / "edge-affectsr" / RELEASES) == []


def test_target_syntax():
    t = parse_target("pi@cam1:/opt/edge-affectsr/")
    assert isinstance(t, SshTarget) and (t.dest, t.root) == ("pi@cam1", "/opt/edge-affectsr")
    assert parse_target("cam1:opt").dest == "cam1"
    assert parse_target("root@[::1]:/x").dest == "root@::1"
    for local in ("/media/sd/edge-affectsr", "./a:b", "relative/dir"):
        assert isinstance(parse_target(local), LocalTarget)
    assert ssh_option_args(["-i key -p 2222", "StrictHostKeyChecking=no"]) == (
        "-i", "key", "-p", "2222", "-o", "StrictHostKeyChecking=no")
    assert LocalTarget("/r").release_of("releases/a-1-abc") == "a-1-abc"
    assert LocalTarget("/r").release_of("/r/releases/a-1-abc/") == "a-1-abc"
    assert LocalTarget("/r").release_of("/elsewhere/x") is None


# --- ssh target: a real sshd on a loopback port ----------------------------------------------------


def test_ssh_flash_switches_tests_there_and_prunes(bundles, sshd, tmp_path):
    root = tmp_path / "target"
    old = root / RELEASES / "bundle-x4-0.9.0-000000000000"  # an old release, activated a day ago
    shutil.copytree(bundles["v1"], old)
    os.utime(old, (time.time() - 86400,) * 2)
    opts = FlashOptions(keep=1, remote_cmd=REMOTE_CMD, ssh_options=sshd.options())

    first = flash(bundles["v1"], sshd.to(root), opts)
    assert first.switched and first.selftest.startswith("ok: ") and str(root) in first.selftest  # ran on the copy
    assert first.pruned == [old.name] and releases(root) == {first.release}
    assert current(root) == f"{RELEASES}/{first.release}" and verify_bundle(root / CURRENT).version == "1.0.0"

    with pytest.raises(SelfTestFailedError, match="golden output PSNR"):  # verified there, fails the golden check
        flash(bundles["bad"], sshd.to(root), opts)
    assert current(root) == f"{RELEASES}/{first.release}" and releases(root) == {first.release}

    server = HealthServer(starting=1)  # polled by `edge-affectsr healthcheck` on the target (this machine)
    try:
        second = flash(bundles["v2"], sshd.to(root), replace(opts, health_url=server.url, health_timeout_s=30))
    finally:
        server.close()
    assert server.requests == 2 and "HTTP 200 ok" in second.health
    assert current(root) == f"{RELEASES}/{second.release}" and second.previous == f"{RELEASES}/{first.release}"
    assert verify_bundle(root / CURRENT).version == "2.0.0"
    assert second.pruned == [] and releases(root) == {first.release, second.release}  # the previous stays
    assert sorted(os.listdir(root)) == sorted([LOCK, CURRENT, RELEASES])


def test_ssh_remote_command_missing_is_a_selftest_failure(bundles, sshd, tmp_path):
    root = tmp_path / "target"
    with pytest.raises(SelfTestFailedError, match="--remote-cmd"):
        flash(bundles["v1"], sshd.to(root), FlashOptions(remote_cmd="/nonexistent/edge-affectsr", ssh_options=sshd.options()))
    assert releases(root) == set() and not os.path.lexists(root / CURRENT)


def test_ssh_unreachable_host(bundles, sshd, tmp_path):
    closed = free_port()
    opts = ssh_option_args([f"-i {sshd.key} -p {closed}", "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"])
    start = time.monotonic()
    with pytest.raises(UnreachableHostError, match="cannot reach .*Connection refused"):
        flash(bundles["v1"], f"root@127.0.0.1:{tmp_path / 'target'}", FlashOptions(ssh_options=opts))
    assert time.monotonic() - start < 30


def test_ssh_login_refused(bundles, sshd, tmp_path):
    with pytest.raises(PermissionDeniedError, match="ssh login .* refused"):
        flash(bundles["v1"], sshd.to(tmp_path / "target"), FlashOptions(ssh_options=sshd.options(sshd.wrong_key)))
    assert not (tmp_path / "target").exists()


def test_ssh_target_without_space(bundles, sshd, tmp_path):
    with small_tmpfs(tmp_path / "sdcard", size="64k") as sdcard:
        with pytest.raises(NoSpaceError, match="not enough space"):
            flash(bundles["v1"], sshd.to(sdcard / "edge-affectsr"), FlashOptions(ssh_options=sshd.options()))
        assert os.listdir(sdcard / "edge-affectsr" / RELEASES) == []
