"""device/inference/summaries.py through the real pipeline on the built-in clip: a track event when the
face leaves (or the input ends) and a group summary every N seconds of capture time."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from edge_affectsr.device.capture.builtin import BuiltinSequence, gradient_background
from edge_affectsr.device.capture.frame import Frame
from edge_affectsr.device.inference.pipeline import EXTRA_COUNTERS, Pipeline
from edge_affectsr.device.inference.summaries import ExpressionTimeline, SummariesConfig
from edge_affectsr.device.reporting.events import GroupEvent, Guard, TrackEvent
from edge_affectsr.device.reporting.stats import Stats
from edge_affectsr.device.service.settings import DeviceConfig
from edge_affectsr.runtime.bundle_models import load_bundle
from edge_affectsr.runtime.interpreter import InterpreterConfig

from _device_events import LABELS, make_event
from device_bundle import require_bundle

FPS = 25.0
FRAMES = 50


@pytest.fixture(scope="module")
def run():
    """The clip at 25 fps of capture time with a summary every second, then empty frames until the
    track is lost; (pipeline, per-frame results)."""
    cfg = DeviceConfig()
    bundle = load_bundle(require_bundle(), InterpreterConfig(delegate_order=["cpu"]), cfg.detector, self_test=False)
    pipe = Pipeline(bundle, cfg.pipeline, cfg.guard, cfg.align, cfg.tracker, cfg.roi,
                    stats=Stats(extra_counters=EXTRA_COUNTERS), summaries=SummariesConfig(group_every_s=1.0))
    seq = BuiltinSequence(60)
    empty = gradient_background(640, 480)
    images = [seq.render(i) for i in range(FRAMES)] + [empty] * (cfg.tracker.max_missed + 1)
    return pipe, [pipe.process(Frame(i, i / FPS, image), "builtin") for i, image in enumerate(images)]


def test_a_group_summary_every_second_of_capture_time(run):
    pipe, results = run
    groups = [(r.index, s) for r in results for s in r.summaries if isinstance(s, GroupEvent)]
    assert [i for i, _ in groups] == [25, 50]  # t = 1.0 s and 2.0 s
    first = groups[0][1]
    assert first.window_s == pytest.approx(1.0) and first.frames == 26 and first.faces >= 1
    assert sum(first.histogram.values()) == first.faces and set(first.histogram) == set(pipe.bundle.critic.classes)
    events = [e for r in results[:26] for e in r.events]
    by_track = {t: np.mean([list(e.probabilities.values()) for e in events if e.track_id == t], axis=0)
                for t in {e.track_id for e in events}}
    assert list(first.probabilities.values()) == pytest.approx(np.mean(list(by_track.values()), axis=0), abs=1e-4)
    assert first.faces_per_frame == pytest.approx(len(events) / 26)
    assert pipe.stats.snapshot()["group"] == groups[-1][1].to_dict()  # /api/stats shows the latest


def test_a_track_event_when_the_face_is_lost(run):
    pipe, results = run
    ended = {s.track_id: s for r in results for s in r.summaries if isinstance(s, TrackEvent)}
    counts = Counter(e.track_id for r in results for e in r.events)
    assert set(ended) == {t for t, n in counts.items() if n >= SummariesConfig().min_upscales}  # short ones: none
    assert all(s.track_id in ended for s in results[-1].summaries)  # lost after max_missed empty frames
    assert pipe.tracker.tracks == []
    track = max(ended.values(), key=lambda t: t.upscales)  # the face, tracked through the clip
    upscales = [e for r in results for e in r.events if e.track_id == track.track_id]
    labels = [e.expression for e in upscales]
    assert track.ended == "lost" and track.upscales == len(upscales) >= 0.6 * FRAMES
    assert track.frames >= track.upscales and track.duration_s == pytest.approx((track.frames - 1) / FPS, abs=0.2)
    assert track.expression == max(set(labels), key=labels.count)
    assert track.share == labels.count(track.expression) / len(labels)
    verified = [e for e in upscales if e.guard.verdict != "unverified"]
    assert track.guard_unverified == len(upscales) - len(verified)
    assert track.guard_pass_rate == sum(e.guard.preserved for e in verified) / len(verified)
    assert sum(track.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert track.model == pipe.bundle.name and "\n" not in track.to_json()


def test_the_end_of_input_closes_live_tracks_and_the_last_window():
    cfg = DeviceConfig()
    bundle = load_bundle(require_bundle(), InterpreterConfig(delegate_order=["cpu"]), cfg.detector, self_test=False)
    pipe = Pipeline(bundle, cfg.pipeline, cfg.guard, cfg.align, cfg.tracker, cfg.roi,
                    stats=Stats(extra_counters=EXTRA_COUNTERS), summaries=SummariesConfig(min_upscales=1))
    seq = BuiltinSequence(60)
    results = [pipe.process(Frame(i, i / FPS, seq.render(i)), "builtin") for i in range(8)]
    assert not any(r.summaries for r in results)
    live = {t.id for t in pipe.tracker.tracks} & {e.track_id for r in results for e in r.events}
    *tracks, group = pipe.finish("builtin")
    assert {t.track_id for t in tracks} == live and all(t.ended == "end of input" for t in tracks)
    assert isinstance(group, GroupEvent) and group.frames == 8 and group.window_s == pytest.approx(7 / FPS)
    assert pipe.finish("builtin") == []  # nothing left
    quiet = Pipeline(bundle, stats=Stats(extra_counters=EXTRA_COUNTERS),
                     summaries=SummariesConfig(tracks=False, group_every_s=None))
    quiet.process(Frame(0, 0.0, seq.render(0)), "builtin")
    assert quiet.finish("builtin") == []


def test_the_pass_rate_is_over_verified_upscales_and_the_unverified_are_counted_beside_it():
    """Track 1: 2 kept, 1 changed, 3 not verified -> 2/3 and 3; track 2: none verified -> no rate (null)."""
    timeline = ExpressionTimeline(LABELS, SummariesConfig(min_upscales=1))
    verdicts = {1: ["preserved", "changed", "unverified", "preserved", "unverified", "unverified"],
                2: ["unverified"] * 4}
    for track_id, seq in verdicts.items():
        timeline.seen([track_id], 0.0)
        for i, verdict in enumerate(seq):
            error = np.nan if verdict == "unverified" else 0.05
            guard = Guard.judged(verdict, agreement=True, kl=0.1, landmark_error=error)
            timeline.observe(make_event(i, track_id=track_id, guard=guard))
    ended = {t.track_id: t for t in timeline.end([1, 2])}
    assert ended[1].upscales == 6 and ended[1].guard_unverified == 3 and ended[1].guard_pass_rate == pytest.approx(2 / 3)
    assert ended[2].guard_unverified == 4 and np.isnan(ended[2].guard_pass_rate)
    assert ended[2].to_dict()["guard_pass_rate"] is None and "NaN" not in ended[2].to_json()
