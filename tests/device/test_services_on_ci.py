"""tests/_services.py: a test whose mosquitto or sshd is missing skips on a developer's machine and fails
on CI (CI=true, which .ci/run exports), so a broken install step cannot hide the MQTT and ssh tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
PROBE = """
from _services import service_missing

def test_needs_a_broker():
    service_missing("mosquitto is not installed (apt-get install mosquitto)")
"""


def outcome(tmp_path: Path, ci: str | None) -> str:
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": ci} if ci is not None else {})
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rsf", str(tmp_path / "test_probe.py")],
                          cwd=tmp_path, env={**env, "PYTHONPATH": str(TESTS)}, capture_output=True, text=True, timeout=120)
    return done.stdout


def test_a_missing_service_skips_off_ci_and_fails_on_ci(tmp_path):
    assert "1 skipped" in outcome(tmp_path, None)
    on_ci = outcome(tmp_path, "true")
    assert "1 failed" in on_ci and "CI=true: .ci/run installs it" in on_ci
    assert "export CI=true" in (TESTS.parent / ".ci" / "run").read_text()  # what CI runs
