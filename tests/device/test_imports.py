"""The device side (``edge_affectsr.device`` and the shared runtime layer) must run without torch and
TensorFlow (and without mediapipe or picamera2 unless asked): a device install has none of them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Every module of the device packages, found on disk (the repo folder -> its installed name).
DEVICE_PACKAGES = {"device": "edge_affectsr.device", "edge_affectsr/runtime": "edge_affectsr.runtime"}


def device_modules() -> list[str]:
    names = []
    for folder, package in DEVICE_PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            names.append(".".join((package, *parts[:-1])) if parts[-1] == "__init__" else ".".join((package, *parts)))
    return names


CHECK = """
import importlib, sys
import numpy as np
for name in sys.argv[1:]:
    importlib.import_module(name)
from edge_affectsr.runtime.detect import DetectorConfig, FaceDetector, mediapipe_model_path
# find the model without importing mediapipe, then load it: the runtime is imported lazily
FaceDetector(mediapipe_model_path("face_detection_short_range.tflite"), DetectorConfig().whole_frame()).detect(np.zeros((48, 64, 3), np.uint8))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "tensorflow", "mediapipe", "picamera2", "keras"))
assert not heavy, heavy
print("ok", len(sys.argv) - 1)
"""


def test_every_device_module_is_found():
    modules = device_modules()
    assert "edge_affectsr.device" in modules and "edge_affectsr.device.inference.pipeline" in modules
    assert len(modules) > 20


def test_importing_device_pulls_in_no_torch_or_tensorflow():
    modules = device_modules()
    done = subprocess.run([sys.executable, "-c", CHECK, *modules], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"ok {len(modules)}"
