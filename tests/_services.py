"""Tests that need an outside program (mosquitto, sshd) skip where it is missing, but fail on CI.

Why: .ci/run installs both, so on CI a missing one means a broken install step, and a skip there
would hide every MQTT and ssh-flash test behind a green run. CI runs with ``CI=true`` (.ci/run
exports it too); a developer's machine without the program still skips, naming what to install.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def service_missing(reason: str) -> NoReturn:
    """Skip the test for ``reason``; on CI, fail it instead."""
    if on_ci():
        pytest.fail(f"{reason} (CI=true: .ci/run installs it, so a missing one is a failure, not a skip)")
    pytest.skip(reason)
