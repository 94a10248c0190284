"""device/inference/pipeline.py with several faces a frame: one SR and one critic call for all of them,
the face budget, the guard's landmark schedule and per-track smoothing in the events. Real bundle, real
frames: the built-in face pasted six times (two rows of three) into a 640x480 frame."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest

from edge_affectsr.builtin_face import builtin_face
from edge_affectsr.device.capture.builtin import gradient_background
from edge_affectsr.device.capture.frame import Frame
from edge_affectsr.device.inference.budget import BudgetConfig
from edge_affectsr.device.inference.guard import GuardConfig
from edge_affectsr.device.inference.pipeline import EXTRA_COUNTERS, Pipeline
from edge_affectsr.device.inference.smoothing import SmoothingConfig
from edge_affectsr.device.reporting.metrics import Metrics
from edge_affectsr.device.reporting.stats import Stats
from edge_affectsr.runtime.bundle_models import load_bundle
from edge_affectsr.runtime.detect import DetectorConfig
from edge_affectsr.runtime.interpreter import InterpreterConfig

from device_bundle import require_bundle

SIDE = 140  # pasted square; BlazeFace finds it with the 3x2 tiles
ORIGINS = [(30 + 210 * c, 40 + 230 * r) for r in range(2) for c in range(3)]


class CountingSR:
    """The bundle's SR backend, counting calls and the faces in each."""

    def __init__(self, real) -> None:
        self.real, self.calls = real, []
        self.lr_size = real.lr_size

    def __call__(self, lr, landmarks, found):
        self.calls.append(len(lr))
        return self.real(lr, landmarks, found)


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(require_bundle(), InterpreterConfig(delegate_order=["cpu"]),
                       DetectorConfig(tiles=(3, 2), tiles_per_call=None), self_test=False)


def six_faces(shift: int = 0) -> np.ndarray:
    image = gradient_background(640, 480)
    face = cv2.resize(cv2.cvtColor(builtin_face(), cv2.COLOR_RGB2BGR), (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    for x, y in ORIGINS:
        image[y:y + SIDE, x + shift:x + shift + SIDE] = face
    return image


def pipeline(bundle, **configs) -> tuple[Pipeline, CountingSR]:
    sr = CountingSR(bundle.sr)
    return Pipeline(dataclasses.replace(bundle, sr=sr), stats=Stats(extra_counters=EXTRA_COUNTERS), **configs), sr


def test_all_faces_of_a_frame_go_through_one_sr_call_with_the_bytes_of_one_call_each(bundle):
    pipe, sr = pipeline(bundle, budget=BudgetConfig(max_faces=None))
    result = pipe.process(Frame(0, 0.0, six_faces()), "crowd")
    assert len(result.events) == 6 and sr.calls == [6], result.counts
    for face in result.faces:
        one = bundle.sr(face.aligned.lr[None], face.aligned.landmarks_full[None], np.array([face.aligned.found]))[0]
        assert np.array_equal(face.sr, one)
        alone = pipe.guard(face.aligned.lr, face.sr, face.aligned.landmarks_full, face.aligned.found)
        assert np.array_equal(alone.p_sr, face.verdict.p_sr) and np.array_equal(alone.p_bicubic, face.verdict.p_bicubic)
    assert {"sr", "guard"} <= set(result.faces[0].event.latency_ms)
    sr_share = [f.event.latency_ms["sr"] for f in result.faces]
    assert max(sr_share) == min(sr_share) == pytest.approx(result.latency_ms["sr"] / 6, abs=1e-3)


def test_the_budget_skips_faces_and_the_stale_ones_go_next(bundle):
    pipe, sr = pipeline(bundle, budget=BudgetConfig(max_faces=4, policy="stale"))
    first = pipe.process(Frame(0, 0.0, six_faces()), "crowd")
    second = pipe.process(Frame(1, 0.04, six_faces(shift=2)), "crowd")
    assert sr.calls == [4, 4] and first.counts["budget_skipped"] == 2 and second.counts["budget_skipped"] == 2
    assert len({e.track_id for e in first.events + second.events}) == 6  # the two left out went first next
    snap = pipe.stats.snapshot()
    metrics = Metrics(pipe.stats, "cam").render().decode()
    assert snap["counters"]["budget_skipped"] == 4 and 'edge_affectsr_budget_skipped_total{camera="cam"} 4.0' in metrics


def test_the_guard_runs_facemesh_on_a_tracks_first_upscale_then_every_nth(bundle):
    pipe, _ = pipeline(bundle, guard=GuardConfig(landmark_every=3, landmark_on_disagreement=False),
                       budget=BudgetConfig(max_faces=None))
    results = [pipe.process(Frame(i, i * 0.04, six_faces(shift=i)), "crowd") for i in range(4)]
    checked = [[f.event.guard.landmark_checked for f in r.faces] for r in results]
    assert checked == [[True] * 6, [False] * 6, [False] * 6, [True] * 6], [r.counts for r in results]
    measured = {f.event.track_id: f.event.guard.landmark_error for f in results[0].faces}
    for skipped in results[1].faces:
        assert skipped.event.guard.landmark_error == measured[skipped.event.track_id]  # the last measured stands
        assert math.isfinite(skipped.event.guard.landmark_error)
    counters = pipe.stats.snapshot()["counters"]
    assert counters["guard_landmark_checks"] == 12 and counters["guard_landmark_skipped"] == 12


def test_events_carry_the_smoothed_and_the_raw_expression(bundle):
    smooth, _ = pipeline(bundle, smoothing=SmoothingConfig(method="ema", alpha=0.5), budget=BudgetConfig(max_faces=None))
    first, second = (smooth.process(Frame(i, i * 0.04, six_faces(shift=3 * i)), "crowd") for i in range(2))
    earlier = {e.track_id: e for e in first.events}
    assert len(earlier) == 6 and {e.track_id for e in second.events} == set(earlier)
    for b in second.events:
        a = earlier[b.track_id]
        assert a.probabilities == a.raw_probabilities  # a track's first reading is its own
        expected = {k: round(0.5 * a.raw_probabilities[k] + 0.5 * b.raw_probabilities[k], 5) for k in a.probabilities}
        assert b.probabilities == pytest.approx(expected, abs=2e-5)
        assert b.expression == max(b.probabilities, key=b.probabilities.get)
        assert b.raw_expression == max(b.raw_probabilities, key=b.raw_probabilities.get)
    off, _ = pipeline(bundle, smoothing=SmoothingConfig(method="off"))
    for i in range(2):
        assert all(e.probabilities == e.raw_probabilities for e in off.process(Frame(i, 0.0, six_faces()), "c").events)
