"""Quality routing: the features tell a sharp LR face from a camera rendering of it, a routed bundle
sends each face to the model the router picks (bit for bit what that model gives alone), and a
routing section without its second model is refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from edge_affectsr import protocol
from edge_affectsr.builtin_face import builtin_face
from edge_affectsr.bundle import BundleError, Routing, write_bundle
from edge_affectsr.models import resolve_model
from edge_affectsr.runtime.backend import load_model
from edge_affectsr.runtime.bundle_models import load_bundle
from edge_affectsr.runtime.degradation import PRESETS, degrade_face
from edge_affectsr.runtime.routing import FEATURES, RoutedBackend, degraded_probability, quality_features


def faces() -> tuple[np.ndarray, np.ndarray]:
    """The built-in face's protocol LR (sharp) and a camera rendering of it (lens blur, noise, JPEG), ``[1, 32, 32, 3]``."""
    hr = protocol.make_hr(Image.fromarray(builtin_face()))
    camera = PRESETS["camera"].model_copy(update={"clean_p": 0.0})
    return protocol.make_lr(hr, 4)[None], degrade_face(hr, camera, 32, seed=3, index=0)[None]


def test_features_are_lower_for_the_camera_rendering():
    sharp, degraded = faces()
    f_sharp, f_degraded = quality_features(sharp)[0], quality_features(degraded)[0]
    assert quality_features(np.concatenate([sharp, degraded])).shape == (2, len(FEATURES))
    assert f_degraded[0] < f_sharp[0] - 0.5  # less Laplacian energy relative to the face's contrast
    assert f_degraded[1] < f_sharp[1]  # less of the spectrum in the high band


def test_features_ignore_brightness_and_contrast():
    sharp, _ = faces()
    dimmer = np.clip(sharp.astype(np.float32) * 0.6 + 20, 0, 255).astype(np.uint8)
    np.testing.assert_allclose(quality_features(dimmer), quality_features(sharp), atol=0.1)


def midpoint_routing() -> Routing:
    """A router on the Laplacian feature alone, its threshold half way between the two test faces."""
    sharp, degraded = faces()
    mid = (quality_features(sharp)[0, 0] + quality_features(degraded)[0, 0]) / 2
    return Routing(features=list(FEATURES), mean=[mid, 0.0, 0.0], std=[1.0, 1.0, 1.0], weights=[-4.0, 0.0, 0.0], bias=0.0)


def routed_bundle(tmp_path, routing: Routing | None, with_clean: bool = True):
    """The shipped bundle plus its fp16 SR model as ``sr_clean_int8`` (a different model, so the
    route taken shows in the output) and a routing section."""
    src = resolve_model("bundle-x4")
    stage = tmp_path / "stage"
    shutil.copytree(src, stage)
    doc = json.loads((stage / "manifest.json").read_text())
    (stage / "manifest.json").unlink()
    for extra in ("manifest.sig",):
        (stage / extra).unlink(missing_ok=True)
    doc.pop("files"), doc.pop("schema_version")
    (stage / "sr_clean_int8.tflite").unlink(missing_ok=True)
    doc["models"].pop("sr_clean_int8", None)
    if with_clean:
        shutil.copy(stage / "sr_fp16.tflite", stage / "sr_clean_int8.tflite")
        doc["models"]["sr_clean_int8"] = doc["models"]["sr_fp16"] | {"file": "sr_clean_int8.tflite"}
    doc["routing"] = routing.model_dump() if routing else None
    return write_bundle(stage, tmp_path / "routed", doc)


def test_a_routed_bundle_sends_each_face_to_the_model_the_router_picks(tmp_path):
    out = routed_bundle(tmp_path, midpoint_routing())
    backend = load_model(out)
    assert isinstance(backend, RoutedBackend)
    sharp, degraded = faces()
    lr = np.concatenate([sharp, degraded, sharp])
    landmarks = np.full((3, 478, 2), 0.5, np.float32)
    found = np.zeros(3, bool)
    sr = backend(lr, landmarks, found)
    np.testing.assert_array_equal(backend.last_routes, [False, True, False])
    np.testing.assert_array_equal(sr[[0, 2]], backend.clean(lr[[0, 2]], landmarks[[0, 2]], found[[0, 2]]))
    np.testing.assert_array_equal(sr[1], backend.degraded(lr[1:2], landmarks[1:2], found[1:2])[0])
    assert np.abs(sr[0].astype(int) - backend.degraded(lr[:1], landmarks[:1], found[:1])[0]).max() > 0  # the routes differ
    np.testing.assert_allclose(degraded_probability(backend.spec, lr) >= 0.5, [False, True, False])


def test_the_device_loads_a_routed_bundle_and_self_tests_its_primary_model(tmp_path):
    bundle = load_bundle(routed_bundle(tmp_path, midpoint_routing()))
    assert isinstance(bundle.sr, RoutedBackend)
    assert bundle.self_test().passed


def test_the_shipped_bundle_is_routed_and_the_clean_only_bundle_is_not():
    from edge_affectsr.runtime.backend import TFLiteBackend

    assert isinstance(load_model("bundle-x4"), RoutedBackend)
    assert isinstance(load_model("bundle-x4-clean"), TFLiteBackend)


def test_routing_without_its_clean_model_is_refused(tmp_path):
    out = routed_bundle(tmp_path, midpoint_routing(), with_clean=False)
    with pytest.raises(BundleError, match="sr_clean_int8"):
        load_model(out)


def test_the_daemon_pipeline_names_the_model_each_face_went_to(tmp_path):
    """The built-in clip through the device pipeline with a routed bundle: every face event says
    which SR model ran (``sr_model``), as the router decided on that face's LR crop."""
    from edge_affectsr.device.capture.builtin import BuiltinSequence
    from edge_affectsr.device.inference.pipeline import EXTRA_COUNTERS, Pipeline
    from edge_affectsr.device.reporting.stats import Stats

    routing = midpoint_routing()
    bundle = load_bundle(routed_bundle(tmp_path, routing))
    pipe = Pipeline(bundle, stats=Stats(extra_counters=EXTRA_COUNTERS))
    events, lrs = [], []
    for frame in list(BuiltinSequence(frames=12).frames()):
        for face in pipe.process(frame, "builtin").faces:
            events.append(face.event)
            lrs.append(face.aligned.lr)
    assert events, "the built-in clip gave no face"
    expected = ["camera" if p >= routing.threshold else "clean" for p in degraded_probability(routing, np.stack(lrs))]
    assert [e.sr_model for e in events] == expected
