"""device/inference/pipeline.py: real frames through the real bundle: corrupt frames, no face, several faces,
size limits, per-track reporting, crop saving. Needs a bundle (skipped otherwise); the several-faces
frame is three copies of the built-in face (one mirrored, one darker), so it needs no data set."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_affectsr.builtin_face import builtin_face
from edge_affectsr.device.capture.builtin import BuiltinSequence, gradient_background
from edge_affectsr.device.capture.frame import Frame
from edge_affectsr.device.inference.pipeline import EXTRA_COUNTERS, STAGES, Pipeline, PipelineConfig, TrackReporter
from edge_affectsr.device.reporting.crops import CropSaver, CropsConfig
from edge_affectsr.device.reporting.stats import Stats
from edge_affectsr.device.service.settings import DeviceConfig
from edge_affectsr.runtime.bundle_models import load_bundle
from edge_affectsr.runtime.detect import DetectorConfig
from edge_affectsr.runtime.interpreter import InterpreterConfig
from edge_affectsr.runtime.roi_detect import RoiConfig

from device_bundle import require_bundle

WIDTH = 150  # side of each pasted face: three fit side by side in 640x480
ORIGINS = [(20, 40), (240, 150), (460, 60)]


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(require_bundle(), InterpreterConfig(delegate_order=["cpu"]), DetectorConfig(tiles=(3, 2), tiles_per_call=None))


def make_pipeline(bundle, **config) -> Pipeline:
    return Pipeline(bundle, PipelineConfig(**config), stats=Stats(extra_counters=EXTRA_COUNTERS))


def frame(image, index: int = 0) -> Frame:
    return Frame(index, time.monotonic(), image)


@pytest.fixture(scope="module")
def three_faces() -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    face = cv2.resize(cv2.cvtColor(builtin_face(), cv2.COLOR_RGB2BGR), (WIDTH, WIDTH), interpolation=cv2.INTER_AREA)
    variants = [face, np.ascontiguousarray(face[:, ::-1]), (face * 0.8).astype(np.uint8)]
    image = gradient_background(640, 480)
    rects = []
    for variant, (x, y) in zip(variants, ORIGINS):
        image[y:y + WIDTH, x:x + WIDTH] = variant
        rects.append((x, y, x + WIDTH, y + WIDTH))
    return image, rects


def test_corrupt_frames_are_counted_not_raised(bundle):
    pipe = make_pipeline(bundle)
    bad = [None, np.zeros((480, 640, 3), np.float32), np.zeros((0, 0, 3), np.uint8), np.zeros((480, 640, 5), np.uint8),
           cv2.imdecode(np.frombuffer(b"\xff\xd8\xff\xe0 truncated jpeg", np.uint8), cv2.IMREAD_COLOR)]
    results = [pipe.process(frame(image, i)) for i, image in enumerate(bad)]
    assert all(r.error and not r.events for r in results)
    assert pipe.stats.counter("errors") == len(bad) and pipe.stats.counter("frames") == 0
    assert pipe.process(frame(gradient_background(640, 480), 9)).error is None  # and it goes on


def test_a_frame_without_a_face(bundle):
    pipe = make_pipeline(bundle)
    result = pipe.process(frame(gradient_background(640, 480)))
    assert result.error is None and result.events == [] and result.counts == {"no_face": 1}
    assert pipe.stats.counter("no_face") == 1 and pipe.stats.counter("frames") == 1
    assert "detect" in result.latency_ms and "sr" not in result.latency_ms


def test_several_faces_get_one_event_and_one_id_each(bundle, three_faces):
    image, rects = three_faces
    pipe = make_pipeline(bundle)
    first = pipe.process(frame(image, 0), "test")
    assert len(first.events) == 3, first.counts
    for event in first.events:
        cx, cy = (event.bbox[0] + event.bbox[2]) / 2, (event.bbox[1] + event.bbox[3]) / 2
        assert sum(x0 < cx < x1 and y0 < cy < y1 for x0, y0, x1, y1 in rects) == 1
        assert event.lr_size == (bundle.sr.lr_size, bundle.sr.lr_size) and event.source == "test"
        assert abs(sum(event.probabilities.values()) - 1) < 1e-3 and event.expression in event.probabilities
        assert set(STAGES) <= set(event.latency_ms) and event.model == bundle.name
        assert event.model_version == bundle.version
    for face in first.faces:
        assert face.sr.shape == (128, 128, 3) and face.verdict.image.shape == (128, 128, 3)
    ids = sorted(e.track_id for e in first.events)
    assert len(set(ids)) == 3
    second = pipe.process(frame(image, 1), "test")
    assert sorted(e.track_id for e in second.events) == ids  # same people, same ids
    snap = pipe.stats.snapshot()
    assert snap["counters"]["faces"] == 6 and set(STAGES) <= set(snap["latency_ms"])


def test_report_per_track_reports_changes_only(bundle, three_faces):
    """Without ROI re-detection the same frame gives the same upscales: nothing new to report."""
    image, _ = three_faces
    pipe = Pipeline(bundle, PipelineConfig(report="track"), roi=RoiConfig(enabled=False),
                    stats=Stats(extra_counters=EXTRA_COUNTERS))
    assert len(pipe.process(frame(image, 0)).events) == 3
    again = pipe.process(frame(image, 1))
    assert again.events == [] and len(again.faces) == 3  # processed, nothing new to say
    assert pipe.stats.counter("faces") == 3  # the counter counts reported faces


def test_track_reporter():
    per_track = TrackReporter("track")
    assert per_track.should_report(1, "happy", "preserved") and not per_track.should_report(1, "happy", "preserved")
    assert per_track.should_report(1, "happy", "changed") and per_track.should_report(1, "sad", "changed")
    assert per_track.should_report(1, "sad", "unverified")  # a third verdict is a change too
    assert per_track.should_report(2, "sad", "changed")
    per_track.forget_except({2})
    assert per_track.should_report(1, "sad", "changed") and not per_track.should_report(2, "sad", "changed")
    per_frame = TrackReporter("frame")
    assert all(per_frame.should_report(1, "happy", "preserved") for _ in range(3))


def test_faces_outside_the_size_limits_are_counted(bundle, three_faces):
    image, _ = three_faces
    small = make_pipeline(bundle, min_face_px=1000, max_face_px=2000).process(frame(image))
    assert small.events == [] and small.counts.get("too_small") == 3
    large = make_pipeline(bundle, min_face_px=1, max_face_px=20).process(frame(image))
    assert large.events == [] and large.counts.get("too_large") == 3


def test_grey_frames_work(bundle, three_faces):
    image, _ = three_faces
    result = make_pipeline(bundle).process(frame(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)))
    assert result.error is None and len(result.events) == 3


def test_crops_are_saved_when_enabled(bundle, tmp_path: Path):
    saver = CropSaver(CropsConfig(enabled=True, folder=tmp_path / "crops", quota_mb=1))
    pipe = Pipeline(bundle, stats=Stats(extra_counters=EXTRA_COUNTERS), crops=saver)
    seq = BuiltinSequence(10, face_px=(150, 150))
    events = sum((pipe.process(f).events for f in seq), [])
    saved = sorted((tmp_path / "crops").glob("*.png"))
    assert events and len(saved) == len(events) == saver.saved
    assert cv2.imread(str(saved[0])).shape == (128, 128, 3)


def test_the_builtin_clip_gives_events_in_most_frames(bundle):
    """The daemon's default detector (zoom levels in rotation) plus the track mosaics finds the small face."""
    cfg = DeviceConfig()
    loaded = load_bundle(require_bundle(), InterpreterConfig(delegate_order=["cpu"]), cfg.detector, self_test=False)
    pipe = Pipeline(loaded, cfg.pipeline, cfg.guard, cfg.align, cfg.tracker, cfg.roi, stats=Stats(extra_counters=EXTRA_COUNTERS))
    seq = BuiltinSequence(60)
    results = [pipe.process(frame(seq.render(i), i)) for i in range(30)]
    with_face = sum(1 for r in results if r.events)
    assert with_face >= 0.8 * len(results), [r.counts for r in results]
    # one person, hardly ever lost: found from frame 0, where the clip moves the face most of its own width
    # per frame (the tracker's centre fallback keeps it one track where the boxes hardly overlap)
    assert len({e.track_id for r in results for e in r.events}) <= 2
