"""What the flash tests share: versions of a real bundle, a scriptable /healthz server, and a real
sshd on a loopback port (the ssh target is this machine, reached as another machine would be).
Test modules import the fixtures by name (``from _flash_env import bundles, sshd``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from edge_affectsr.bundle import MANIFEST, SIGNATURE, sha256_file, verify_bundle
from edge_affectsr.device.flash.ssh import ssh_option_args

from _services import service_missing
from device_bundle import require_bundle

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "edge_affectsr.cli"]
REMOTE_CMD = f"{sys.executable} -m edge_affectsr.cli"  # the target is this machine: its edge-affectsr


def with_version(src: Path, dest: Path, version: str) -> Path:
    """An unsigned copy of ``src`` whose manifest says ``version`` (a new release name, every hash still valid)."""
    shutil.copytree(src, dest)
    (dest / SIGNATURE).unlink(missing_ok=True)  # the manifest changes: its signature would no longer hold
    doc = json.loads((dest / MANIFEST).read_text())
    doc["version"] = version
    (dest / MANIFEST).write_text(json.dumps(doc, indent=2))
    return dest


def with_wrong_golden(src: Path, dest: Path) -> Path:
    """golden_sr inverted AND re-hashed in the manifest: verification passes, the self-test cannot."""
    with_version(src, dest, "wrong-golden")
    doc = json.loads((dest / MANIFEST).read_text())
    rel = doc["golden"]["expected_sr"]
    expected = np.load(dest / rel)
    np.save(dest / rel, (255 - expected.astype(np.int16)).astype(expected.dtype))
    doc["files"][rel] = sha256_file(dest / rel)
    (dest / MANIFEST).write_text(json.dumps(doc, indent=2))
    verify_bundle(dest)
    return dest


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    base = require_bundle()
    tmp = tmp_path_factory.mktemp("bundles")
    return {"v1": with_version(base, tmp / "v1", "1.0.0"), "v2": with_version(base, tmp / "v2", "2.0.0"),
            "v3": with_version(base, tmp / "v3", "3.0.0"), "bad": with_wrong_golden(base, tmp / "bad")}


class HealthServer:
    """A real HTTP server answering /healthz like the daemon: 503 {"status": "starting"} for the
    first ``starting`` requests, then 200 {"status": "ok"} (never, with starting=None)."""

    def __init__(self, starting: int | None) -> None:
        self.requests, self.starting = 0, starting
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.requests += 1
                ok = outer.healthy()
                body = json.dumps({"status": "ok" if ok else "starting"}).encode()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/healthz"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def healthy(self) -> bool:
        return self.starting is not None and self.requests > self.starting

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class GateServer(HealthServer):
    """/healthz that answers 503 "starting" until :meth:`open` is called: a flash waiting on it holds
    its target's lock for as long as a test needs."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        super().__init__(starting=None)

    def open(self) -> None:
        self.opened.set()

    def healthy(self) -> bool:
        return self.opened.is_set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    def __init__(self, port: int, key: Path, wrong_key: Path) -> None:
        self.port, self.key, self.wrong_key = port, key, wrong_key

    def option_values(self, key: Path | None = None) -> list[str]:
        """The ``--ssh-option`` values that reach this server."""
        return [f"-i {key or self.key} -p {self.port}", "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null",
                "IdentitiesOnly=yes", "LogLevel=ERROR"]

    def options(self, key: Path | None = None) -> tuple[str, ...]:
        return ssh_option_args(self.option_values(key))

    def to(self, path: Path) -> str:
        import getpass  # noqa: PLC0415

        return f"{getpass.getuser()}@127.0.0.1:{path}"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    sshd_bin = shutil.which("sshd") or ("/usr/sbin/sshd" if os.access("/usr/sbin/sshd", os.X_OK) else None)
    if not (sshd_bin and shutil.which("ssh") and shutil.which("ssh-keygen")):
        service_missing("ssh, sshd or ssh-keygen not installed (apt-get install openssh-server)")
    if not os.path.isdir("/run/sshd"):  # sshd's privilege-separation folder (made by its service unit)
        try:
            os.makedirs("/run/sshd", mode=0o755)
        except OSError as e:
            service_missing(f"sshd needs /run/sshd and it cannot be created here: {e}")
    tmp = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key", "wrong_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / name)], check=True, timeout=30)
    shutil.copy(tmp / "client_key.pub", tmp / "authorized_keys")
    port = free_port()
    (tmp / "sshd_config").write_text(f"""ListenAddress 127.0.0.1
Port {port}
HostKey {tmp / 'host_key'}
AuthorizedKeysFile {tmp / 'authorized_keys'}
PidFile {tmp / 'sshd.pid'}
UsePAM no
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
""")
    log = open(tmp / "sshd.log", "w")
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(tmp / "sshd_config")], stdout=log, stderr=subprocess.STDOUT)
    server = Sshd(port, tmp / "client_key", tmp / "wrong_key")
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                service_missing(f"sshd did not start: {(tmp / 'sshd.log').read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    service_missing("sshd did not listen within 15 s")
                time.sleep(0.1)
        login = subprocess.run(["ssh", *server.options(), "-o", "BatchMode=yes", server.to(tmp).split(":")[0], "true"],
                               capture_output=True, text=True, timeout=30)
        if login.returncode != 0:
            service_missing(f"cannot log in to the test sshd: {login.stderr.strip()[-300:]}")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
