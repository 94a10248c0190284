"""Detections and non-maximum suppression, within one model call and across the regions of a frame.

Why across regions: a tile schedule (runtime/scan.py) shows the same face to several regions (tiles
overlap, zoom levels nest, the whole frame sees everything), so the candidates of every region of a
frame go through one mediapipe weighted NMS (IoU above the threshold: one face, its box the
score-weighted mean). That leaves two kinds of false faces, both nested in or around a true one:

* a face cut by a tile's edge, or seen at a zoom where its hair looks like a face, gives a second box
  that lies mostly inside (or around) the true box but overlaps it by less than the IoU threshold;
* a region that shows a crowd small can fire on the crowd's pattern: a box hundreds of px wide
  around several faces.

Faces do not sit inside other faces' boxes (a nearer face hides what is behind it), so after NMS a
box that holds the centres of two or more other detections is dropped, and of two boxes that share
:data:`NESTED` or more of the smaller one the lower score goes. (Dropping candidates that cross a
tile's inner edge was tried too: it changed nothing on the crowd clips and made large faces' boxes
worse, because BlazeFace predicts a face's whole box well from most of it.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Candidates = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes [n, 4], keypoints [n, 6, 2], scores [n], frame px
NESTED = 0.5  # intersection / the smaller box above which two detections are one face (or one is not a face)


@dataclass(frozen=True)
class Detection:
    """A face in frame pixels: ``bbox = (x0, y0, x1, y1)``, ``keypoints [6, 2]`` (x, y) in
    :data:`~edge_affectsr.runtime.detect.KEYPOINT_NAMES` order, ``score`` in [0, 1]."""

    bbox: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray

    @property
    def width(self) -> float:
        return self.bbox[2] - self.bbox[0]

    @property
    def height(self) -> float:
        return self.bbox[3] - self.bbox[1]


def _overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise intersection areas ``[n, m]`` of boxes ``[n, 4]`` and ``[m, 4]``, and their areas ``[n]``, ``[m]``."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    return inter, (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``[n, 4]`` and ``[m, 4]`` (x0, y0, x1, y1)."""
    inter, area_a, area_b = _overlaps(a, b)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 iou_threshold: float, max_faces: int) -> list[Detection]:
    """mediapipe's WEIGHTED non-max suppression: the best remaining candidate absorbs every
    candidate overlapping it by more than ``iou_threshold``; box and keypoints become the
    score-weighted mean of the group, the score stays the best one's."""
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    iou = iou_matrix(boxes, boxes)
    alive = np.ones(len(scores), dtype=bool)
    out: list[Detection] = []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        group = alive & (iou[i] > iou_threshold)
        group[i] = True
        w = scores[group] / scores[group].sum()
        box = (boxes[group] * w[:, None]).sum(axis=0)
        kps = (keypoints[group] * w[:, None, None]).sum(axis=0)
        out.append(Detection(tuple(float(v) for v in box), float(scores[i]), kps.astype(np.float32)))
        alive &= ~group
        if len(out) == max_faces:
            break
    return out




def intersection_over_min(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection / the smaller box's area, boxes ``[n, 4]`` and ``[m, 4]``."""
    inter, area_a, area_b = _overlaps(a, b)
    return inter / np.maximum(np.minimum(area_a[:, None], area_b[None, :]), 1e-12)


def merge_regions(found: list[Candidates], iou_threshold: float, max_faces: int) -> list[Detection]:
    """One frame's detections from the candidates of each of its regions (module doc)."""
    if not found or not sum(len(f[0]) for f in found):
        return []
    boxes, keypoints, scores = (np.concatenate([f[i] for f in found]) for i in range(3))
    return _suppress(boxes, keypoints, scores, iou_threshold, max_faces)


def merge_detections(detections: list[Detection], iou_threshold: float, max_faces: int) -> list[Detection]:
    """Detections from several sources (scanner, track mosaics) as one frame's: weighted NMS, then nested boxes dropped."""
    boxes = np.array([d.bbox for d in detections], np.float64).reshape(-1, 4)
    keypoints = np.stack([d.keypoints for d in detections]) if detections else np.zeros((0, 6, 2), np.float32)
    scores = np.array([d.score for d in detections], np.float32)
    return _suppress(boxes, keypoints, scores, iou_threshold, max_faces)


def _suppress(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float,
              max_faces: int) -> list[Detection]:
    """Weighted NMS, then nested boxes dropped, then the best ``max_faces``."""
    return drop_nested(weighted_nms(boxes, keypoints, scores, iou_threshold, len(scores)))[:max_faces]


def drop_nested(detections: list[Detection]) -> list[Detection]:
    """Detections (best first) without boxes that hold two or more others' centres, then without the
    lower-scored of each pair nested by :data:`NESTED` or more (module doc); order kept."""
    if len(detections) < 2:
        return detections
    boxes = np.array([d.bbox for d in detections])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    holds = ((centres[None, :, 0] >= boxes[:, None, 0]) & (centres[None, :, 0] <= boxes[:, None, 2])
             & (centres[None, :, 1] >= boxes[:, None, 1]) & (centres[None, :, 1] <= boxes[:, None, 3]))
    np.fill_diagonal(holds, False)
    alive = holds.sum(axis=1) < 2
    nested = intersection_over_min(boxes, boxes) >= NESTED
    for i in range(len(detections)):  # best first: a later (lower-scored) nested box goes
        if alive[i]:
            alive[i + 1:] &= ~nested[i, i + 1:]
    return [d for d, keep in zip(detections, alive) if keep]
