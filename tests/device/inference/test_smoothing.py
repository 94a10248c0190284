"""device/inference/smoothing.py: per-track smoothing of expression probabilities, and the flicker metric.

The input is a face whose expression does not change but whose per-frame reading is noisy (what the
critic gives on small faces: the top class swaps between two close ones), then a real change of
expression; the filters must cut the flicker and still follow the change."""

from __future__ import annotations

import numpy as np
import pytest

from edge_affectsr.config import ConfigError, validate
from edge_affectsr.device.inference.smoothing import (NOMINAL_DT, ExpressionSmoother, SmoothingConfig, flicker_rate,
                                                     label_changes)

FPS = 25.0
CLASSES = 7


def noisy_readings(frames: int, top: int, second: int, seed: int = 0) -> np.ndarray:
    """``[frames, 7]`` distributions: ``top`` at 0.45 and ``second`` at 0.35 on average, +-0.15 of noise
    between them each frame (so the raw top-1 swaps often)."""
    rng = np.random.default_rng(seed)
    p = np.full((frames, CLASSES), 0.2 / (CLASSES - 2))
    swing = rng.uniform(-0.15, 0.15, frames)
    p[:, top], p[:, second] = 0.45 + swing, 0.35 - swing
    return p


def smoothed_labels(config: SmoothingConfig, readings: np.ndarray, track: int = 1) -> list[int]:
    smoother = ExpressionSmoother(config)
    return [int(np.argmax(smoother(track, p, i / FPS))) for i, p in enumerate(readings)]


@pytest.mark.parametrize("config", [SmoothingConfig(), SmoothingConfig(method="ema")], ids=["one_euro", "ema"])
def test_smoothing_cuts_flicker_and_follows_a_real_change(config):
    steady = noisy_readings(100, top=3, second=6)  # happy, sometimes read as neutral
    changed = noisy_readings(50, top=4, second=6, seed=1)  # then sad
    readings = np.concatenate([steady, changed])
    raw = [int(np.argmax(p)) for p in readings]
    smooth = smoothed_labels(config, readings)
    assert flicker_rate({1: smooth}, FPS) <= flicker_rate({1: raw}, FPS) / 4
    assert smooth[:100].count(3) >= 95  # the steady face keeps its label
    first_sad = smooth.index(4)
    assert 100 <= first_sad <= 100 + int(0.5 * FPS) and smooth[-20:] == [4] * 20  # the change comes through in 0.5 s


@pytest.mark.parametrize("method", ["one_euro", "ema"])
def test_a_track_is_not_labelled_by_its_first_reading_alone(method):
    """A happy face (0.55 happy, 0.15 neutral) whose first reading says sad at 0.55 (a bad first upscale):
    started at the mean, the smoothed label is happy from the second reading on; started at the first
    reading, the sad reading holds the label for the readings after it."""
    readings = np.full((25, CLASSES), 0.05)
    readings[:, 3], readings[:, 6] = 0.55, 0.15
    readings[0] = np.full(CLASSES, 0.075)
    readings[0, 4] = 0.55
    mean = smoothed_labels(SmoothingConfig(method=method), readings)
    first = smoothed_labels(SmoothingConfig(method=method, start="first"), readings)
    assert mean[0] == first[0] == 4  # one reading: nothing else to go on
    assert mean[1:] == [3] * 24
    assert first[1:3] == [4, 4]


def test_the_mean_start_is_the_running_mean_until_the_filter_weighs_more():
    readings = noisy_readings(8, top=2, second=5)
    smoother = ExpressionSmoother(SmoothingConfig(method="ema", alpha=0.2))
    values = [smoother(1, p, i / FPS) for i, p in enumerate(readings)]
    np.testing.assert_allclose(values[4], readings[:5].mean(axis=0))  # weights 1, 1/2, .., 1/5: the mean
    np.testing.assert_allclose(values[5], 0.2 * readings[5] + 0.8 * values[4])  # then alpha (0.2 > 1/6)


def test_smoothed_vectors_stay_distributions():
    smoother = ExpressionSmoother(SmoothingConfig())
    for i, p in enumerate(noisy_readings(40, 0, 1)):
        s = smoother(7, p, i / FPS)
        assert np.all(s >= 0) and s.sum() == pytest.approx(1.0, abs=1e-12)


def test_off_passes_the_readings_through_and_tracks_are_independent():
    p = noisy_readings(5, 2, 5)
    off = ExpressionSmoother(SmoothingConfig(method="off"))
    assert all(np.array_equal(off(1, x, i), x) for i, x in enumerate(p))
    smoother = ExpressionSmoother(SmoothingConfig(method="ema", alpha=0.5))
    smoother(1, p[0], 0.0)
    assert np.array_equal(smoother(2, p[1], 0.04), p[1])  # a new track starts at its first reading
    assert np.allclose(smoother(1, p[1], 0.04), 0.5 * p[0] + 0.5 * p[1])
    smoother.forget_except({2})
    assert np.array_equal(smoother(1, p[2], 0.08), p[2])  # forgotten: starts again


def test_one_euro_survives_timestamps_that_do_not_advance():
    """A source without timestamps (every frame at 0.0) is filtered at the nominal frame rate."""
    p = noisy_readings(30, 3, 6)
    frozen = ExpressionSmoother(SmoothingConfig())
    timed = ExpressionSmoother(SmoothingConfig())
    for i, x in enumerate(p):
        a, b = frozen(1, x, 0.0), timed(1, x, i * NOMINAL_DT)
    assert np.all(np.isfinite(a)) and np.allclose(a, b)


def test_flicker_rate_counts_changes_per_track_second():
    assert label_changes(["a", "a", "b", "a"]) == 2
    # track 1: 2 changes in 4 frames, track 2: none in 4 frames -> 2 changes / (8 frames / 4 fps) = 1 per s
    assert flicker_rate({1: ["a", "a", "b", "a"], 2: ["c"] * 4}, fps=4) == pytest.approx(1.0)
    assert flicker_rate({}, fps=25) == 0.0
    with pytest.raises(ValueError, match="fps"):
        flicker_rate({1: ["a"]}, fps=0)


def test_config_is_validated_with_the_key_named():
    with pytest.raises(ConfigError, match="method: Input should be 'one_euro', 'ema' or 'off'"):
        validate({"method": "kalman"}, SmoothingConfig, "smoothing")
    with pytest.raises(ConfigError, match="alpha"):
        validate({"alpha": 0}, SmoothingConfig, "smoothing")
