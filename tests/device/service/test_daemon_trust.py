"""``edge-affectsr run --trust KEY`` in a real process: it starts only on a bundle signed by a trusted
key, and a SIGHUP reload verifies the signature again (an unsigned replacement is refused and the
running bundle stays; a signed new version is taken, as its events show). Keys are made in tmp."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edge_affectsr.bundle import MANIFEST, SIGNATURE
from edge_affectsr.signing import SigningKey, generate_keypair

from _device_daemon import jsonl_events, looping_builtin, start_daemon, wait_for
from device_bundle import require_bundle


def release(src: Path, dest: Path, version: str, key: SigningKey | None) -> Path:
    """A copy of ``src`` as ``version``, signed by ``key`` (None: unsigned)."""
    shutil.copytree(src, dest)
    (dest / SIGNATURE).unlink(missing_ok=True)
    doc = json.loads((dest / MANIFEST).read_text())
    doc["version"] = version
    (dest / MANIFEST).write_text(json.dumps(doc, indent=2))
    if key is not None:
        key.sign_bundle(dest)
    return dest


@pytest.fixture(scope="module")
def signed(tmp_path_factory) -> dict:
    base = require_bundle()
    tmp = tmp_path_factory.mktemp("trust")
    generate_keypair(tmp / "release.key", tmp / "release.pub")
    key = SigningKey.load(tmp / "release.key")
    return {"pub": tmp / "release.pub", "key": key, "base": base,
            "unsigned": release(base, tmp / "unsigned", "1.0-unsigned", None)}


def test_run_refuses_to_start_on_an_unsigned_bundle(signed, tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "edge_affectsr.cli", "run", "--model", str(signed["unsigned"]),
                           "--trust", str(signed["pub"]), "--max-frames", "1", "--http", "off", "--db", "off"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and last.startswith("error: ") and "not signed" in last, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_sighup_reload_checks_the_signature_again(signed, tmp_path: Path):
    live = release(signed["base"], tmp_path / "live", "1.0-signed", signed["key"])
    proc, log = start_daemon(tmp_path, "--model", str(live), "--trust", str(signed["pub"]), "--http", "off",
                             config=looping_builtin())
    events = tmp_path / "events.jsonl"
    try:
        wait_for(lambda: len(jsonl_events(events)) >= 3, what="3 events", proc=proc, log=log)
        assert "signature checked (trusted: " in log.read_text()

        live.rename(tmp_path / "previous")  # an unsigned release put in place: refused, the signed one runs on
        shutil.copytree(signed["unsigned"], live)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed, keeping bundle bundle-x4 v1.0-signed" in log.read_text(),
                 what="the refused reload", proc=proc, log=log)
        assert "not signed (manifest.sig is missing)" in log.read_text()
        count = len(jsonl_events(events))
        wait_for(lambda: len(jsonl_events(events)) > count + 2, what="events after the refusal", proc=proc, log=log)
        assert {e["model_version"] for e in jsonl_events(events)} == {"1.0-signed"}

        shutil.rmtree(live)  # a signed new version: taken
        release(signed["base"], live, "2.0-signed", signed["key"])
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "now running bundle bundle-x4 v2.0-signed" in log.read_text(), what="the reload",
                 proc=proc, log=log)
        count = len(jsonl_events(events))
        wait_for(lambda: len(jsonl_events(events)) > count + 2, what="events after the reload", proc=proc, log=log)
        assert jsonl_events(events)[-1]["model_version"] == "2.0-signed"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
