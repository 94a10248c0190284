"""Where device tests find a real model bundle, and how they copy one to tamper with.

``$EDGE_AFFECTSR_TEST_BUNDLE`` (a bundle folder) wins; otherwise the shipped ``bundle-x4``
(``edge_affectsr.models.resolve_model``). Tests that need a bundle skip cleanly where neither exists.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from edge_affectsr.bundle import MANIFEST
from edge_affectsr.errors import UserError
from edge_affectsr.models import resolve_model

BUNDLE_ENV = "EDGE_AFFECTSR_TEST_BUNDLE"


def find_bundle() -> Path | None:
    """The bundle to test with, or None."""
    env = os.environ.get(BUNDLE_ENV)
    if env:
        path = Path(env).expanduser()
        return path if (path / MANIFEST).is_file() else None
    try:
        path = resolve_model("bundle-x4")
    except UserError:
        return None
    return path if (path / MANIFEST).is_file() else None


def require_bundle() -> Path:
    """The bundle, or skip the calling test."""
    path = find_bundle()
    if path is None:
        pytest.skip(f"no model bundle: set {BUNDLE_ENV} or ship edge_affectsr/models/bundle-x4")
    return path


def copy_bundle(dest: Path) -> Path:
    """A private copy of the bundle at ``dest`` (to tamper with)."""
    return Path(shutil.copytree(require_bundle(), dest))
