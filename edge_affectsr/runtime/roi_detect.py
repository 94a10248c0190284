"""Track-guided face detection: look for known faces where they were, several per model call.

Why: the tile schedule that finds new small faces costs one model call per tile (runtime/scan.py),
so it runs a few tiles per frame in rotation. A face that was seen last frame is almost where it
was, so each live track's last box gets a square region around it (``margin`` x its long side), in
which the face fills ``1 / margin`` of the side. Those squares are resized into the cells of a
mosaic, ``per_call`` (1, 4 or 9) to one model input, so a crowd of 20 tracked faces costs 5 calls
(2x2 mosaics) instead of 20, and a tracked face is found in every frame, not once per round of tiles.
A 2x2 mosaic on short-range's 128 px input gives each square 64 px: a face of 29 px or more fills
1 / ``margin`` of its square; a smaller face keeps its own size (the square is at least a cell, so it is
never enlarged: enlarging a 16 px face's square to the cell blurs it, and the crowd benchmark's
recall at 16 px in 1280x720 fell from 79 % to 72 %, docs/crowd.md). Detections are assigned to
the cell their centre falls in and mapped back to the frame; everything is then merged with the
scanner's detections (runtime/nms.py).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr.runtime.detect import Detection, FaceDetector, resample
from edge_affectsr.runtime.nms import merge_detections

Square = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame px


class RoiConfig(BaseModel):
    """The ``roi:`` section of the device config."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="look for tracked faces around their last box every frame")
    margin: float = Field(2.2, ge=1.2, le=6.0, description="ROI side / the track box's long side")
    min_side: int | None = Field(
        None, ge=8, description="smallest ROI side, frame px; null: the mosaic cell's side (small faces are never enlarged)")
    per_call: Literal[1, 4, 9] = Field(4, description="ROIs packed into one detector input as a mosaic: 1, 4 or 9")

    def grid(self) -> int:
        """Cells per side of the mosaic."""
        return math.isqrt(self.per_call)


def roi_square(box: np.ndarray, margin: float, min_side: int, width: int, height: int) -> Square:
    """``(x0, y0, x1, y1)`` of a square around ``box`` (side = margin x long side), shifted to lie in
    the frame (clipped where the frame is smaller than the square)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(min_side, margin * max(x1 - x0, y1 - y0))
    side = min(side, width, height)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(round(min(max(cx - side / 2, 0), width - side)))
    top = int(round(min(max(cy - side / 2, 0), height - side)))
    return left, top, left + int(round(side)), top + int(round(side))


def shift(det: Detection, dx: float, dy: float, scale: float = 1.0) -> Detection:
    """A detection made in a crop at ``(dx, dy)`` shown ``scale`` times enlarged, in frame pixels."""
    bbox = tuple(float(v) for v in np.asarray(det.bbox) / scale + [dx, dy, dx, dy])
    return replace(det, bbox=bbox, keypoints=(det.keypoints / scale + np.float32([dx, dy])).astype(np.float32))


class TrackingDetector:
    """``detect(frame, track_boxes)`` -> detections (frame pixels, best first): the scanner's (whole frame
    and tiles in rotation) and those found in mosaics of the tracks' squares, merged."""

    def __init__(self, scanner: FaceDetector, roi_detector: FaceDetector, config: RoiConfig | None = None) -> None:
        self.scanner = scanner  # whole frame + tiles in rotation (detector config)
        self.roi_detector = roi_detector  # the same model, one mosaic per call
        self.config = config or RoiConfig()
        self._grid = self.config.grid()
        size = roi_detector.size
        self._cell = size // self._grid
        self._mosaic = np.empty((size, size, 3), np.uint8)

    def detect(self, frame_bgr: np.ndarray, track_boxes: list[np.ndarray] | None = None) -> list[Detection]:
        boxes = list(track_boxes or []) if self.config.enabled else []
        per_call = self._grid * self._grid
        found = list(self.scanner.detect(frame_bgr))
        if boxes:
            h, w = frame_bgr.shape[:2]
            min_side = self.config.min_side or self._cell
            squares = [roi_square(box, self.config.margin, min_side, w, h) for box in boxes]
            for i in range(0, len(squares), per_call):
                found.extend(self._detect_mosaic(frame_bgr, squares[i:i + per_call]))
        if len(found) <= 1:
            return found
        cfg = self.scanner.config
        return merge_detections(found, cfg.iou_threshold, cfg.max_faces)

    def _detect_mosaic(self, frame_bgr: np.ndarray, squares: list[Square]) -> list[Detection]:
        """One model call on up to grid x grid squares, each resized into its cell; detections in frame px."""
        cell, grid = self._cell, self._grid
        self._mosaic[:] = 128  # the letterbox's mid-grey: empty cells and the remainder stay neutral
        for k, (x0, y0, x1, y1) in enumerate(squares):
            r, c = divmod(k, grid)
            self._mosaic[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = resample(frame_bgr[y0:y1, x0:x1], cell, cell)
        boxes, keypoints, scores = self.roi_detector.detect_input(self._mosaic)
        out = []
        for box, kps, score in zip(boxes, keypoints, scores):
            c, r = int((box[0] + box[2]) / 2 // cell), int((box[1] + box[3]) / 2 // cell)
            k = r * grid + c
            if not (0 <= c < grid and 0 <= r < grid and k < len(squares)):
                continue
            x0, y0, x1, _ = squares[k]
            scale = cell / (x1 - x0)
            det = Detection(tuple(float(v) for v in box - [c * cell, r * cell] * 2), float(score), kps - [c * cell, r * cell])
            out.append(shift(det, x0, y0, scale))
        return out
