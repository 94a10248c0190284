"""Where device tests find a real model bundle, and how they copy one to tamper with.

``$EDGE_AFFECTSR_TEST_BUNDLE`` (a bundle folder) wins; otherwise the shipped ``bundle-x4``
(``edge_affectsr.models.resolve_model``); otherwise one built once per test run by the real
``convert`` pipeline from a small untrained student, calibrated on 24 real faces from the shared
data. Tests that need a bundle skip cleanly where none of these can be had.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
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
        if (path / MANIFEST).is_file():
            return path
    except UserError:
        pass
    return built_bundle()


def make_test_student(path: Path, kind: str = "student") -> Path:
    """An untrained student of the shipped design (``student_x4.yaml``) with a small, smooth
    residual (a plausible output) and a live landmark prior, so conversion sees every op."""
    import torch
    from conftest import shipped_student_model

    from edge_affectsr.distill.archs.student import StudentConfig, StudentSR
    from edge_affectsr.distill.checkpoints import FORMAT, VERSION, save_atomic

    torch.manual_seed(0)
    cfg = StudentConfig(**shipped_student_model())
    model = StudentSR(cfg)
    with torch.no_grad():
        model.tail.weight.mul_(0.05)
        model.prior.proj.weight.normal_(0, 0.05)
    save_atomic({"format": FORMAT, "version": VERSION, "kind": kind, "config": {"model": cfg.model_dump()},
                 "model": model.state_dict(), "iteration": 1, "metrics": {}}, path)
    return path


@functools.lru_cache(maxsize=1)
def built_bundle() -> Path | None:
    """Build a bundle with the real pipeline once per process (needs the shared faces)."""
    from conftest import shared_data_dir

    faces = sorted((shared_data_dir() / "celeba" / "val").glob("*.jpg"))[:24]
    if len(faces) < 24:
        return None
    root = Path(tempfile.mkdtemp(prefix="edge-affectsr-test-bundle-"))
    atexit.register(shutil.rmtree, root, True)
    (root / "calib").mkdir()
    for f in faces:
        shutil.copy(f, root / "calib" / f.name)
    from edge_affectsr.convert.build import build_bundle

    build_bundle(make_test_student(root / "student.pt"), root / "calib", root / "bundle", verify_faces=8, force=True)
    return root / "bundle"


def require_bundle() -> Path:
    """The bundle, or skip the calling test."""
    path = find_bundle()
    if path is None:
        pytest.skip(f"no model bundle: set {BUNDLE_ENV} or ship edge_affectsr/models/bundle-x4")
    return path


def copy_bundle(dest: Path) -> Path:
    """A private copy of the bundle at ``dest`` (to tamper with)."""
    return Path(shutil.copytree(require_bundle(), dest))
