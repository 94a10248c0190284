"""The ``flash``, ``selftest`` and ``healthcheck`` sub-commands. Light imports only at the top."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from edge_affectsr.cli_args import add_model, add_set, set_overrides

DEFAULT_HEALTH_URL = "http://127.0.0.1:8080/healthz"  # the daemon's default http bind


def _add_trust(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--trust", action="append", metavar="KEY",
                   help=f"{what} (a .pub file, a folder of them, or project: the shipped bundles' key); repeatable")

class Flash:
    """Install a model bundle on a camera: verify every hash here (and with --trust its signature), lock
    the target (one flash at a time; a second fails at once naming the first), copy it to
    <root>/releases/<name>-<version>-<sha>/ on the target (a local folder, or user@host:/folder over
    ssh with keys), run `selftest` there, switch <root>/current atomically, restart --service and
    wait for --health-url; any failure after the switch rolls back to the previous release.
    Keeps the newest --keep releases (never the current or the previous one)."""

    help = "install a bundle on a camera (local folder or user@host:/folder), self-tested, with rollback"
    examples = ("edge-affectsr flash --model out/bundle-x4 --to /media/sdcard/edge-affectsr",
                "edge-affectsr flash --model bundle-x4 --to pi@cam1:/opt/edge-affectsr --service edge-affectsr "
                "--health-url http://127.0.0.1:8080/healthz")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        add_model(p, "the bundle to install: a bundle folder or a shipped bundle's name, e.g. bundle-x4; required",
                  old="BUNDLE", required=True)
        p.add_argument("--to", required=True, metavar="[USER@]HOST:/DIR | /DIR",
                       help="target root, e.g. pi@cam1:/opt/edge-affectsr or /media/sdcard/edge-affectsr; required")
        p.add_argument("--keep", type=int, default=3, help="releases to keep (default: 3; current and previous always stay)")
        p.add_argument("--service", help="systemd unit to restart after the switch (default: restart nothing)")
        p.add_argument("--health-url", help="poll this URL on the target until it answers 200, e.g. "
                                            "http://127.0.0.1:8080/healthz (default: no check)")
        p.add_argument("--health-timeout", type=float, default=60.0, help="seconds to wait for --health-url (default: 60)")
        p.add_argument("--remote-cmd", help="edge-affectsr on the target, e.g. /opt/edge-affectsr/venv/bin/edge-affectsr "
                                            "(default: edge-affectsr over ssh; this Python for a local target)")
        p.add_argument("--ssh-option", action="append", default=[], metavar="OPT",
                       help="extra ssh arguments, repeatable: \"-i ~/.ssh/cam -p 2222\" or Key=Value "
                            "(as ssh -o); BatchMode=yes and ConnectTimeout=10 are always added (default: none)")
        p.add_argument("--selftest-timeout", type=float, default=300.0, help="seconds for the self-test (default: 300)")
        _add_trust(p, "flash only a bundle signed by this public key")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.device.flash.release import FlashOptions, flash  # noqa: PLC0415
        from edge_affectsr.device.flash.ssh import ssh_option_args  # noqa: PLC0415
        from edge_affectsr.models import resolve_model  # noqa: PLC0415

        options = FlashOptions(keep=args.keep, service=args.service, health_url=args.health_url,
                               health_timeout_s=args.health_timeout, remote_cmd=args.remote_cmd,
                               ssh_options=ssh_option_args(args.ssh_option), selftest_timeout_s=args.selftest_timeout,
                               trust=tuple(args.trust or ()))
        result = flash(resolve_model(args.model), args.to, options)
        print(result.summary())
        return 0


class SelfTest:
    """Check a bundle on this machine as the daemon would load it: every sha256, the models load on
    the configured delegate, and the golden input gives the expected output. Prints one line
    (ok: ... / FAIL: ...) and exits 0 or 1; `flash` runs it on the target."""

    help = "verify a bundle, load its models and run its golden input (exit 0/1, one line)"
    examples = ("edge-affectsr selftest --model bundle-x4",
                "edge-affectsr selftest --model /opt/edge-affectsr/current --config /etc/edge-affectsr/device.yaml")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        add_model(p, "the bundle: a bundle folder or a shipped bundle's name, e.g. bundle-x4; required",
                  old="BUNDLE", required=True)
        p.add_argument("--config", type=Path,
                       help="device config: use its interpreter and trust sections (default: none, the defaults)")
        add_set(p, "device config", "interpreter.delegate_order=[cpu]")
        _add_trust(p, "require a signature by this public key (replaces the config's trust.keys)")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.device.flash.selftest import selftest  # noqa: PLC0415

        if not args.verbose:  # delegate fallbacks are expected here: keep the output to one line
            logging.getLogger().setLevel(logging.ERROR)
        ok, line = selftest(args.model, args.config, args.trust, set_overrides(args))
        print(line, flush=True)
        return 0 if ok else 1


class HealthCheck:
    """Poll the daemon's /healthz until it answers 200 (it answers 503 "starting" until the first
    frame). One line, exit 0 when healthy within --timeout, else 1; `flash` runs it on the target."""

    help = "wait until the daemon's /healthz answers 200 (exit 0/1, one line)"
    examples = ("edge-affectsr healthcheck", "edge-affectsr healthcheck http://127.0.0.1:8080/healthz --timeout 10")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("url", nargs="?", default=DEFAULT_HEALTH_URL, help=f"the daemon's /healthz (default: {DEFAULT_HEALTH_URL})")
        p.add_argument("--timeout", type=float, default=60.0, help="seconds (default: 60)")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.device.flash.errors import FlashError  # noqa: PLC0415
        from edge_affectsr.device.flash.health import poll_health  # noqa: PLC0415

        try:
            print(f"ok: {poll_health(args.url, args.timeout)}", flush=True)
            return 0
        except FlashError as e:
            print(f"FAIL: {e}", flush=True)
            return 1
