"""Shared test fixtures.

Real images live outside the repository in ``<workspace>/shared/data`` (they may not be
redistributed); ``EDGE_AFFECTSR_DATA`` points elsewhere. Tests that need them skip where absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_ENV = "EDGE_AFFECTSR_DATA"
CONFIGS = Path(__file__).resolve().parents[1] / "distill" / "configs"


def shared_data_dir() -> Path:
    """``$EDGE_AFFECTSR_DATA``, else ``shared/data`` next to the repository checkout."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def shipped_student_model(name: str = "student_x4") -> dict:
    """The ``model:`` section of a shipped student training config (plain data: no torch here)."""
    import yaml

    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["model"]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data directory, or skip the test when it is not available here."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set {DATA_ENV})")
    return path
