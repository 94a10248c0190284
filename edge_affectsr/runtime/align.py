"""Crop and align a detected face to the SR model's input, the way the training crops were made.

Why align instead of cropping the detection box: the SR model was trained on CelebA-aligned faces
(the evaluation protocol's centre square, whose mean landmark positions are
``landmark_graph.mean_shape()``), and its landmark branch expects landmarks normalised to such a
crop. So each face's FaceMesh landmarks (frame pixels) are fitted to the mean shape with a
similarity transform (scale, rotation, translation: least squares, Umeyama's closed form, on a
subset of points that expressions barely move: eye corners, nose bridge and tip, mouth corners),
the frame is warped into a 128x128 crop with that transform (bilinear; the frame is box-shrunk
first when the face is much larger than 128 px, so nothing aliases), and the crop is downsampled
to the LR size exactly as the protocol makes LR from HR (Pillow bicubic, ``protocol.make_lr``;
``downsample: area`` uses OpenCV's box filter instead). The landmarks go through the same
transform and are normalised to [0, 1] of the crop, then restricted to the bundle's subset.

``face_px`` is the side of that crop in frame pixels (the face's size in the frame, in the
training crop's convention): the pipeline compares it with its too-small / too-large limits.

Fallback without landmarks (:meth:`Aligner.from_keypoints`): a small, blurred camera face often
gets no FaceMesh landmarks (presence < 0.5) although BlazeFace found it. The SR models were trained
for that case: such a face gets the mean shape flagged not found (``found=False``). So the crop is
placed from the detection instead (:meth:`Aligner.fit_keypoints`), warped and downsampled exactly as
above, and its landmarks are the mean shape itself:

* scale and position from the detection box: its width and centre go to BlazeFace's mean box on
  CelebA-aligned crops (:data:`CANONICAL_BOX`);
* roll from the keypoints: the similarity (Umeyama) from BlazeFace's eye, nose-tip and mouth
  keypoints to the mean shape's corresponding points (:data:`KEYPOINT_MESH_POINTS`: eye centre =
  mean of the two eye corners, nose tip 1, mouth centre = mean of the inner-lip midpoints 13/14,
  which sit within 0.007 of the crop of BlazeFace's own mean keypoints, :data:`CANONICAL_KEYPOINTS`;
  the mouth corners 61/291 would be 0.016 off and move with every smile; the ears sit on the face's
  edge and drift with yaw), its angle shrunk towards upright: on a 24 px face the eyes are 5 px
  apart and that angle is mostly noise (sd 22 degrees; 13 at 32 px, 47 at 16 px). With a prior roll
  of sd :data:`ROLL_PRIOR_DEG` and noise ``ROLL_NOISE_DEG_PX / eye distance in px`` the angle is
  weighted by ``prior^2 / (prior^2 + noise^2)`` (the posterior mean).

Why not the keypoint similarity's own scale and position: at these sizes the keypoints collapse and
wander. Measured against the aligner's fit on FaceMesh landmarks of each face's clean HR crop (faces
staged by ``camera-eval --small``, tiles 8x6; median mean stable-point error in px of the 128 crop):

| faces | this fit | keypoint similarity | FaceMesh on the frame, where it accepts |
|---|---:|---:|---:|
| 60 CelebA val, lens:32 / jpeg:24 / lens:16 | 6.6 / 8.7 / 21 | 6.5 / 17.1 / 37 | 1.5 / 3.9 (2 faces) / none |
| the same rolled +-12 degrees, lens:32 / jpeg:24 | 7.4 / 10.3 | 7.1 / 17.0 | 1.8 / 10.6 (4 faces) |
| the built-in face, 12 seeds, lens:32 / jpeg:24 | 5.2 / 9.1 | 11.9 / 21.7 | none accepted |

The keypoint similarity's scale ranged over 0.69-2.4 times the true one on the built-in face, the
box's over 0.63-1.07. Limitation: the box is relatively wider on tiny faces, so the crop comes out
too wide by a median 11 % at 32 px and 22 % at 24 px (CelebA), the face a little small in the LR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr import landmark_graph
from edge_affectsr.protocol import HR_SIZE, resize
from edge_affectsr.runtime.detect import KEYPOINT_NAMES, Detection

# FaceMesh points that expressions move least: eye corners (outer, inner: subject's right then
# left), nose bridge, nose tip, mouth corners. (Brows, lips and the chin move with expressions.)
STABLE_POINTS = (33, 133, 362, 263, 168, 1, 61, 291)
# BlazeFace keypoints used by the fallback (runtime/detect.py's KEYPOINT_NAMES) -> the FaceMesh points
# whose mean-shape mean is that keypoint (module doc).
KEYPOINT_MESH_POINTS = {"right_eye": (33, 133), "left_eye": (362, 263), "nose_tip": (1,), "mouth_center": (13, 14)}
# BlazeFace's mean detection on CelebA-aligned crops, normalised to the crop (measured once on 50
# CelebA val faces): box (x0, y0, x1, y1) and keypoints in KEYPOINT_NAMES order.
CANONICAL_BOX = (0.247, 0.377, 0.768, 0.898)
CANONICAL_KEYPOINTS = ((0.396, 0.526), (0.607, 0.527), (0.494, 0.658), (0.496, 0.761), (0.293, 0.565), (0.729, 0.569))
# Keypoint roll: prior sd of a head's roll (degrees) and the keypoints' angle noise x eye distance
# (degrees x px: measured sd 13 / 22 / 47 degrees at eye distances 6.6 / 5 / 3.3 px).
ROLL_PRIOR_DEG = 10.0
ROLL_NOISE_DEG_PX = 100.0


class AlignConfig(BaseModel):
    """The ``align:`` section of the device config."""

    model_config = ConfigDict(extra="forbid")
    downsample: Literal["bicubic", "area"] = Field(
        "bicubic", description="HR crop -> LR: bicubic (the training protocol) or area")


@dataclass(frozen=True)
class AlignedFace:
    """One face ready for the SR model.

    ``lr`` uint8 RGB ``[s, s, 3]``; ``hr`` the 128x128 aligned crop it came from (RGB);
    ``landmarks`` ``[N, 2]`` float32 in [0, 1] of the crop (the bundle's subset);
    ``landmarks_full`` the same for all 478 points; ``matrix`` 2x3 frame pixels -> crop pixels
    (128 scale); ``face_px`` the crop's side in frame pixels; ``found`` False when the landmarks are
    the mean shape (aligned from the detector's keypoints: the SR model's ``found`` flag).
    """

    lr: np.ndarray
    hr: np.ndarray
    landmarks: np.ndarray
    landmarks_full: np.ndarray
    matrix: np.ndarray
    face_px: float
    found: bool = True


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (no reflection) that maps ``src`` [n, 2] onto ``dst`` [n, 2] in least squares (Umeyama 1991)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
    flip = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ flip @ vt
    var_s = (s ** 2).sum() / len(src)
    scale = float(np.trace(np.diag(sigma) @ flip) / var_s) if var_s > 0 else 1.0
    translation = mu_d - scale * rotation @ mu_s
    return np.hstack([scale * rotation, translation[:, None]])


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to points ``[n, 2]``."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def matrix_scale(matrix: np.ndarray) -> float:
    """The isotropic scale of a similarity matrix."""
    return math.hypot(matrix[0, 0], matrix[1, 0])


class Aligner:
    """``aligner(frame_bgr, landmarks_px)`` -> :class:`AlignedFace` for the bundle's LR size and subset."""

    def __init__(self, lr_size: int, nodes: np.ndarray, config: AlignConfig | None = None) -> None:
        self.config = config or AlignConfig()
        self.lr_size = int(lr_size)
        self.nodes = np.asarray(nodes, dtype=np.int64)
        self._stable = np.array(STABLE_POINTS)
        self._template = landmark_graph.mean_shape()[self._stable].astype(np.float64) * HR_SIZE
        self._keypoints = np.array([KEYPOINT_NAMES.index(name) for name in KEYPOINT_MESH_POINTS])
        self._keypoint_template = keypoint_template() * HR_SIZE

    def fit(self, landmarks_px: np.ndarray) -> np.ndarray:
        """The 2x3 matrix taking frame pixels to 128-px crop pixels."""
        return similarity_transform(landmarks_px[self._stable], self._template)

    def fit_keypoints(self, detection: Detection) -> np.ndarray:
        """The same matrix from a BlazeFace detection (frame pixels): scale and position from the box,
        roll from the eye, nose-tip and mouth keypoints, shrunk towards upright (module doc)."""
        keypoints = np.asarray(detection.keypoints, np.float64)
        fitted = similarity_transform(keypoints[self._keypoints], self._keypoint_template)
        right_eye, left_eye = keypoints[self._keypoints[:2]]
        noise = ROLL_NOISE_DEG_PX / max(float(np.linalg.norm(left_eye - right_eye)), 1e-6)
        angle = math.atan2(fitted[1, 0], fitted[0, 0]) * ROLL_PRIOR_DEG ** 2 / (ROLL_PRIOR_DEG ** 2 + noise ** 2)
        x0, y0, x1, y1 = detection.bbox
        scale = (CANONICAL_BOX[2] - CANONICAL_BOX[0]) * HR_SIZE / max(x1 - x0, 1e-6)
        linear = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        centre = np.array([CANONICAL_BOX[0] + CANONICAL_BOX[2], CANONICAL_BOX[1] + CANONICAL_BOX[3]]) / 2 * HR_SIZE
        return np.hstack([linear, (centre - linear @ np.array([(x0 + x1) / 2, (y0 + y1) / 2]))[:, None]])

    def __call__(self, frame_bgr: np.ndarray, landmarks_px: np.ndarray) -> AlignedFace:
        """Warp the face with 478 landmarks ``landmarks_px`` (frame pixels) out of a BGR frame."""
        matrix = self.fit(landmarks_px)
        full = (transform_points(matrix, landmarks_px) / HR_SIZE).astype(np.float32)
        return self._aligned(frame_bgr, matrix, full, found=True)

    def from_keypoints(self, frame_bgr: np.ndarray, detection: Detection) -> AlignedFace:
        """Warp a face FaceMesh rejected, placed from its detection; its landmarks are the mean shape,
        ``found=False`` (module doc)."""
        matrix = self.fit_keypoints(detection)
        return self._aligned(frame_bgr, matrix, landmark_graph.mean_shape().astype(np.float32), found=False)

    def _aligned(self, frame_bgr: np.ndarray, matrix: np.ndarray, full: np.ndarray, found: bool) -> AlignedFace:
        hr = cv2.cvtColor(warp_crop(frame_bgr, matrix, HR_SIZE), cv2.COLOR_BGR2RGB)
        return AlignedFace(lr=self.downsample(hr), hr=hr, landmarks=full[self.nodes], landmarks_full=full,
                           matrix=matrix, face_px=HR_SIZE / matrix_scale(matrix), found=found)

    def downsample(self, hr_rgb: np.ndarray) -> np.ndarray:
        """HR crop -> LR, as the training protocol does (or OpenCV's box filter)."""
        if self.config.downsample == "bicubic":
            return resize(hr_rgb, self.lr_size)
        return cv2.resize(hr_rgb, (self.lr_size, self.lr_size), interpolation=cv2.INTER_AREA)


def keypoint_template() -> np.ndarray:
    """Where BlazeFace's eye, nose-tip and mouth keypoints sit in an aligned crop: ``[4, 2]`` in [0, 1]
    (the mean shape's points of :data:`KEYPOINT_MESH_POINTS`, in that order)."""
    mean = landmark_graph.mean_shape().astype(np.float64)
    return np.stack([mean[list(points)].mean(axis=0) for points in KEYPOINT_MESH_POINTS.values()])


def warp_crop(frame: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` crop that ``matrix`` (frame -> crop) describes, bilinear with replicated
    borders; when the crop shrinks the face more than 2x, the covered region is box-filtered down first."""
    frame, matrix = _prescale(frame, matrix, size)
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _prescale(frame: np.ndarray, matrix: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(region of the frame shrunk with INTER_AREA to about the crop's scale, matrix for it)."""
    scale = matrix_scale(matrix)
    if scale >= 0.5:
        return frame, matrix
    corners = transform_points(cv2.invertAffineTransform(matrix), np.array([[0, 0], [size, 0], [0, size], [size, size]], float))
    h, w = frame.shape[:2]
    x0, y0 = np.clip(np.floor(corners.min(axis=0)) - 2, 0, [w - 1, h - 1]).astype(int)
    x1, y1 = np.clip(np.ceil(corners.max(axis=0)) + 2, [x0 + 1, y0 + 1], [w, h]).astype(int)
    region = frame[y0:y1, x0:x1]
    new_w, new_h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    small = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
    fx, fy = new_w / (x1 - x0), new_h / (y1 - y0)
    # pixel q of `small` covers frame point (q + 0.5) / f - 0.5 + (x0, y0) (INTER_AREA's centres)
    f = np.array([fx, fy])
    linear = matrix[:, :2] @ np.diag(1 / f)
    offset = matrix[:, :2] @ (np.array([x0, y0], float) + 0.5 / f - 0.5) + matrix[:, 2]
    return small, np.hstack([linear, offset[:, None]])
