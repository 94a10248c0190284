"""The int8 face detector: mediapipe's BlazeFace through tflite2onnx and onnx2tf to full int8
(convert/detector_int8.py), its gates against the float model (convert/detector_gates.py), and the
camera runtime choosing it (detector.precision). The int8 model under test is the one the shared
test bundle was converted with (tests/device_bundle.py: calibrated on built-in-face variants);
the broken one is a real conversion calibrated on blank images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edge_affectsr.bundle import MANIFEST, SIGNATURE, BundleError, verify_bundle, write_bundle
from edge_affectsr.convert import detector_int8
from edge_affectsr.convert.detector_bundle import add_int8_detector
from edge_affectsr.convert.detector_gates import verify_detector
from edge_affectsr.convert.detector_int8 import OUTPUT_BOUNDS, bounded_onnx, convert_detector, float_model
from edge_affectsr.convert.tflite_inspect import inspect_tflite
from edge_affectsr.device.capture.builtin import BuiltinSequence
from edge_affectsr.errors import UserError
from edge_affectsr.runtime.bundle_models import DETECTOR_INT8, detector_file, load_bundle
from edge_affectsr.runtime.detect import DetectorConfig, FaceDetector
from edge_affectsr.runtime.interpreter import load_interpreter
from device_bundle import converted
from synthetic_faces import face_folder

pytestmark = pytest.mark.slow


FACES = 8  # built-in-face variants: the shared test bundle's calibration photos (test_synthetic_bundle.py's too)


@pytest.fixture(scope="module")
def built() -> tuple[Path, dict]:
    """The shared test bundle, converted once per process."""
    return converted(face_folder(FACES), verify_faces=4)


@pytest.fixture(scope="module")
def without_int8(built, tmp_path_factory) -> Path:
    """The test bundle as an older convert wrote it: no face_detector_int8."""
    bundle, _ = built
    stage = tmp_path_factory.mktemp("stage") / "bundle"
    shutil.copytree(bundle, stage, ignore=shutil.ignore_patterns(MANIFEST, SIGNATURE))
    (stage / verify_bundle(bundle).models[DETECTOR_INT8].file).unlink()
    doc = json.loads((bundle / MANIFEST).read_text())
    for key in ("schema_version", "files"):
        doc.pop(key)
    del doc["models"][DETECTOR_INT8]
    return write_bundle(stage, tmp_path_factory.mktemp("old") / "bundle", doc)


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    """A real conversion calibrated on blank (black) images: every activation range fitted to nothing."""
    return convert_detector(np.full((8, 128, 128, 3), -1.0, np.float32), tmp_path_factory.mktemp("broken"))


def test_the_onnx_graph_is_the_float_model_clipped_to_its_bounds(tmp_path):
    onnx = ort.InferenceSession(str(bounded_onnx(float_model(), tmp_path / "d.onnx")))
    tflite = load_interpreter(float_model(), ["cpu"])
    detector = FaceDetector(float_model(), DetectorConfig().whole_frame())
    frame = next(iter(BuiltinSequence(frames=1))).image
    noise = np.random.default_rng(0).uniform(-1, 1, (128, 128, 3)).astype(np.float32)
    for x in (detector.model_input(frame, (0, 0, 640, 480)), detector.model_input(frame, (160, 120, 240, 240)), noise):
        want = tflite.run(**{tflite.input().name: x[None]})
        names = list(OUTPUT_BOUNDS)
        got = dict(zip(names, onnx.run(names, {"input": x[None].transpose(0, 3, 1, 2)})))
        for name, bound in OUTPUT_BOUNDS.items():
            ref = next(v for v in want.values() if v.shape == got[name].shape)
            np.testing.assert_allclose(got[name], np.clip(ref, -bound, bound), atol=1e-3)


def test_the_bundled_detector_is_int8_throughout(built):
    bundle, _ = built
    info = inspect_tflite(bundle / verify_bundle(bundle).models[DETECTOR_INT8].file)
    assert [t.dtype for t in info.inputs + info.outputs] == ["int8"] * 3
    assert [t.shape for t in info.inputs] == [(1, 128, 128, 3)]
    assert sorted(t.shape for t in info.outputs) == [(1, 896, 1), (1, 896, 16)]
    produced = {i for op in info.ops for i in op.outputs}
    assert {info.tensors[i].dtype for i in produced} == {"int8"}  # every activation
    conv_weights = {info.tensors[op.inputs[1]].dtype for op in info.ops if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D")}
    assert conv_weights == {"int8"} and "float32" not in {t.dtype for t in info.tensors.values()}
    assert "DEQUANTIZE" not in info.op_counts() and "QUANTIZE" not in info.op_counts()


def test_the_bundle_records_the_detector_gates_and_they_passed(built):
    bundle, report = built
    detector_gates = {k: g for k, g in report["gates"].items() if k.startswith("int8 detector")}
    assert len(detector_gates) == 7 and all(g["passed"] for g in detector_gates.values()), report["table"]
    manifest = verify_bundle(bundle)
    assert set(manifest.verification["detector"]["truth"]) == {"16", "24", "32"}
    assert "## face_detector_int8 against face_detector" in (bundle / "report.md").read_text()


def test_the_runtime_picks_int8_and_finds_the_builtin_clips_face(built):
    bundle, _ = built
    loaded = load_bundle(bundle, detector=DetectorConfig(tiles_per_call=None))  # every tile every frame
    assert loaded.detector_file.name == "face_detection_short_range_int8.tflite"
    assert loaded.detector.model.input().dtype == np.int8
    seq = BuiltinSequence(frames=30)
    found = 0
    for frame in seq:
        x0, y0, x1, y1 = seq.face_box(frame.index)
        dets = loaded.detector.detect(frame.image)
        centres = [((d.bbox[0] + d.bbox[2]) / 2, (d.bbox[1] + d.bbox[3]) / 2) for d in dets]
        found += any(x0 < cx < x1 and y0 < cy < y1 for cx, cy in centres)
        assert len(dets) <= 1
    assert found >= 27
    floating = load_bundle(bundle, detector=DetectorConfig(precision="float"), self_test=False)
    assert floating.detector_file.name == "face_detection_short_range.tflite"


def test_int8_precision_needs_the_model_and_auto_falls_back_to_float(without_int8):
    manifest = verify_bundle(without_int8)
    assert detector_file(without_int8, manifest, "auto").name == "face_detection_short_range.tflite"
    with pytest.raises(BundleError, match="detector.precision is int8 but the bundle has no face_detector_int8"):
        load_bundle(without_int8, detector=DetectorConfig(precision="int8"), self_test=False)


def test_a_broken_detector_fails_its_gates_and_no_bundle_is_written(without_int8, broken, tmp_path, monkeypatch):
    faces = face_folder(FACES)
    gates = verify_detector({"face_detector": float_model(), DETECTOR_INT8: broken}, faces)["gates"]
    assert not all(g["passed"] for g in gates.values())
    monkeypatch.setattr(detector_int8, "convert_detector", lambda calibration, work: broken)
    with pytest.raises(UserError, match="an int8 detector gate failed; no bundle written"):
        add_int8_detector(without_int8, faces, tmp_path / "out")
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_adding_the_detector_to_an_older_bundle(built, without_int8, tmp_path, monkeypatch):
    bundle, faces = built[0], face_folder(FACES)
    good = bundle / verify_bundle(bundle).models[DETECTOR_INT8].file
    monkeypatch.setattr(detector_int8, "convert_detector", lambda calibration, work: good)
    gates = add_int8_detector(without_int8, faces, tmp_path / "new")
    assert all(g["passed"] for g in gates.values())
    assert load_bundle(tmp_path / "new").detector_file.name == good.name
    assert "face_detection_short_range_int8.tflite: converted" in (tmp_path / "new" / "THIRD_PARTY.md").read_text()
