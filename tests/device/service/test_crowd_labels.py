"""device/service/crowd_labels.py: flicker per track-second and agreement with the HR label, with the
bundle's real critic reading the built-in face."""

from __future__ import annotations

import pytest

from edge_affectsr.runtime.crowd_clips import people
from edge_affectsr.device.service.crowd_labels import LabelCheck
from edge_affectsr.device.service.settings import DeviceConfig
from edge_affectsr.runtime.bundle_models import load_bundle

from _device_events import make_event
from device_bundle import require_bundle

FPS = 25.0


def test_flicker_counts_track_seconds_from_first_to_last_label_and_agreement_counts_true_faces():
    critic = load_bundle(require_bundle(), DeviceConfig().interpreter, self_test=False).critic
    hr = people(None, 1)
    check = LabelCheck(critic, 2, hr, FPS)
    hr_label = critic.label(critic.probabilities(hr[0]))
    assert check.reference == [hr_label, hr_label]  # one photo, cycled over both people
    other = next(c for c in critic.classes if c != hr_label)
    # person 0, track 1: labelled every other frame (the budget), raw flips, smoothed steady
    for frame, raw in zip((0, 2, 4, 6), (hr_label, other, hr_label, other)):
        check.add(frame, [make_event(frame, track_id=1, expression=hr_label, raw_expression=raw)], {1: 0})
    # person 1, track 2: frames 1-4, one raw change; track 9 is a false detection (no person): left out
    for frame, raw in zip((1, 2, 3, 4), (other, other, other, hr_label)):
        check.add(frame, [make_event(frame, track_id=2, expression=other, raw_expression=raw),
                          make_event(frame, track_id=9, expression=other, raw_expression=hr_label)], {2: 1})
    summary = check.summary()
    seconds = (7 + 4) / FPS  # frames 0-6 and 1-4
    assert summary["labelled_faces"] == 8 and summary["track_seconds"] == pytest.approx(seconds, abs=0.01)
    assert summary["flicker_raw"] == pytest.approx((3 + 1) / seconds, abs=1e-3) and summary["flicker_smoothed"] == 0
    assert summary["agreement_raw"] == 3 / 8 and summary["agreement_smoothed"] == 4 / 8
    assert summary["hr_labels"] == {hr_label: 2}


def test_a_clip_with_no_labelled_face_reports_none():
    critic = load_bundle(require_bundle(), DeviceConfig().interpreter, self_test=False).critic
    summary = LabelCheck(critic, 3, people(None, 1), FPS).summary()
    assert summary["labelled_faces"] == 0 and summary["flicker_raw"] is None and summary["agreement_smoothed"] is None
