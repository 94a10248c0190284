"""The crowd benchmark: clip geometry (runtime/crowd_clips.py), matching and identity switches
(crowd_score.py), and ``edge-affectsr crowd-bench`` end to end on a tiny clip of the built-in face."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_affectsr.device.service.crowd_bench import clip_plan
from edge_affectsr.device.service.crowd_score import ClipScore
from edge_affectsr.errors import UserError
from edge_affectsr.runtime.crowd_clips import BOX_FRACTION, ClipSpec, build_clip, match, people, trajectories
from edge_affectsr.runtime.frames import BACKGROUND

from device_bundle import require_bundle


@pytest.fixture(scope="module")
def builtin() -> list[np.ndarray]:
    return people(None, 1)


def test_faces_are_pasted_where_their_boxes_say_at_the_asked_width(builtin):
    spec = ClipSpec((640, 480), 24, 12, 6, "clean", seed=3)
    clip = build_clip(spec, builtin)
    assert spec.side == round(24 / BOX_FRACTION) == 46
    for i in (0, 5):
        frame, boxes = clip.frame(i), clip.boxes(i)
        assert frame.shape == (480, 640, 3) and boxes.shape == (12, 4)
        np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], 24, atol=0.1)
        crop = cv2.cvtColor(np.clip(np.rint(clip.crops[0]), 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
        for (x, y) in clip.positions[i]:
            np.testing.assert_array_equal(frame[y:y + spec.side, x:x + spec.side], crop)
        background = np.ones(frame.shape[:2], bool)
        for (x, y) in clip.positions[i]:
            background[y:y + spec.side, x:x + spec.side] = False
        assert (frame[background] == BACKGROUND).all()  # nothing else was drawn


def test_faces_drift_slowly_and_never_overlap():
    spec = ClipSpec((1280, 720), 16, 30, 60, seed=1)
    paths = trajectories(spec)
    assert paths.shape == (60, 30, 2)
    steps = np.abs(np.diff(paths, axis=0)).max()
    assert 1 <= steps <= 2  # at most 1.2 px per frame, rounded
    assert (paths.min(axis=(0, 1)) >= 0).all() and (paths[..., 0] + spec.side <= 1280).all() and (paths[..., 1] + spec.side <= 720).all()
    for frame in paths[::7]:
        gaps = np.abs(frame[:, None] - frame[None])
        apart = (gaps >= spec.side).any(axis=2)
        np.fill_diagonal(apart, True)
        assert apart.all()
    np.testing.assert_array_equal(paths, trajectories(spec))  # seeded: the same clip every run


def test_a_crowd_that_does_not_fit_is_a_clear_error():
    with pytest.raises(UserError, match="do not fit"):
        ClipSpec((640, 480), 64, 30, 10).check()
    plan = clip_plan((16, 64), ((640, 480),), 30, 10, "jpeg", 0, crowd_sizes=(1,))
    assert [(s.face_px, s.faces) for s in plan] == [(16, 30), (64, 12), (16, 1)]


def test_degraded_frames_are_noisy_and_seeded(builtin):
    clip = build_clip(ClipSpec((320, 240), 24, 2, 3, "jpeg", seed=5), builtin)
    a, b = clip.frame(1), clip.frame(1)
    np.testing.assert_array_equal(a, b)
    flat = a[:10, :10].astype(float)
    assert flat.std() > 0.5 and abs(flat.mean(axis=(0, 1)) - BACKGROUND).max() < 8


def test_matching_takes_centres_on_the_face_at_about_its_size():
    truth = np.array([[0, 0, 20, 20], [100, 0, 120, 20]], float)
    boxes = np.array([[2, 2, 22, 22],      # person 0
                      [1, 1, 19, 19],      # person 0 again: a duplicate, false
                      [95, -5, 145, 45],   # centre on person 1 but 2.5x wide: false
                      [50, 50, 70, 70]])   # nobody: false
    assert list(match(truth, boxes, np.array([0.9, 0.8, 0.7, 0.6]))) == [0, -1, -1, -1]
    assert list(match(truth, boxes[[1, 0]], np.array([0.95, 0.5]))) == [0, -1]  # the better score wins
    score = ClipScore(2)
    score.add(truth, boxes, np.array([0.9, 0.8, 0.7, 0.6]))
    assert (score.tp, score.fp, score.fn) == (1, 3, 1) and score.recall == 0.5 and score.precision == 0.25


def test_identity_switches_count_changes_of_a_persons_track():
    truth = np.array([[0, 0, 20, 20], [100, 0, 120, 20]], float)
    score = ClipScore(2)
    for ids in ([1, 2], [1, 2], [3, 2], [3, 2], [1, 2]):
        score.add(truth, truth + 1, None, ids)
    score.add(truth, truth[:1] + 1, None, [3])  # person 1 missed
    assert score.id_switches() == 3 and score.tracks() == 3 and score.recall == 11 / 12
    assert score.recall_from(5) == 0.5


def test_crowd_bench_command_end_to_end_on_the_builtin_face(tmp_path: Path):
    bundle = require_bundle()
    out = tmp_path / "crowd"
    done = subprocess.run([sys.executable, "-m", "edge_affectsr.cli", "crowd-bench", "--model", str(bundle),
                           "--sizes", "24,48", "--frame-sizes", "480x320", "--people", "3", "--frames", "12",
                           "--json", str(out / "crowd.json"), "--markdown", str(out / "crowd.md"), "--plot", str(out / "crowd.png")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "crowd.json").read_text())
    assert report["data"] == "built-in face" and [c["face_px"] for c in report["clips"]] == [24, 48]
    for clip in report["clips"]:
        assert clip["faces"] == 3 and clip["frames"] == 12 and clip["precision"] >= 0.9 and clip["id_switches"] == 0
        assert clip["recall_second_half"] >= 0.9  # a round of the tiles takes 8 frames; tracked from then on
        assert clip["fps"] > 0 and "detect" in clip["latency_ms_p50"] and clip["landmarks"]["faces_checked"] > 0
        labels = clip["labels"]
        assert labels["labelled_faces"] > 0 and labels["track_seconds"] > 0 and labels["hr_labels"]
        assert 0 <= labels["agreement_raw"] <= 1 and 0 <= labels["agreement_smoothed"] <= 1
    assert report["clips"][1]["recall"] > report["clips"][0]["recall"]  # 48 px faces: the coarse tiles come first
    assert "| 480x320 | 48 | 3 |" in (out / "crowd.md").read_text() and "recall %" in done.stdout
    assert "flicker smoothed /s" in done.stdout and report["smoothing"]["method"] == "one_euro"
    assert (out / "crowd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run([sys.executable, "-m", "edge_affectsr.cli", "crowd-bench", "--sizes", "16,x"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--sizes" in bad.stderr and "Traceback" not in bad.stderr


def test_label_statistics_are_pooled_over_seeds_with_each_seeds_range():
    from edge_affectsr.device.service.crowd_labels import pool, rates

    def clip(seed: int, labelled: int, seconds: float, changes: tuple[int, int], agreed: tuple[int, int, int]) -> dict:
        counts = {"changes_raw": changes[0], "changes_smoothed": changes[1], "agreed_raw": agreed[0],
                  "agreed_smoothed": agreed[1], "agreed_vote": agreed[2]}
        labels = {"labelled_faces": labelled, "track_seconds": seconds, **rates(labelled, seconds, counts), **counts}
        return {"frame": "1280x720", "face_px": 32, "faces": 20, "seed": seed, "labels": labels}

    clips = [clip(0, 100, 10.0, (40, 10), (60, 55, 50)), clip(1, 300, 30.0, (60, 30), (120, 150, 140)),
             {**clip(0, 10, 1.0, (1, 0), (5, 5, 5)), "face_px": 16}]
    rows = pool(clips)
    assert [(r["face_px"], r["seeds"]) for r in rows] == [(32, [0, 1]), (16, [0])]
    row = rows[0]
    assert row["labelled_faces"] == 400 and row["track_seconds"] == 40.0
    assert row["flicker_raw"] == 2.5 and row["flicker_smoothed"] == 1.0  # 100 and 40 changes in 40 track-s
    assert row["agreement_raw"] == 0.45 and row["agreement_smoothed"] == 0.5125 and row["agreement_vote"] == 0.475
    assert row["seed_range"]["flicker_ratio"] == [0.25, 0.5]
    assert row["seed_range"]["agreement_gain"] == [-0.05, 0.1]  # seed 0 lost 5 points, seed 1 gained 10
