"""The guard's calibrated reference (edge_affectsr/runtime/guard_reference.py) on the device: used for
``plausible`` and ``kl`` only on faces routed to the camera model, recorded as ``reference`` in the
verdict, and a bundle without one judged exactly as before. Real critic, real routed bundle, the
built-in face (no data set): pasted large and sharp, it is routed to the clean model; rendered as a
32 px lens-blurred face crop in a frame (``camera-eval --small lens:32``), to the camera one."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from edge_affectsr.builtin_face import builtin_face
from edge_affectsr.bundle import MANIFEST, BundleError, GuardReference, read_manifest, write_bundle
from edge_affectsr.device.capture.builtin import gradient_background
from edge_affectsr.device.capture.frame import Frame
from edge_affectsr.device.inference.guard import ExpressionGuard, GuardConfig, landmark_verdict
from edge_affectsr.device.inference.pipeline import EXTRA_COUNTERS, Pipeline, PipelineConfig
from edge_affectsr.device.reporting.stats import Stats
from edge_affectsr.device.service.camera_small import SMALL_MIN_FACE_PX, SmallFaces, stage
from edge_affectsr.errors import UserError
from edge_affectsr.metrics import kl_divergence
from edge_affectsr.models import resolve_model
from edge_affectsr.runtime.bundle_models import load_bundle
from edge_affectsr.runtime.critic import FER_CLASSES
from edge_affectsr.runtime.guard_reference import reference_probabilities
from edge_affectsr.runtime.interpreter import InterpreterConfig

REFERENCE = GuardReference(temperature=3.0, bias=[0.4, -2.0, -0.3, 0.9, 0.6, -0.5, 0.9], classes=list(FER_CLASSES))
CPU = InterpreterConfig(delegate_order=["cpu"])
SMALL = SmallFaces.parse("lens:32", tiles=(8, 6))  # index 1 of its draws: routed to the camera model (P 0.99)


@pytest.fixture(scope="module")
def routed_bundles(tmp_path_factory):
    """(the shipped routed bundle as it is, the same with :data:`REFERENCE` in its manifest), loaded."""
    try:
        src = resolve_model("bundle-x4")
    except UserError:
        pytest.skip("no shipped bundle-x4")
    manifest = read_manifest(src)
    if manifest.routing is None:
        pytest.skip("the shipped bundle-x4 is not routed")
    root = tmp_path_factory.mktemp("guard-reference")
    stage = root / "stage"
    shutil.copytree(src, stage, ignore=shutil.ignore_patterns(MANIFEST, "manifest.sig"))
    doc = manifest.model_dump(exclude={"schema_version", "files"}) | {"guard_reference": REFERENCE.model_dump()}
    out = write_bundle(stage, root / "with-reference", doc)
    detector = SMALL.detector_config()
    return (load_bundle(src, CPU, detector, self_test=False), load_bundle(out, CPU, detector, self_test=False))


def sharp_frame() -> np.ndarray:
    """The built-in face pasted 160 px wide into a frame."""
    frame = gradient_background(640, 480)
    frame[100:260, 200:360] = cv2.resize(cv2.cvtColor(builtin_face(), cv2.COLOR_RGB2BGR), (160, 160),
                                         interpolation=cv2.INTER_AREA)
    return frame


def camera_frame() -> np.ndarray:
    """The built-in face as a small, lens-blurred camera face in a frame."""
    return stage(Image.fromarray(builtin_face()), SMALL, 1).frame_bgr


def only_face(bundle, frame: np.ndarray):
    """The largest face the pipeline upscaled in ``frame`` (the 8x6 tiles may find a large face twice)."""
    faces = Pipeline(bundle, PipelineConfig(min_face_px=SMALL_MIN_FACE_PX)).process(Frame(0, 0.0, frame)).faces
    assert faces
    return max(faces, key=lambda f: f.event.bbox[2] - f.event.bbox[0])


def test_the_pipeline_uses_the_calibrated_reference_only_on_camera_routed_faces(routed_bundles):
    plain, calibrated = routed_bundles
    for frame, route in ((sharp_frame(), "clean"), (camera_frame(), "camera")):
        before, after = only_face(plain, frame), only_face(calibrated, frame)
        assert before.event.sr_model == after.event.sr_model == route
        assert before.event.guard.reference == "bicubic"  # no guard_reference: as before
        np.testing.assert_array_equal(before.verdict.p_reference, before.verdict.p_bicubic)
        if route == "clean":
            assert after.event.guard == before.event.guard and after.event.to_dict()["guard"]["reference"] == "bicubic"
            continue
        p_ref = reference_probabilities(REFERENCE, after.verdict.p_bicubic)
        g = after.event.guard
        assert g.reference == "calibrated" and after.event.to_dict()["guard"]["reference"] == "calibrated"
        np.testing.assert_allclose(after.verdict.p_reference, p_ref)
        assert g.reference_prob == pytest.approx(p_ref[np.argmax(after.verdict.p_sr)])
        assert g.kl == pytest.approx(kl_divergence(p_ref[None], after.verdict.p_sr[None]))
        assert g.kl != pytest.approx(before.event.guard.kl)  # the reference changed the measurement


def test_a_reference_that_supports_the_sr_reading_turns_a_failure_into_a_pass(routed_bundles):
    plain, _ = routed_bundles
    face = only_face(plain, camera_frame())
    lr, sr = face.aligned.lr, face.sr
    strict = GuardConfig(min_reference_prob=0.99, kl_max=1e3, landmarks=False, camera_faces="all_checks")
    top = int(np.argmax(face.verdict.p_sr))
    supportive = GuardReference(temperature=1.0, bias=[20.0 if c == top else 0.0 for c in range(7)],
                                classes=list(FER_CLASSES))
    guard = ExpressionGuard(plain.critic, None, strict, supportive)
    on_camera, on_clean = guard.batch([lr, lr], [sr, sr], [face.aligned.landmarks_full] * 2, [True, True],
                                      camera=[True, False])
    assert on_camera.guard.preserved and on_camera.guard.reference == "calibrated"
    assert not on_clean.guard.preserved and on_clean.guard.reference == "bicubic"
    unrouted = guard(lr, sr, face.aligned.landmarks_full)  # no route given: bicubic, as before
    assert unrouted.guard == on_clean.guard
    by_landmarks = ExpressionGuard(plain.critic, None, strict.model_copy(update={"camera_faces": "landmarks"}), supportive)
    assert by_landmarks(lr, sr, face.aligned.landmarks_full, camera=True).guard.verdict == "unverified"  # no check left


def test_the_pipeline_judges_a_camera_routed_face_by_its_landmarks_and_counts_the_verdicts(routed_bundles):
    """The built-in face as a small camera face, through the routed bundle's pipeline: the device's
    verdict is the landmark check's (unverified on a keypoint face), counted under guard_<verdict>;
    with ``camera_faces: all_checks`` it is today's rule."""
    plain, _ = routed_bundles
    stats = Stats(extra_counters=EXTRA_COUNTERS)
    small = PipelineConfig(min_face_px=SMALL_MIN_FACE_PX)
    faces = Pipeline(plain, small, stats=stats).process(Frame(0, 0.0, camera_frame())).faces
    assert faces and all(f.event.sr_model == "camera" for f in faces)
    for face in faces:
        g = face.event.guard
        assert g.verdict == landmark_verdict(g.landmark_error, GuardConfig())
        assert (g.verdict == "unverified") == (face.event.landmarks == "keypoints")
    counters = stats.snapshot()["counters"]
    for verdict in ("preserved", "changed", "unverified"):
        assert counters[f"guard_{verdict}"] == sum(f.event.guard.verdict == verdict for f in faces)
    old = Pipeline(plain, small, GuardConfig(camera_faces="all_checks")).process(Frame(0, 0.0, camera_frame())).faces
    for face in old:
        g = face.event.guard
        old_rule = g.reference_prob >= 0.15 and g.kl <= 1.0 and not g.landmark_error > 0.10
        assert g.verdict == ("preserved" if old_rule else "changed")


def test_a_reference_fitted_for_other_classes_is_refused(routed_bundles):
    plain, _ = routed_bundles
    other = REFERENCE.model_copy(update={"classes": list(reversed(FER_CLASSES))})
    with pytest.raises(BundleError, match="guard_reference is for the classes"):
        ExpressionGuard(plain.critic, None, GuardConfig(), other)
