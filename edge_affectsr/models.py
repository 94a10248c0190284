"""Shipped models and how every command resolves a model reference.

A reference is either a path (a checkpoint ``.pt``, an ``.onnx`` export, a ``.tflite`` file or a
bundle folder) or the name of a model shipped inside this package (``teacher-x4``, ``student-x4``,
``bundle-x4``, ...).
"""

from __future__ import annotations

from pathlib import Path

from edge_affectsr.errors import UserError

SHIPPED_DIR = Path(__file__).parent / "models"
SHIPPED = {
    "teacher-x4": "teacher-x4.pt",
    "teacher-x4-ablation": "teacher-x4-ablation.pt",  # no graph branch, no expression term
    "student-x4": "student-x4-camera.pt",  # the shipped edge student (convert's input): the camera-robust one
    "bundle-x4": "bundle-x4",  # the device's bundle: student-x4 and student-x4-clean in int8, routed per face
    "bundle-x4-clean": "bundle-x4-clean",  # the earlier bundle of student-x4-clean alone, for comparison
    # trained on the clean protocol only (docs/students.md)
    "student-x4-clean": "student-x4-clean.pt",
    "student-x4-nodistill-clean": "student-x4-nodistill-clean.pt",  # control: the same student, ground truth only
    "student-x4-nograph-clean": "student-x4-nograph-clean.pt",  # control: distilled, no landmark branch
    # fine-tuned on camera-degraded faces (docs/camera.md); the same file as student-x4
    "student-x4-camera": "student-x4-camera.pt",
}


def shipped_models() -> dict[str, Path]:
    """Names of the shipped models that are present in this installation."""
    return {name: SHIPPED_DIR / rel for name, rel in SHIPPED.items() if (SHIPPED_DIR / rel).exists()}


def resolve_model(ref: str | Path) -> Path:
    path = Path(ref).expanduser()
    if path.exists():
        return path
    if str(ref) in SHIPPED:
        target = SHIPPED_DIR / SHIPPED[str(ref)]
        if target.exists():
            return target
        raise UserError(f"shipped model {ref!r} is missing from this installation ({target})")
    names = ", ".join(shipped_models()) or "none"
    raise UserError(f"no model file or shipped model named {str(ref)!r} (shipped: {names})")
