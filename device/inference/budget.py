"""The per-frame face budget: how many faces one frame may upscale, and which go first.

Why: each upscaled face costs a FaceMesh call, an alignment, its share of the SR and critic calls
and now and then the guard's FaceMesh (about 5 ms on 2 cores), so a crowd of 20 faces would take
a camera from 25 fps to a handful. A budget bounds the frame's cost; faces over it are skipped
before FaceMesh (they cost nothing) and counted (``budget_skipped``). The policy says who waits:

* ``stale`` (default): the faces whose tracks were upscaled longest ago go first (a new track
  before all), ties to the larger face: every face gets its turn, e.g. 20 faces at 8 per frame are
  each upscaled every 2-3 frames, and the time-aware smoothing bridges the gaps;
* ``largest``: the largest faces first (the most detail, usually the nearest people); in a dense
  crowd the smallest may wait for ever.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field


class BudgetConfig(BaseModel):
    """The ``budget:`` section of the device config."""

    model_config = ConfigDict(extra="forbid")
    max_faces: int | None = Field(8, ge=1, description="faces upscaled per frame at most; null: every face found")
    policy: Literal["stale", "largest"] = Field(
        "stale", description="who goes first over the budget: stale (least recently upscaled track) or largest face")


class FaceBudget:
    """``select(tracks, sizes)`` -> the indices of this frame's faces to upscale, in their order."""

    def __init__(self, config: BudgetConfig | None = None) -> None:
        self.config = config or BudgetConfig()
        self._frame = 0
        self._last: dict[int, int] = {}  # track id -> the select() call that last chose it

    def select(self, tracks: Sequence[int], sizes: Sequence[float]) -> list[int]:
        """``tracks``: each face's track id, ``sizes``: its size in frame pixels (any monotone measure)."""
        self._frame += 1
        n, limit = len(tracks), self.config.max_faces
        if limit is None or n <= limit:
            chosen = list(range(n))
        elif self.config.policy == "largest":
            chosen = sorted(sorted(range(n), key=lambda i: -sizes[i])[:limit])
        else:
            chosen = sorted(sorted(range(n), key=lambda i: (self._last.get(tracks[i], -math.inf), -sizes[i]))[:limit])
        for i in chosen:
            self._last[tracks[i]] = self._frame
        return chosen

    def forget_except(self, live: set[int]) -> None:
        for track_id in set(self._last) - live:
            del self._last[track_id]
