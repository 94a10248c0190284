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

# FaceMesh points that expressions move least: eye corners (outer, inner: subject's right then
# left), nose bridge, nose tip, mouth corners. (Brows, lips and the chin move with expressions.)
STABLE_POINTS = (33, 133, 362, 263, 168, 1, 61, 291)


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
    (128 scale); ``face_px`` the crop's side in frame pixels.
    """

    lr: np.ndarray
    hr: np.ndarray
    landmarks: np.ndarray
    landmarks_full: np.ndarray
    matrix: np.ndarray
    face_px: float


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

    def fit(self, landmarks_px: np.ndarray) -> np.ndarray:
        """The 2x3 matrix taking frame pixels to 128-px crop pixels."""
        return similarity_transform(landmarks_px[self._stable], self._template)

    def __call__(self, frame_bgr: np.ndarray, landmarks_px: np.ndarray) -> AlignedFace:
        """Warp the face with 478 landmarks ``landmarks_px`` (frame pixels) out of a BGR frame."""
        matrix = self.fit(landmarks_px)
        hr = cv2.cvtColor(warp_crop(frame_bgr, matrix, HR_SIZE), cv2.COLOR_BGR2RGB)
        full = (transform_points(matrix, landmarks_px) / HR_SIZE).astype(np.float32)
        return AlignedFace(lr=self.downsample(hr), hr=hr, landmarks=full[self.nodes], landmarks_full=full,
                           matrix=matrix, face_px=HR_SIZE / matrix_scale(matrix))

    def downsample(self, hr_rgb: np.ndarray) -> np.ndarray:
        """HR crop -> LR, as the training protocol does (or OpenCV's box filter)."""
        if self.config.downsample == "bicubic":
            return resize(hr_rgb, self.lr_size)
        return cv2.resize(hr_rgb, (self.lr_size, self.lr_size), interpolation=cv2.INTER_AREA)


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
