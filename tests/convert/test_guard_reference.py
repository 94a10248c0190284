"""convert/guard_reference.py: the guard's calibrated reference is fitted as specified (it recovers a
known temperature and bias, exactly from probabilities and closely from sampled labels), only on the
faces the router sends to the camera model, and a refit writes a verified bundle the runtime loads."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from edge_affectsr import protocol
from edge_affectsr.assets import FER_CLASSES
from edge_affectsr.builtin_face import builtin_face
from edge_affectsr.bundle import MANIFEST, BundleError, GuardReference, Routing, read_manifest, write_bundle
from edge_affectsr.convert.calibration import FaceSet
from edge_affectsr.convert.guard_reference import fit_vector_scaling, refit_bundle, routed_to_camera
from edge_affectsr.errors import UserError
from edge_affectsr.models import resolve_model
from edge_affectsr.runtime.degradation import PRESETS, degrade_face
from edge_affectsr.runtime.guard_reference import reference_probabilities, softmax
from edge_affectsr.runtime.routing import FEATURES, quality_features

from synthetic_faces import face_folder

TEMPERATURE = 1.8
BIAS = np.array([0.6, -1.2, 0.1, 0.9, -0.2, -0.7, 0.5])  # the fit returns it centred


def readings(n: int, seed: int = 0) -> np.ndarray:
    """``[n, 7]`` critic-like readings, every probability above the fit's floor."""
    p = softmax(np.random.default_rng(seed).normal(0.0, 1.5, (n, len(FER_CLASSES))))
    return (p + 2e-3) / (1 + 7 * 2e-3)


def true_reference(p: np.ndarray) -> np.ndarray:
    return reference_probabilities(GuardReference(temperature=TEMPERATURE, bias=list(BIAS), classes=list(FER_CLASSES)), p)


def test_the_fit_recovers_a_known_temperature_and_bias_from_probabilities():
    p_bic = readings(300)
    temperature, bias = fit_vector_scaling(p_bic, true_reference(p_bic))
    assert temperature == pytest.approx(TEMPERATURE, rel=1e-6)
    np.testing.assert_allclose(bias, BIAS - BIAS.mean(), atol=1e-6)


def test_the_fit_recovers_them_from_labels_drawn_from_the_reference():
    p_bic = readings(20_000, seed=1)
    target = true_reference(p_bic)
    rng = np.random.default_rng(2)
    labels = (target.cumsum(1) > rng.random((len(target), 1))).argmax(1)  # one draw per face
    temperature, bias = fit_vector_scaling(p_bic, np.eye(len(FER_CLASSES))[labels])
    assert temperature == pytest.approx(TEMPERATURE, rel=0.05)
    np.testing.assert_allclose(bias, BIAS - BIAS.mean(), atol=0.1)


def test_the_plain_bicubic_reading_is_the_fit_when_it_is_already_right():
    p_bic = readings(200, seed=3)
    temperature, bias = fit_vector_scaling(p_bic, p_bic)
    assert temperature == pytest.approx(1.0, rel=1e-6) and np.abs(bias).max() < 1e-6


def test_only_the_faces_the_router_sends_to_the_camera_model_are_fitted_on():
    hr = protocol.make_hr(Image.fromarray(builtin_face()))
    camera = PRESETS["camera"].model_copy(update={"clean_p": 0.0})
    sharp, degraded = protocol.make_lr(hr, 4)[None], degrade_face(hr, camera, 32, seed=3, index=0)[None]
    mid = (quality_features(sharp)[0, 0] + quality_features(degraded)[0, 0]) / 2
    routing = Routing(features=list(FEATURES), mean=[mid, 0.0, 0.0], std=[1.0] * 3, weights=[-4.0, 0.0, 0.0], bias=0.0)
    calib = FaceSet(img=sharp / 255.0, lm=np.zeros((1, 4, 2)), hr=hr[None], usable=1, clean=sharp)
    lr, hr_out = routed_to_camera(calib, degraded, routing)
    np.testing.assert_array_equal(lr, degraded)
    np.testing.assert_array_equal(hr_out, hr[None])


def routed_shipped_bundle():
    try:
        path = resolve_model("bundle-x4")
    except UserError:
        pytest.skip("no shipped bundle-x4")
    if read_manifest(path).routing is None:
        pytest.skip("the shipped bundle-x4 is not routed")
    return path


def test_a_refit_writes_a_verified_bundle_with_the_reference_and_nothing_else_changed(tmp_path):
    src = routed_shipped_bundle()
    spec = refit_bundle(src, face_folder(8), tmp_path / "refit", force=True)
    before, after = read_manifest(src), read_manifest(tmp_path / "refit")
    assert after.guard_reference is not None and after.guard_reference.model_dump() == spec
    assert after.guard_reference.classes == list(FER_CLASSES) and after.guard_reference.temperature > 0
    assert 0 < spec["fitted_on"]["faces"] <= 2 * spec["fitted_on"]["calibration_faces"]
    assert after.model_dump(exclude={"guard_reference"}) == before.model_dump(exclude={"guard_reference"})
    with pytest.raises(UserError, match="already exists"):
        refit_bundle(src, face_folder(8), tmp_path / "refit", force=True)


def test_a_reference_with_a_bias_per_class_missing_is_refused(tmp_path):
    stage = tmp_path / "stage"
    shutil.copytree(routed_shipped_bundle(), stage, ignore=shutil.ignore_patterns(MANIFEST, "manifest.sig"))
    doc = read_manifest(routed_shipped_bundle()).model_dump(exclude={"schema_version", "files"})
    doc["guard_reference"] = {"temperature": 2.0, "bias": [0.0] * 6, "classes": list(FER_CLASSES)}
    with pytest.raises(BundleError, match="guard_reference: 6 biases for 7 classes"):
        write_bundle(stage, tmp_path / "bad", doc)
    assert not (tmp_path / "bad").exists()
