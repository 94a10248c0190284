"""Which regions of a frame the detector looks at, call by call: the whole frame, then tiles in rotation.

Why tiles: BlazeFace finds a face only when its box is at least :attr:`~edge_affectsr.runtime.detect.SsdSpec.min_face`
px wide *in the model's input* (16 of 128 for short-range on camera-degraded faces), so on a whole
1280x720 frame shrunk to 128 px it misses every face under ~160 px. A tile of side ``t`` is shrunk
(or enlarged) by ``input / t`` instead.

Why zoom levels: one grid fits one range of sizes. A level whose tiles show a ``min_face_px`` face at the
model's smallest size finds faces from there up to the overlap between its tiles (wider faces may be
cut by every tile's edge); the next level's tiles are made so the smallest face they find is that
overlap, and so on until a tile would cover the frame, which the whole-frame call does. With the
defaults (short-range, 20 px, overlap 0.25) a 1280x720 frame gets tiles of 160, 320 and 640 px
(66 + 15 + 6 calls); the finest level is most of the cost, and it grows with 1 / ``min_face_px``
squared (16 px: 141 tiles). A fixed ``tiles: [cols, rows]`` grid is one level chosen by hand.

Why rotation: every tile every frame costs one model call each; the device scans the whole frame and
a round of the tiles every ``scan_frames`` frames, and finds faces it already knows around their last
box (runtime/roi_detect.py), so a new face is found within one round and then every frame. Why a
round in frames rather than a fixed number of tiles per frame: the time to find a new face stays the
same whatever the frame size and the zoom (a 1280x720 frame down to 20 px faces has 87 tiles: 11 a
frame; 640x480 has 26: 4 a frame).
"""

from __future__ import annotations

import math

Region = tuple[int, int, int, int]  # x, y, width, height in frame px


def tile_regions(width: int, height: int, cols: int, rows: int, overlap: float) -> list[Region]:
    """``(x, y, w, h)`` of a ``cols x rows`` grid of tiles covering the frame, neighbours sharing
    ``overlap`` of a tile's side; [1, 1] is the whole frame."""
    def spans(size: int, n: int) -> list[tuple[int, int]]:
        if n == 1:
            return [(0, size)]
        side = size / (n - (n - 1) * overlap)
        step = side * (1 - overlap)
        return [(int(round(i * step)), int(round(min(size, i * step + side)))) for i in range(n)]
    return [(x0, y0, x1 - x0, y1 - y0) for (y0, y1) in spans(height, rows) for (x0, x1) in spans(width, cols)]


def square_tiles(width: int, height: int, side: float, overlap: float) -> list[Region]:
    """Tiles of ``side`` px (cut to the frame where it is smaller) covering the frame, neighbours
    overlapping by at least ``overlap`` of a side, spread evenly from edge to edge."""
    def spans(size: int) -> list[tuple[int, int]]:
        t = min(float(size), side)
        n = 1 if t >= size else math.ceil((size - t) / (t * (1 - overlap))) + 1
        step = (size - t) / (n - 1) if n > 1 else 0.0
        return [(int(round(i * step)), int(round(i * step + t))) for i in range(n)]
    return [(x0, y0, x1 - x0, y1 - y0) for (y0, y1) in spans(height) for (x0, x1) in spans(width)]


def zoom_levels(width: int, height: int, input_size: int, model_min_face: float, min_face_px: float,
                overlap: float) -> list[list[Region]]:
    """Tile grids, finest first: level k's tiles show a face of ``f_k`` px at ``model_min_face`` px
    (side ``input_size * f_k / model_min_face``), ``f_0 = min_face_px`` and ``f_(k+1)`` = level k's overlap
    in px (the widest face its tiles are sure to hold whole). Stops before a tile would span the
    frame's long side: the whole frame is its own call."""
    if overlap <= 0:
        raise ValueError("zoom levels need tiles that overlap (tile_overlap > 0)")
    levels: list[list[Region]] = []
    face = float(min_face_px)
    while (side := input_size * face / model_min_face) < max(width, height):
        levels.append(square_tiles(width, height, side, overlap))
        face = overlap * side
    return levels


class ScanSchedule:
    """``regions(width, height)`` -> this call's regions: the whole frame, then the next tiles in
    rotation, coarse levels first: ``ceil(tiles / scan_frames)`` of them, at least ``tiles_per_call``
    (all when ``tiles_per_call`` is None). The tiles are a fixed ``tiles`` grid, or the zoom levels
    down to ``min_face_px``; recomputed when the frame size changes."""

    def __init__(self, input_size: int, model_min_face: float, min_face_px: float, overlap: float,
                 tiles: tuple[int, int] | None = None, tiles_per_call: int | None = None,
                 scan_frames: int | None = None) -> None:
        self.input_size, self.model_min_face, self.min_face_px = input_size, model_min_face, min_face_px
        self.overlap, self.fixed, self.per_call, self.scan_frames = overlap, tiles, tiles_per_call, scan_frames
        self._size: tuple[int, int] | None = None
        self._tiles: list[Region] = []
        self._next = 0

    def tiles(self, width: int, height: int) -> list[Region]:
        """Every tile of the schedule for this frame size (coarse first)."""
        if self._size != (width, height):
            self._size, self._next = (width, height), 0
            if self.fixed is not None:
                self._tiles = [] if tuple(self.fixed) == (1, 1) else tile_regions(width, height, *self.fixed, self.overlap)
            else:
                levels = zoom_levels(width, height, self.input_size, self.model_min_face, self.min_face_px, self.overlap)
                self._tiles = [tile for level in reversed(levels) for tile in level]
        return self._tiles

    def restart(self) -> None:
        """Start the rotation again from the coarsest tile, as for a new input (a benchmark's next clip
        of the same frame size scans what its first frame would on a fresh device)."""
        self._next = 0

    def per_frame(self, width: int, height: int) -> int | None:
        """Tiles scanned per call for this frame size (None: all)."""
        if self.per_call is None:
            return None
        return max(self.per_call, -(-len(self.tiles(width, height)) // self.scan_frames) if self.scan_frames else 0)

    def regions(self, width: int, height: int) -> list[Region]:
        tiles = self.tiles(width, height)
        k = self.per_frame(width, height)
        if not tiles or k is None or k >= len(tiles):
            return [(0, 0, width, height), *tiles]
        picked = [tiles[(self._next + i) % len(tiles)] for i in range(k)]
        self._next = (self._next + k) % len(tiles)
        return [(0, 0, width, height), *picked]
