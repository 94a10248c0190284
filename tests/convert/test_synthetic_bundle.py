"""Conversion end to end without any dataset: the shipped student design (untrained, seeded)
calibrated on variants of the built-in astronaut face (tests/synthetic_faces.py), a real onnx2tf run, real TFLite runtimes,
a real bundle that verifies and that the camera runtime loads and self-tests. (test_convert.py does
the same on real faces where ../shared/data exists.)"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from edge_affectsr.bundle import verify_bundle
from edge_affectsr.convert import detector_int8, fer_tflite, gates
from edge_affectsr.convert.build import build_bundle
from edge_affectsr.convert.formats import FORMATS, ExportContext, third_party_text
from edge_affectsr.errors import UserError
from edge_affectsr.runtime.bundle_models import load_bundle
from device_bundle import converted, make_test_student
from synthetic_faces import face_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def faces() -> Path:
    """Eight calibration photos: the built-in face, cropped, mirrored, turned, relit and recoloured."""
    return face_folder(8)


@pytest.fixture(scope="module")
def built(faces) -> tuple[Path, dict]:
    """The bundle of these faces, built once per test process (test_convert.py shares it where there is no data)."""
    return converted(faces, verify_faces=4)


@pytest.fixture
def reuse_models(built, monkeypatch):
    """Later builds take the fixture's converted models instead of converting again (the onnx2tf
    runs and the critic's TensorFlow conversion are what ``built`` tests; ~35 s saved a build, and
    ~2 min for the int8 detector)."""
    bundle, _ = built
    models = {"onnx": bundle / "sr.onnx", "float16": bundle / "sr_fp16.tflite", "int8": bundle / "sr_int8.tflite"}
    monkeypatch.setattr(ExportContext, "converted", lambda self: models)
    monkeypatch.setattr(fer_tflite, "convert_fer", lambda faces, out: Path(shutil.copy(bundle / "fer_int8.tflite", out)))
    int8_detector = bundle / "face_detection_short_range_int8.tflite"
    monkeypatch.setattr(detector_int8, "convert_detector", lambda calibration, work: int8_detector)


def test_a_bundle_from_the_builtin_face_verifies_and_loads(built):
    out, report = built
    manifest = verify_bundle(out)
    assert list(manifest.models) == [f.key for f in FORMATS if f.available()]  # sr_edgetpu needs edgetpu_compiler
    assert all(g["passed"] for g in report["gates"].values()), report["table"]
    assert set(report["checks"]) == {"edgetpu", "gpu"}
    assert (out / "THIRD_PARTY.md").read_text() == third_party_text(list(FORMATS))
    load_bundle(out)  # the camera runtime verifies it and self-tests the golden face (SelfTestError if off)


@pytest.mark.usefixtures("reuse_models")
def test_jetson_target_bundles_onnx_and_no_fp16(faces, tmp_path):
    out = tmp_path / "bundle"
    report = build_bundle(make_test_student(tmp_path / "s.pt"), faces, out, target="jetson", verify_faces=2, force=True)
    doc = json.loads((out / "manifest.json").read_text())
    assert list(doc["models"]) == ["sr_int8", "sr_onnx", "fer_int8", "face_detector", "face_detector_int8", "face_landmark"]
    assert not (out / "sr_fp16.tflite").exists() and doc["source"]["target"] == "jetson"
    assert {r["format"] for r in doc["verification"]["rows"]} == {"torch-fp32", "int8", "onnx"}
    assert "trtexec" in doc["verification"] and not report["checks"]
    load_bundle(out)  # whatever the target, the camera loads the bundle


@pytest.mark.usefixtures("reuse_models")
def test_a_failing_gate_writes_no_bundle(faces, tmp_path, monkeypatch, caplog):
    strict = tuple(replace(g, threshold=-1.0) if g.name == "int8_psnr" else g for g in gates.GATES)
    monkeypatch.setattr(gates, "GATES", strict)
    out = tmp_path / "bundle"
    with caplog.at_level(logging.INFO, logger="edge_affectsr.convert.formats"), \
            pytest.raises(UserError, match="a verification gate failed; no bundle written") as err:
        build_bundle(make_test_student(tmp_path / "s.pt"), faces, out, target="cpu", verify_faces=2, force=True)
    assert re.search(r"\| int8 PSNR within -1 dB of fp32 \(ai-edge-litert\) \| \*\*NO\*\* \|", str(err.value))
    assert not out.exists() and not list(tmp_path.glob(".bundle.*"))  # nothing written, the staging folder gone
    assert re.findall(r"(\w+): done in", caplog.text) == ["sr_int8", "fer_int8", "face_detector", "face_detector_int8",
                                                          "face_landmark"]


def test_camera_calibration_renders_each_aligned_face_with_the_camera_model(faces, tmp_path):
    """convert --degradation: the calibration LR of each face is the camera model's rendering of the
    same aligned HR crop the device path produced (its landmarks unchanged), seeded per face."""
    import numpy as np

    from edge_affectsr.convert.calibration import CALIB_SEED, load_calibration
    from edge_affectsr.runtime.degradation import PRESETS, degrade_face

    cfg = PRESETS["jpeg"].at_size(24)
    clean = load_calibration(faces, 4, "contours", force=True)
    camera = load_calibration(faces, 4, "contours", force=True, degradation=cfg)
    assert camera.usable == clean.usable == 8
    np.testing.assert_array_equal(camera.hr, clean.hr)
    np.testing.assert_array_equal(camera.lm, clean.lm)
    for i in range(camera.usable):
        np.testing.assert_array_equal(np.round(camera.img[i] * 255).astype(np.uint8), degrade_face(camera.hr[i], cfg, 32, CALIB_SEED, i))
    assert np.abs(camera.img - clean.img).mean() > 0.02


@pytest.mark.usefixtures("reuse_models")
def test_a_routed_bundle_carries_the_clean_model_its_gates_and_a_fitted_router(faces, tmp_path):
    """convert --degradation camera --clean-model: sr_clean_int8 verified under its own gate labels,
    a routing section fitted on the calibration faces, and the runtime opens the pair as one backend."""
    from edge_affectsr.runtime.backend import load_model
    from edge_affectsr.runtime.routing import FEATURES, RoutedBackend

    student = make_test_student(tmp_path / "s.pt")
    report = build_bundle(student, faces, tmp_path / "routed", target="cpu", verify_faces=2, force=True,
                          degradation="camera", clean_model=student, guard_reference=True)
    manifest = verify_bundle(tmp_path / "routed")
    assert manifest.models["sr_clean_int8"].file == "sr_clean_int8.tflite"
    assert any(label.startswith("sr_clean_int8: ") for label in report["gates"])
    routing = manifest.routing
    assert routing.features == list(FEATURES) and routing.fitted_on["faces"] == 8
    assert routing.fitted_on["train_accuracy"] >= 0.9  # 8 sharp faces vs their camera renderings
    reference = manifest.guard_reference  # fitted on the camera-routed ones of those 16 crops
    assert reference.temperature > 0 and 0 < reference.fitted_on["faces"] <= 16 and len(reference.bias) == 7
    assert isinstance(load_model(tmp_path / "routed"), RoutedBackend)


def test_a_clean_model_without_a_camera_degradation_is_refused(faces, tmp_path):
    student = make_test_student(tmp_path / "s.pt")
    with pytest.raises(UserError, match="--clean-model needs --degradation"):
        build_bundle(student, faces, tmp_path / "out", target="cpu", force=True, clean_model=student)
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("reuse_models")
def test_edgetpu_target_carries_the_compiled_model_where_the_compiler_is(faces, tmp_path, monkeypatch):
    """convert --target edgetpu: with edgetpu_compiler on PATH (the stand-in of tests/edgetpu_standin.py)
    the compiled model and the compiler's log are bundle files, hashed, with a models entry and the
    parsed report; without it (the real state of this machine) the bundle says so."""
    from edgetpu_standin import PARTLY_MAPPED, install_standin_compiler, path_without_compiler

    student = make_test_student(tmp_path / "s.pt")
    install_standin_compiler(tmp_path / "bin", PARTLY_MAPPED)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{path_without_compiler()}")
    build_bundle(student, faces, tmp_path / "coral", target="edgetpu", verify_faces=2, force=True)
    manifest = verify_bundle(tmp_path / "coral")
    assert manifest.models["sr_edgetpu"].file == "sr_int8_edgetpu.tflite"
    assert {"sr_int8_edgetpu.tflite", "sr_int8_edgetpu.log"} <= set(manifest.files)
    compiler = manifest.verification["edgetpu"]["compiler"]
    assert (compiler["ops_on_edgetpu"], compiler["ops_on_cpu"], compiler["subgraphs"]) == (40, 1, 1)
    assert load_bundle(tmp_path / "coral").delegate.attempts[0].model == "sr_int8_edgetpu.tflite"  # no Coral here

    monkeypatch.setenv("PATH", path_without_compiler())
    build_bundle(student, faces, tmp_path / "plain", target="edgetpu", verify_faces=2, force=True)
    manifest = verify_bundle(tmp_path / "plain")
    tpu = manifest.verification["edgetpu"]
    assert "sr_edgetpu" not in manifest.models and not any("edgetpu" in f for f in manifest.files)
    assert tpu["compiler"] is None and "edgetpu_compiler was not on PATH" in tpu["compiler_note"]
    assert tpu["ops_total"] > 0 and "ops_on_cpu" in tpu  # the documented-rules report, as before
