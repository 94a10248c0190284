"""ONNX -> TFLite (float32, float16 and full-int8) with onnx2tf 1.29.24, run as a subprocess.

The flags are the ones measured to work (shared/notes/toolchain.md): ``-kat lm`` keeps the
landmark input ``[1, N, 2]`` as it is; ``-cind`` gives real calibration arrays (NHWC) with mean 0
and std 1 (our inputs are already in [0, 1]); per-channel int8 weights; int8 inputs and outputs.
The working directory gets a stand-in for the sample-data file onnx2tf would otherwise try to
download (it looks in the working directory first).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge_affectsr.errors import UserError

log = logging.getLogger(__name__)
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
LOG_TAIL_LINES = 25  # of onnx2tf's log, in the error when it fails


class ConversionError(UserError):
    """onnx2tf failed; the message carries the end of its log."""


def onnx2tf_bin() -> str:
    exe = Path(sys.executable).parent / "onnx2tf"
    found = str(exe) if exe.exists() else shutil.which("onnx2tf")
    if not found:
        raise ConversionError("onnx2tf is not installed: pip install -e '.[convert]'")
    return found


def _identity_norm(ndim: int, channels: int) -> tuple[str, str]:
    """onnx2tf's -cind mean/std arguments shaped to broadcast over an ``ndim`` array."""
    shape = "[" * (ndim - 1)
    close = "]" * (ndim - 1)
    return f"{shape}{[0.0] * channels}{close}".replace(" ", ""), f"{shape}{[1.0] * channels}{close}".replace(" ", "")


def convert(onnx_path: Path, calib: dict[str, np.ndarray], workdir: Path) -> dict[str, Path]:
    """Convert and return ``{"float32", "float16", "int8"}`` -> .tflite paths inside ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    np.save(workdir / SAMPLE_FILE, np.zeros((1, 128, 128, 3), np.float32))
    args = [onnx2tf_bin(), "-i", str(onnx_path), "-o", "tf", "-oiqt", "-qt", "per-channel", "-iqd", "int8", "-oqd", "int8"]
    for name, arr in calib.items():
        np.save(workdir / f"calib_{name}.npy", arr.astype(np.float32))
        mean, std = _identity_norm(arr.ndim, arr.shape[-1])
        args += ["-cind", name, f"calib_{name}.npy", mean, std]
        if arr.ndim == 3:
            args += ["-kat", name]
    log_path = workdir / "onnx2tf.log"
    with open(log_path, "w") as fh:
        proc = subprocess.run(args, cwd=workdir, stdout=fh, stderr=subprocess.STDOUT)
    stem = Path(onnx_path).stem
    out = {
        "float32": workdir / "tf" / f"{stem}_float32.tflite",
        "float16": workdir / "tf" / f"{stem}_float16.tflite",
        "int8": workdir / "tf" / f"{stem}_full_integer_quant.tflite",
    }
    missing = [k for k, p in out.items() if not p.exists()]
    if missing:
        # The work folder is temporary, so the error carries the end of onnx2tf's log itself.
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
        raise ConversionError(f"onnx2tf produced no {', '.join(missing)} model "
                              f"(exit {proc.returncode}); the end of its log:\n{tail}")
    return out
