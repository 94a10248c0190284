"""FaceMesh on crowd-sized faces against the keypoint fallback, measured on the clips' true faces.

Why: below ~32 px FaceMesh often rejects a face (presence < 0.5) and the pipeline aligns it from the
detector's box and keypoints with the mean face shape instead (runtime/align.py ``from_keypoints``).
Which is better at these sizes decides what the SR model gets. The reference is the aligner's fit on
FaceMesh landmarks of the person's clean HR crop (found once, at 128 px), moved to where the clip
placed the crop in the frame: the alignment a perfect camera would give. For each detected true face
(every :data:`STRIDE`-th frame) both alignments are computed: FaceMesh on the frame (the aligner's fit
on its landmarks, where FaceMesh accepts the face) and the keypoint fit; the error of an alignment is
the mean distance, in px of the 128 px aligned crop, between where it and the reference put the
stable points (eye corners, nose, mouth corners: :data:`~edge_affectsr.runtime.align.STABLE_POINTS`).
"""

from __future__ import annotations

import numpy as np

from edge_affectsr.runtime.crowd_clips import Clip
from edge_affectsr.protocol import HR_SIZE
from edge_affectsr.runtime.align import STABLE_POINTS, Aligner, transform_points
from edge_affectsr.runtime.bundle_models import LoadedBundle
from edge_affectsr.runtime.detect import Detection
from edge_affectsr.runtime.frames import BACKGROUND

STRIDE = 5  # frames between checks (FaceMesh per face is ~2.5 ms; this keeps the check a small share of the run)


class LandmarkCheck:
    """``add(frame index, image, detections, matched person per detection)`` over a clip; ``summary()``."""

    def __init__(self, bundle: LoadedBundle, clip: Clip, hr_faces: list[np.ndarray]) -> None:
        self.bundle, self.clip = bundle, clip
        self.aligner = Aligner(bundle.sr.lr_size, bundle.nodes)
        people = [reference_landmarks(bundle, hr) for hr in hr_faces]
        self.reference = [people[i % len(people)] for i in range(clip.spec.faces)]
        self.accepted: list[bool] = []
        self.mesh_error: list[float] = []  # where FaceMesh accepted
        self.keypoint_error: list[float] = []
        self.keypoint_error_accepted: list[float] = []  # the same faces FaceMesh accepted

    def add(self, index: int, image: np.ndarray, detections: list[Detection], matched: np.ndarray) -> None:
        if index % STRIDE:
            return
        for det, person in zip(detections, matched):
            if person < 0 or self.reference[person] is None:
                continue
            full = self._full_in_frame(index, person)
            stable, truth = full[list(STABLE_POINTS)], self.aligner.fit(full)
            keypoint = alignment_error(self.aligner.fit_keypoints(det), truth, stable)
            landmarks = self.bundle.landmarker(image, det)
            accepted = self.bundle.landmarker.found(landmarks)
            self.accepted.append(accepted)
            self.keypoint_error.append(keypoint)
            if accepted:
                self.mesh_error.append(alignment_error(self.aligner.fit(landmarks.points), truth, stable))
                self.keypoint_error_accepted.append(keypoint)

    def _full_in_frame(self, index: int, person: int) -> np.ndarray:
        """The person's reference landmarks ``[478, 2]`` (HR crop px) at their place in frame ``index``."""
        x0, y0 = self.clip.positions[index][person]
        k = self.clip.spec.side / HR_SIZE  # HR px h sits at frame px x0 + (h + 0.5) * k - 0.5
        return self.reference[person] * k + [x0 + 0.5 * k - 0.5, y0 + 0.5 * k - 0.5]

    def summary(self) -> dict:
        def median(values: list[float]) -> float | None:
            return round(float(np.median(values)), 2) if values else None
        n = len(self.accepted)
        return {"faces_checked": n, "facemesh_accepted": round(sum(self.accepted) / n, 3) if n else None,
                "error_px_facemesh": median(self.mesh_error), "error_px_keypoints": median(self.keypoint_error),
                "error_px_keypoints_where_facemesh_accepted": median(self.keypoint_error_accepted)}


def alignment_error(matrix: np.ndarray, truth: np.ndarray, points: np.ndarray) -> float:
    """Mean distance (px of the 128 crop) between where ``matrix`` and ``truth`` (frame -> crop) put ``points``."""
    return float(np.linalg.norm(transform_points(matrix, points) - transform_points(truth, points), axis=1).mean())


def reference_landmarks(bundle: LoadedBundle, hr: np.ndarray) -> np.ndarray | None:
    """FaceMesh's 478 landmarks ``[478, 2]`` on a clean HR crop (RGB 128 px), in its pixels; None when
    the detector or FaceMesh does not take it (that person is left out of the check)."""
    pad = HR_SIZE // 2
    canvas = np.empty((HR_SIZE + 2 * pad, HR_SIZE + 2 * pad, 3), np.uint8)
    canvas[:] = BACKGROUND
    canvas[pad:pad + HR_SIZE, pad:pad + HR_SIZE] = hr[..., ::-1]  # RGB -> BGR
    height, width = canvas.shape[:2]
    found = bundle.roi_detector.detect_regions(canvas, [(0, 0, width, height)])
    if not found:
        return None
    landmarks = bundle.landmarker(canvas, found[0])
    return landmarks.points - pad if bundle.landmarker.found(landmarks) else None
