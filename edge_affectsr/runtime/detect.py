"""Face detection with BlazeFace short-range (``face_detection_short_range.tflite``, mediapipe 0.10.21).

The model's post-processing lives in mediapipe's C++ graph, not in the ``.tflite``, so it is
rewritten here with the options of ``face_detection_short_range.pbtxt``: SSD anchors (4 layers,
strides 8/16/16/16, fixed size 1, offsets 0.5 -> 2 anchors per 16x16 cell + 6 per 8x8 cell = 896),
box decoding with x/y/w/h scale 128, sigmoid scores clipped at +-100, score threshold 0.5 and
weighted non-maximum suppression at IoU 0.3.

Input is a **BGR** uint8 frame (what OpenCV and every capture source give); it is letterboxed
(aspect kept, centred, mid-grey padding) to 128x128, turned to RGB and scaled to [-1, 1].

BlazeFace short-range sees faces down to roughly 1/8 of its input (~16 px of 128). A face on a
far camera is smaller than that after shrinking a whole 640x480 frame to 128, so the detector can
also run on a grid of overlapping tiles (``tiles: [cols, rows]``) and merge the results with the
same weighted NMS: each tile costs one more model call (2.5-3.5 ms on 2 busy x86 threads), or a
few tiles per call in rotation (``tiles_per_call``). Measured on 640x480 frames (CelebA faces and the
built-in clip; side of the pasted aligned-face square, the face itself is ~60 % of it): the whole
frame alone finds squares from ~110 px, ``[2, 2]`` from ~75 px, ``[3, 2]`` from ~55 px, ``[4, 3]``
from ~40 px.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from edge_affectsr.errors import UserError
from edge_affectsr.runtime.interpreter import InterpreterConfig, Model, load_with_config

INPUT_SIZE = 128
NUM_ANCHORS = 896
NUM_KEYPOINTS = 6
# BlazeFace keypoint order (the subject's right / left): right eye, left eye, nose tip, mouth
# centre, right ear tragion, left ear tragion.
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear", "left_ear")
MODEL_NAME = "face_detection_short_range.tflite"
_PAD_VALUE = 128  # letterbox padding, uint8 (0 after scaling to [-1, 1])


class ModelFileError(UserError):
    """A model file that should ship with mediapipe or in the bundle is missing."""


class DetectorConfig(BaseModel):
    """The ``detector:`` section of the device config. Far faces: the default scans a 3x2 tile grid
    besides the whole frame, one tile per frame in rotation, which bounds the per-frame cost; the
    tracker must then keep a track alive for ceil(tiles / tiles_per_call) frames (and tracked faces
    are looked for around their last box every frame, see roi_detect.py)."""

    model_config = ConfigDict(extra="forbid")
    score_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="BlazeFace score a detection needs")
    iou_threshold: float = Field(
        0.3, gt=0.0, lt=1.0, description="IoU above which detections are merged (weighted NMS)")
    max_faces: int = Field(16, ge=1, description="most faces kept per frame")
    tiles: tuple[PositiveInt, PositiveInt] = Field(
        (3, 2), description="[cols, rows] tile grid scanned besides the whole frame; [1, 1]: whole frame only")
    tile_overlap: float = Field(
        0.25, ge=0.0, lt=1.0, description="overlap between neighbouring tiles, of a tile's side")
    tiles_per_call: int | None = Field(1, ge=1, description="tiles scanned per frame, in rotation; null: all")

    def whole_frame(self) -> DetectorConfig:
        """These settings without tiles: detection inside one region (a track's ROI, a calibration photo)."""
        return self.model_copy(update={"tiles": (1, 1), "tiles_per_call": None})


@dataclass(frozen=True)
class Detection:
    """A face in frame pixels: ``bbox = (x0, y0, x1, y1)``, ``keypoints [6, 2]`` (x, y) in
    :data:`KEYPOINT_NAMES` order, ``score`` in [0, 1]."""

    bbox: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray

    @property
    def width(self) -> float:
        return self.bbox[2] - self.bbox[0]

    @property
    def height(self) -> float:
        return self.bbox[3] - self.bbox[1]


def mediapipe_model_path(name: str) -> Path:
    """A model file inside the installed mediapipe package, found *without importing mediapipe*
    (which is not a device dependency): for tests and for ``convert``, which copies these files
    into bundles. ``name`` is a file name (searched under ``mediapipe/modules``) or a path
    relative to ``mediapipe/``."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"{name}: mediapipe is not installed here; take the model from a bundle "
                             "or pip install mediapipe==0.10.21")
    for root in map(Path, spec.submodule_search_locations):
        direct = root / name
        if direct.is_file():
            return direct
        found = sorted((root / "modules").rglob(Path(name).name))
        if found:
            return found[0]
    raise ModelFileError(f"{name} is not in the installed mediapipe ({list(spec.submodule_search_locations)}); "
                         "mediapipe 0.10.21 is the last release that ships it")


def ssd_anchors(input_size: int = INPUT_SIZE, strides: tuple[int, ...] = (8, 16, 16, 16),
                offset: float = 0.5) -> np.ndarray:
    """Anchor centres ``[896, 2]`` (x, y) normalised to the input, as mediapipe's
    SsdAnchorsCalculator makes them with ``fixed_anchor_size`` (every anchor is 1 x 1, so only
    the centres matter). Consecutive layers with the same stride share one grid; each layer adds
    2 anchors per cell (aspect ratio 1 plus the interpolated scale)."""
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        same = 0
        while layer < len(strides) and strides[layer] == stride:
            same += 1
            layer += 1
        cells = math.ceil(input_size / stride)
        ys, xs = np.meshgrid((np.arange(cells) + offset) / cells, (np.arange(cells) + offset) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, 2 * same, axis=0))
    return np.concatenate(centres).astype(np.float32)


def decode(regressors: np.ndarray, scores: np.ndarray, anchors: np.ndarray,
           threshold: float, scale: float = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw model outputs -> ``(boxes [n, 4] x0 y0 x1 y1, keypoints [n, 6, 2], scores [n])`` of the
    anchors that pass ``threshold``, normalised to the model input. Only passing rows are decoded."""
    logits = np.clip(scores.reshape(-1), -100.0, 100.0)
    keep = np.flatnonzero(logits >= math.log(threshold / (1.0 - threshold)))  # sigmoid(l) >= t
    probs = 1.0 / (1.0 + np.exp(-logits[keep].astype(np.float64)))
    raw = regressors.reshape(-1, 16)[keep] / scale
    centre = anchors[keep]
    cx, cy = raw[:, 0] + centre[:, 0], raw[:, 1] + centre[:, 1]
    half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    keypoints = raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) + centre[:, None, :]
    return boxes, keypoints, probs.astype(np.float32)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``[n, 4]`` and ``[m, 4]`` (x0, y0, x1, y1)."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
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


