"""device/ must run without torch and TensorFlow (and without mediapipe or picamera2 unless asked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(f"device.{p.stem}" for p in (ROOT / "device").glob("*.py") if p.stem != "__init__")

CHECK = f"""
import sys
import {", ".join(MODULES)}
import numpy as np
from device.detect import FaceDetector, mediapipe_model_path
# find the model without importing mediapipe, then load it: the runtime is imported lazily
FaceDetector(mediapipe_model_path("face_detection_short_range.tflite")).detect(np.zeros((48, 64, 3), np.uint8))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "tensorflow", "mediapipe", "picamera2", "keras"))
assert not heavy, heavy
print("ok", len(sys.modules))
"""


def test_device_modules_are_all_covered():
    assert {"device.interpreter", "device.detect", "device.landmarks", "device.track", "device.capture",
            "device.builtin", "device.events", "device.store", "device.jsonl", "device.stats", "device.http_api",
            "device.mqtt", "device.crops", "device.bundle_loader", "device.critic", "device.align",
            "device.guard", "device.roi_detect", "device.pipeline", "device.settings", "device.sinks",
            "device.daemon", "device.bench", "device.commands",
            "device.flash", "device.flash_command"} <= set(MODULES)


def test_importing_device_pulls_in_no_torch_or_tensorflow():
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok")
