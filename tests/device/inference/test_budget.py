"""device/inference/budget.py: which faces a frame upscales when there are more than its budget."""

from __future__ import annotations

from collections import Counter

from edge_affectsr.device.inference.budget import BudgetConfig, FaceBudget

TRACKS = [11, 12, 13, 14, 15, 16]
SIZES = [40.0, 90.0, 30.0, 70.0, 50.0, 60.0]


def test_under_the_budget_every_face_goes():
    budget = FaceBudget(BudgetConfig(max_faces=8))
    assert budget.select(TRACKS, SIZES) == list(range(6))
    assert FaceBudget(BudgetConfig(max_faces=None)).select(TRACKS * 3, SIZES * 3) == list(range(18))


def test_largest_first_always_picks_the_same_big_faces():
    budget = FaceBudget(BudgetConfig(max_faces=2, policy="largest"))
    for _ in range(3):
        assert budget.select(TRACKS, SIZES) == [1, 3]  # 90 and 70 px, in the frame's order


def test_stale_first_gives_every_face_its_turn():
    budget = FaceBudget(BudgetConfig(max_faces=2, policy="stale"))
    picks = [budget.select(TRACKS, SIZES) for _ in range(3)]
    assert picks[0] == [1, 3]  # nobody upscaled yet: the largest first
    assert picks[1] == [4, 5] and picks[2] == [0, 2]  # then those waiting longest, larger first
    assert Counter(i for p in picks for i in p) == Counter(range(6))
    assert budget.select(TRACKS, SIZES) == [1, 3]  # and round again


def test_a_new_track_goes_before_those_already_upscaled():
    budget = FaceBudget(BudgetConfig(max_faces=2))
    budget.select(TRACKS[:2], SIZES[:2])
    assert budget.select([11, 12, 99], [40.0, 90.0, 10.0]) == [1, 2]  # track 99 never upscaled: first


def test_forgotten_tracks_count_as_new():
    budget = FaceBudget(BudgetConfig(max_faces=1))
    budget.select([1], [50.0])
    budget.select([2], [50.0])
    budget.forget_except({2})
    assert budget.select([1, 2], [10.0, 50.0]) == [0]
