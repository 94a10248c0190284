"""Where device tests find a real model bundle, and how they copy one to tamper with.

``$EDGE_AFFECTSR_TEST_BUNDLE`` (a bundle folder) wins; otherwise the shipped ``bundle-x4``
(``edge_affectsr.models.resolve_model``); otherwise one built once per test run by the real
``convert`` pipeline from a small untrained student, calibrated on 24 real faces from the shared
data, or on faces made from the built-in one (tests/synthetic_faces.py) where there is none.
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


def built_bundle() -> Path:
    """A bundle built with the real pipeline, calibrated on :func:`calibration_faces`."""
    return converted(calibration_faces(), verify_faces=4)[0]


def calibration_faces() -> Path:
    """The 8 built-in-face variants of tests/synthetic_faces.py (enough for the int8 calibration),
    with or without the shared data: every test bundle of a process is then one conversion
    (test_convert, test_synthetic_bundle, test_detector_int8 and the device tests share it), and the
    tests behave the same on a machine without ../shared/data. The shipped bundle's real-face
    calibration is checked by its own gates (``make bundle-x4``) and its golden output tests."""
    from synthetic_faces import face_folder

    return face_folder(8)


@functools.lru_cache(maxsize=None)
def converted(faces: Path, verify_faces: int) -> tuple[Path, dict]:
    """(bundle, build report) of the test student converted once per process and calibration
    folder: the onnx2tf run costs ~35 s, so modules that need the same bundle share it. Read-only."""
    from edge_affectsr.convert.build import build_bundle

    root = Path(tempfile.mkdtemp(prefix="edge-affectsr-test-bundle-"))
    atexit.register(shutil.rmtree, root, True)
    report = build_bundle(make_test_student(root / "student.pt"), faces, root / "bundle", verify_faces=verify_faces,
                          force=True)
    return root / "bundle", report


def require_bundle() -> Path:
    """The bundle, or skip the calling test."""
    path = find_bundle()
    if path is None:
        pytest.skip(f"no model bundle: set {BUNDLE_ENV} or ship edge_affectsr/models/bundle-x4")
    return path


def copy_bundle(dest: Path) -> Path:
    """A private copy of the bundle at ``dest`` (to tamper with)."""
    return Path(shutil.copytree(require_bundle(), dest))