def tile_regions(width: int, height: int, cols: int, rows: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """``(x, y, w, h)`` of a ``cols x rows`` grid of tiles covering the frame, neighbours sharing
    ``overlap`` of a tile's side; [1, 1] is the whole frame."""
    def spans(size: int, n: int) -> list[tuple[int, int]]:
        if n == 1:
            return [(0, size)]
        side = size / (n - (n - 1) * overlap)
        step = side * (1 - overlap)
        return [(int(round(i * step)), int(round(min(size, i * step + side)))) for i in range(n)]
    return [(x0, y0, x1 - x0, y1 - y0) for (y0, y1) in spans(height, rows) for (x0, x1) in spans(width, cols)]


class FaceDetector:
    """BlazeFace short-range on BGR frames; ``detect(frame)`` -> ``list[Detection]`` in frame pixels,
    best first. Anchors and the input buffer are made once; one instance per thread."""

    def __init__(self, model_path: str | Path, config: DetectorConfig | None = None,
                 interpreter: InterpreterConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        # default: the CPU; these models are not compiled for an accelerator (the bundle loader says the same)
        self.model: Model = load_with_config(model_path, interpreter or InterpreterConfig().on_cpu())
        self._input = self.model.input()
        self._regressors, self._scores = _output_names(self.model)
        if self._input.shape != (1, INPUT_SIZE, INPUT_SIZE, 3):
            raise ModelFileError(f"{model_path}: expected a 1x128x128x3 BlazeFace input, got {self._input.shape}")
        self.anchors = ssd_anchors()
        self._canvas = np.full((INPUT_SIZE, INPUT_SIZE, 3), _PAD_VALUE, np.uint8)
        self._rgb = np.empty_like(self._canvas)
        self._tensor = np.empty((1, INPUT_SIZE, INPUT_SIZE, 3), np.float32)
        self._regions_for: tuple[int, int] | None = None
        self._tiles: list[tuple[int, int, int, int]] = []
        self._next_tile = 0

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8 frame (``H x W x 3``), best first."""
        h, w = frame_bgr.shape[:2]
        found = [self._detect_region(frame_bgr, region) for region in self._regions_this_call(w, h)]
        boxes = np.concatenate([f[0] for f in found])
        if len(boxes) == 0:
            return []
        keypoints = np.concatenate([f[1] for f in found])
        scores = np.concatenate([f[2] for f in found])
        return weighted_nms(boxes, keypoints, scores, self.config.iou_threshold, self.config.max_faces)

    __call__ = detect

    def _regions_this_call(self, w: int, h: int) -> list[tuple[int, int, int, int]]:
        """The whole frame, then all tiles or the next ``tiles_per_call`` of them in rotation."""
        if self._regions_for != (w, h):
            cols, rows = self.config.tiles
            self._tiles = [] if (cols, rows) == (1, 1) else tile_regions(w, h, cols, rows, self.config.tile_overlap)
            self._regions_for, self._next_tile = (w, h), 0
        k = self.config.tiles_per_call
        if not self._tiles or k is None or k >= len(self._tiles):
            return [(0, 0, w, h), *self._tiles]
        picked = [self._tiles[(self._next_tile + i) % len(self._tiles)] for i in range(k)]
        self._next_tile = (self._next_tile + k) % len(self._tiles)
        return [(0, 0, w, h), *picked]

    def _detect_region(self, frame: np.ndarray, region: tuple[int, int, int, int]):
        """Candidates (before NMS) of one region, mapped to frame pixels."""
        x, y, w, h = region
        scale, pad_x, pad_y = self._letterbox(frame[y:y + h, x:x + w])
        out = self.model.run(**{self._input.name: self._tensor})
        boxes, kps, scores = decode(out[self._regressors], out[self._scores], self.anchors,
                                    self.config.score_threshold)
        # normalised letterbox coordinates -> region pixels -> frame pixels
        boxes = (boxes * INPUT_SIZE - [pad_x, pad_y, pad_x, pad_y]) / scale + [x, y, x, y]
        kps = (kps * INPUT_SIZE - [pad_x, pad_y]) / scale + [x, y]
        return boxes, kps, scores

    def _letterbox(self, image: np.ndarray) -> tuple[float, int, int]:
        """Fit ``image`` into the 128x128 input (aspect kept, centred), RGB in [-1, 1]; returns the
        scale and the padding so detections can be mapped back."""
        h, w = image.shape[:2]
        scale = INPUT_SIZE / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        pad_x, pad_y = (INPUT_SIZE - nw) // 2, (INPUT_SIZE - nh) // 2
        self._canvas[:] = _PAD_VALUE
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        self._canvas[pad_y:pad_y + nh, pad_x:pad_x + nw] = cv2.resize(image, (nw, nh), interpolation=interp)
        cv2.cvtColor(self._canvas, cv2.COLOR_BGR2RGB, dst=self._rgb)
        np.multiply(self._rgb, np.float32(1 / 127.5), out=self._tensor[0], casting="unsafe")
        self._tensor -= 1.0
        return scale, pad_x, pad_y


def _output_names(model: Model) -> tuple[str, str]:
    """(regressors, classificators) by shape, so a renamed conversion still works."""
    by_width = {t.shape[-1]: name for name, t in model.outputs.items()}
    if set(by_width) != {16, 1}:
        raise ModelFileError(f"{model.choice.model}: expected BlazeFace outputs [1, 896, 16] and [1, 896, 1], "
                             f"got {[t.shape for t in model.outputs.values()]}")
    return by_width[16], by_width[1]
