"""FaceMesh landmarks with ``face_landmark.tflite`` (mediapipe 0.10.21): 468 mesh points per face.

The crop follows mediapipe's FaceLandmarkFrontCpu graph: the detection's box, made square on its
long side and enlarged 1.5x, **rotated** so the line from the right to the left eye keypoint is
horizontal (one ``cv2.warpAffine``: rotating costs nothing over a plain crop, and FaceMesh is
markedly worse on tilted faces without it), sampled to 192x192 RGB in [0, 1] with replicated
borders. The model returns 468 (x, y, z) in crop pixels and a face-presence logit (sigmoid ->
probability; mediapipe drops faces under 0.5).

Iris (v1 limitation): the core's graph has 478 nodes, the last 10 being the irises that mediapipe
gets from a second model, ``iris_landmark.tflite``. Here each iris's 5 nodes (centre and ring) are
all set to the mean of that eye's contour (``landmark_graph.regions()``): about right for the
centre of a forward-looking eye, no ring, no gaze. Models trained on real iris points see a
slightly different input there; running the iris model is the upgrade path.

Not done (v1): z is dropped (the SR models take x, y only); no landmark-based ROI for the next
frame (mediapipe's tracking shortcut): every face is cropped from its detection.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr import landmark_graph
from edge_affectsr.runtime.detect import Detection, ModelFileError
from edge_affectsr.runtime.interpreter import InterpreterConfig, Model, load_with_config

INPUT_SIZE = 192
NUM_MESH = 468
MODEL_NAME = "face_landmark.tflite"


class LandmarkConfig(BaseModel):
    """The ``landmarks:`` section of the device config."""

    model_config = ConfigDict(extra="forbid")
    presence_threshold: float = Field(
        0.5, gt=0.0, lt=1.0, description="FaceMesh face-presence score below which a face's landmarks are rejected")
    scale: float = Field(1.5, gt=1.0, le=3.0, description="crop side / long side of the detection box")
    rotate: bool = Field(True, description="level the eyes before FaceMesh, as mediapipe does")
    fallback: Literal["keypoints", "skip"] = Field(
        "keypoints", description="a detected face FaceMesh rejects: keypoints = align it from the detection (box, "
        "eye/nose/mouth keypoints) and upscale it with the mean face shape (found=False, as the SR models were "
        "trained); skip = drop it (counted as no_landmarks)")


@dataclass(frozen=True)
class Roi:
    """A rotated square in frame pixels: centre, side, angle (radians, y down, clockwise)."""

    cx: float
    cy: float
    side: float
    angle: float

    def crop_to_frame(self, size: int = INPUT_SIZE) -> np.ndarray:
        """2x3 affine matrix taking crop pixels ``(u, v)`` of a ``size`` crop to frame pixels."""
        k = self.side / size
        c, s = math.cos(self.angle) * k, math.sin(self.angle) * k
        half = size / 2.0
        return np.array([[c, -s, self.cx - c * half + s * half],
                         [s, c, self.cy - s * half - c * half]], dtype=np.float64)


def roi_from_detection(det: Detection, scale: float = 1.5, rotate: bool = True) -> Roi:
    """mediapipe's DetectionsToRects (eye keypoints -> angle) + RectTransformation (square on the
    long side, x ``scale``)."""
    x0, y0, x1, y1 = det.bbox
    angle = 0.0
    if rotate:
        (rx, ry), (lx, ly) = det.keypoints[0], det.keypoints[1]
        angle = math.atan2(float(ly - ry), float(lx - rx))
    return Roi((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * scale, angle)


@dataclass(frozen=True)
class FaceLandmarks:
    """478 landmarks ``(x, y)`` in frame pixels (iris nodes estimated, see the module doc), the
    face-presence probability and the crop they came from."""

    points: np.ndarray
    presence: float
    roi: Roi

    def normalised(self, box: tuple[float, float, float, float]) -> np.ndarray:
        """Landmarks ``[478, 2]`` float32 in [0, 1] of ``box = (x0, y0, x1, y1)`` (e.g. the face
        crop handed to the SR model), the convention of the core and the training data."""
        x0, y0, x1, y1 = box
        return ((self.points - (x0, y0)) / (x1 - x0, y1 - y0)).astype(np.float32)


def fill_iris(mesh: np.ndarray) -> np.ndarray:
    """``[468, 2]`` mesh -> ``[478, 2]`` with each iris's 5 nodes at its eye contour's mean."""
    out = np.empty((landmark_graph.NUM_LANDMARKS, 2), dtype=np.float32)
    out[:NUM_MESH] = mesh
    for eye, iris in _eye_and_iris_nodes():
        out[iris] = mesh[eye].mean(axis=0)
    return out


@functools.lru_cache(maxsize=1)
def _eye_and_iris_nodes() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    regions = landmark_graph.regions()
    return tuple((np.array(regions[f"{side}_eye"]), np.array(regions[f"{side}_iris"])) for side in ("right", "left"))


class FaceLandmarker:
    """FaceMesh on one detected face of a BGR frame; one instance per thread."""

    def __init__(self, model_path: str | Path, config: LandmarkConfig | None = None,
                 interpreter: InterpreterConfig | None = None) -> None:
        self.config = config or LandmarkConfig()
        # default: the CPU; these models are not compiled for an accelerator (the bundle loader says the same)
        self.model: Model = load_with_config(model_path, interpreter or InterpreterConfig().on_cpu())
        self._input = self.model.input()
        if self._input.shape != (1, INPUT_SIZE, INPUT_SIZE, 3):
            raise ModelFileError(f"{model_path}: expected a 1x192x192x3 FaceMesh input, got {self._input.shape}")
        self._mesh, self._flag = _output_names(self.model)
        self._crop = np.empty((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
        self._rgb = np.empty_like(self._crop)
        self._tensor = np.empty((1, INPUT_SIZE, INPUT_SIZE, 3), np.float32)

    def __call__(self, frame_bgr: np.ndarray, detection: Detection) -> FaceLandmarks:
        """Landmarks of the face ``detection`` found in ``frame_bgr`` (BGR uint8)."""
        roi = roi_from_detection(detection, self.config.scale, self.config.rotate)
        to_frame = roi.crop_to_frame()
        cv2.warpAffine(frame_bgr, to_frame, (INPUT_SIZE, INPUT_SIZE), dst=self._crop,
                       flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        cv2.cvtColor(self._crop, cv2.COLOR_BGR2RGB, dst=self._rgb)
        np.multiply(self._rgb, np.float32(1 / 255.0), out=self._tensor[0], casting="unsafe")
        out = self.model.run(**{self._input.name: self._tensor})
        mesh_crop = out[self._mesh].reshape(NUM_MESH, 3)[:, :2]
        mesh = mesh_crop @ to_frame[:, :2].T + to_frame[:, 2]
        logit = float(np.clip(out[self._flag].reshape(-1)[0], -100.0, 100.0))
        return FaceLandmarks(fill_iris(mesh), 1.0 / (1.0 + math.exp(-logit)), roi)

    def found(self, landmarks: FaceLandmarks) -> bool:
        """Whether FaceMesh saw a face in the crop (presence over the configured threshold)."""
        return landmarks.presence >= self.config.presence_threshold


def _output_names(model: Model) -> tuple[str, str]:
    """(landmarks [.., 1404], presence [.., 1]) by size, so a renamed conversion still works."""
    by_size = {int(np.prod(t.shape)): name for name, t in model.outputs.items()}
    if NUM_MESH * 3 not in by_size or 1 not in by_size:
        raise ModelFileError(f"{model.choice.model}: expected FaceMesh outputs of 1404 and 1 values, "
                             f"got {[t.shape for t in model.outputs.values()]}")
    return by_size[NUM_MESH * 3], by_size[1]
