"""Conversion end to end: a real onnx2tf run, real TFLite interpreters, a real bundle, calibrated on
real faces where ../shared/data is and on built-in-face variants elsewhere (device_bundle.calibration_faces)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge_affectsr.bundle import BundleError, verify_bundle
from edge_affectsr.convert.build import build_bundle
from edge_affectsr.convert.calibration import CalibrationError, load_calibration
from edge_affectsr.convert.edgetpu import edgetpu_report
from edge_affectsr.convert.tflite_inspect import inspect_tflite
from edge_affectsr.distill.checkpoints import CheckpointError
from edge_affectsr.errors import UserError
from edge_affectsr.runtime.interpreter import available_runtimes
from edge_affectsr.runtime.sr import TFLiteSR

from device_bundle import calibration_faces, converted, make_test_student

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def calib_dir():
    return calibration_faces()


@pytest.fixture(scope="module")
def bundle(calib_dir):
    """Built once per test process and shared (read-only): tests copy it to tamper with it."""
    return converted(calib_dir, verify_faces=4)


def test_bundle_is_complete_and_verifies(bundle):
    out, report = bundle
    manifest = verify_bundle(out)
    for name in ("sr_int8.tflite", "sr_fp16.tflite", "sr.onnx", "fer_int8.tflite", "face_detection_short_range.tflite",
                 "face_landmark.tflite", "golden_lr.npy", "golden_lm.npy", "golden_sr.npy", "THIRD_PARTY.md"):
        assert (out / name).is_file(), name
        assert name in manifest.files
    assert all(g["passed"] for g in report["gates"].values()), report["table"]
    assert not list(out.parent.glob(".bundle.*"))  # the staging folder is gone


def test_int8_model_is_full_integer_and_small(bundle):
    out, _ = bundle
    info = inspect_tflite(out / "sr_int8.tflite")
    assert {t.dtype for t in info.inputs + info.outputs} == {"int8"}
    assert info.outputs[0].shape == (1, 128, 128, 3)
    assert info.size_bytes <= 150 * 1024
    assert "BATCH_MATMUL" not in info.op_counts()
    # An output clip becomes MINIMUM + RELU, which XNNPACK leaves on the reference kernels (a third of the
    # model's CPU time): the exported graph ends in the 1x1 merge conv and DEPTH_TO_SPACE (convert/export.py).
    assert [op.name for op in info.ops[-2:]] == ["CONV_2D", "DEPTH_TO_SPACE"]
    assert not {"MINIMUM", "MAXIMUM", "RELU"} & set(info.op_counts())


def test_edgetpu_rules_map_all_but_depth_to_space(bundle):
    out, _ = bundle
    tpu = edgetpu_report(inspect_tflite(out / "sr_int8.tflite"))
    assert [o["op"] for o in tpu["ops_on_cpu"]] == ["DEPTH_TO_SPACE"]
    fp16 = edgetpu_report(inspect_tflite(out / "sr_fp16.tflite"))
    assert fp16["ops_mapped"] == 0 and "not 8-bit" in fp16["ops_on_cpu"][0]["why_cpu"] + fp16["ops_on_cpu"][1]["why_cpu"]


def test_golden_output_reproduces_on_every_runtime(bundle):
    """The TFLite builds round some int8 kernels differently: a level here and there, compounding
    through the layers to 3 levels on a few pixels (tflite-runtime, built-in-face calibration)."""
    out, _ = bundle
    lr, lm, expected = (np.load(out / f) for f in ("golden_lr.npy", "golden_lm.npy", "golden_sr.npy"))
    for rt in available_runtimes():
        got = TFLiteSR.open(out / "sr_int8.tflite", rt, 1)(lr, lm)
        diff = np.abs(got.astype(int) - expected.astype(int))
        assert diff.max() <= 3 and (diff <= 1).mean() >= 0.99, (rt, np.bincount(diff.ravel()))


def test_tampered_and_newer_bundles_are_refused(bundle, tmp_path):
    out, _ = bundle
    copy = shutil.copytree(out, tmp_path / "b")
    data = bytearray((copy / "sr_int8.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "sr_int8.tflite").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sr_int8.tflite"):
        verify_bundle(copy)
    manifest = json.loads((out / "manifest.json").read_text())
    newer = shutil.copytree(out, tmp_path / "c")
    (newer / "manifest.json").write_text(json.dumps(manifest | {"schema_version": 99}))
    with pytest.raises(BundleError, match="newer"):
        verify_bundle(newer)


def test_existing_output_and_thin_calibration_are_errors(calib_dir, tmp_path):
    ckpt = make_test_student(tmp_path / "s.pt")
    (tmp_path / "exists").mkdir()
    with pytest.raises(UserError, match="already exists"):
        build_bundle(ckpt, calib_dir, tmp_path / "exists")
    with pytest.raises(CalibrationError, match="need 200"):
        load_calibration(calib_dir, 4, "contours")
    with pytest.raises(CheckpointError, match="teacher"):
        build_bundle(make_test_student(tmp_path / "t.pt", kind="teacher"), calib_dir, tmp_path / "new")
    assert not (tmp_path / "new").exists()
