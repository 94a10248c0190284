"""Face detection with mediapipe 0.10.21's BlazeFace models: short-range (``face_detection_short_range.tflite``,
128x128 input) or full-range (``face_detection_full_range_sparse.tflite``, 192x192).

The models' post-processing lives in mediapipe's C++ graph, not in the ``.tflite``, so it is
rewritten here with the options of ``face_detection_short_range.pbtxt`` / ``face_detection_full_range.pbtxt``:
SSD anchors (short: 4 layers, strides 8/16/16/16, 2 anchors per cell and layer -> 896; full: one
layer of stride 4, 1 anchor per cell -> 2304), fixed size 1, offsets 0.5, box decoding with x/y/w/h
scale = the input side, sigmoid scores clipped at +-100, a score threshold and weighted non-maximum
suppression at IoU 0.3. Which one a file is comes from its input and output shapes.

Input is a **BGR** uint8 frame (what OpenCV and every capture source give); each region is
letterboxed (aspect kept, centred, mid-grey padding) to the model's input, turned to RGB and
scaled to [-1, 1].

A model sees faces down to a fixed size *in its input* (:attr:`SsdSpec.min_face`), so a small face
in a big frame needs a region of the frame that is small enough: the detector scans the whole
frame plus a tile schedule (runtime/scan.py: fixed ``tiles``, or zoom levels down to
``min_face_px``), a few tiles per call in rotation (``scan_frames``, ``tiles_per_call``), and merges
the regions' candidates across tiles (runtime/nms.py). Each region is one model call.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from edge_affectsr.errors import UserError
from edge_affectsr.runtime.interpreter import InterpreterConfig, Model, load_with_config
from edge_affectsr.runtime.scan import Region, ScanSchedule
from edge_affectsr.runtime.nms import Candidates, Detection, iou_matrix, merge_regions, weighted_nms  # noqa: F401 (re-exported)

INPUT_SIZE = 128  # the short-range model's input side
NUM_ANCHORS = 896  # the short-range model's anchors
NUM_KEYPOINTS = 6
# BlazeFace keypoint order (the subject's right / left): right eye, left eye, nose tip, mouth
# centre, right ear tragion, left ear tragion.
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear", "left_ear")
MODEL_NAME = "face_detection_short_range.tflite"
FULL_RANGE_NAME = "face_detection_full_range_sparse.tflite"
_PAD_VALUE = 128  # letterbox padding, uint8 (0 after scaling to [-1, 1])


class ModelFileError(UserError):
    """A model file that should ship with mediapipe or in the bundle is missing."""


@dataclass(frozen=True)
class SsdSpec:
    """One BlazeFace model's anchor layout and range. ``min_face``: the narrowest face box (input px)
    the zoom levels are built for (runtime/scan.py): where the model still finds camera-degraded faces
    (docs/crowd.md, the candidates table)."""

    name: str
    file: str
    input_size: int
    strides: tuple[int, ...]
    anchors_per_layer: int
    min_face: float

    @property
    def num_anchors(self) -> int:
        return len(ssd_anchors(self.input_size, self.strides, per_layer=self.anchors_per_layer))


MODELS = {
    "short_range": SsdSpec("short_range", MODEL_NAME, INPUT_SIZE, (8, 16, 16, 16), 2, 16.0),
    "full_range": SsdSpec("full_range", FULL_RANGE_NAME, 192, (4,), 1, 12.0),
}


class DetectorConfig(BaseModel):
    """The ``detector:`` section of the device config. Far faces: besides the whole frame the
    detector scans tiles in rotation, a round every ``scan_frames`` frames, which bounds the per-frame
    cost (tracked faces are looked for around their last box every frame, see roi_detect.py). The tiles are the zoom
    levels down to ``min_face_px`` (runtime/scan.py) unless a fixed ``tiles`` grid is given. Which
    model runs is the bundle's ``face_detector`` file (short- or full-range, told by its shapes), or
    its ``face_detector_int8`` (``precision``)."""

    model_config = ConfigDict(extra="forbid")
    score_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="BlazeFace score a detection needs")
    iou_threshold: float = Field(
        0.3, gt=0.0, lt=1.0, description="IoU above which detections are merged (weighted NMS)")
    max_faces: int = Field(64, ge=1, description="most faces kept per frame")
    min_face_px: float = Field(
        20.0, ge=4.0, description="narrowest face box (frame px) the zoom levels are made to find; ignored with tiles")
    tiles: tuple[PositiveInt, PositiveInt] | None = Field(
        None, description="a fixed [cols, rows] tile grid scanned besides the whole frame instead of the zoom "
        "levels; [1, 1]: whole frame only")
    tile_overlap: float = Field(
        0.25, ge=0.0, lt=1.0, description="overlap between neighbouring tiles, of a tile's side")
    tiles_per_call: int | None = Field(1, ge=1, description="tiles scanned per frame at least, in rotation; null: all")
    scan_frames: int | None = Field(
        8, ge=1, description="frames for one round of every tile: each frame scans 1 / scan_frames of them (at least "
        "tiles_per_call), so a new face is found within this many frames; null: tiles_per_call per frame")
    precision: Literal["auto", "int8", "float"] = Field(
        "auto", description="which of the bundle's detector files runs: int8 (face_detector_int8, gated against the "
        "float one by convert), float (face_detector, mediapipe's own) or auto: int8 when the bundle has it")

    @model_validator(mode="after")
    def _zoom_needs_overlap(self) -> DetectorConfig:
        if self.tiles is None and self.tile_overlap <= 0:
            raise ValueError("the zoom levels need tiles that overlap: tile_overlap > 0 (or a fixed tiles grid)")
        return self

    def whole_frame(self) -> DetectorConfig:
        """These settings without tiles: detection inside one region (a track's ROI, a calibration photo)."""
        return self.model_copy(update={"tiles": (1, 1), "tiles_per_call": None})


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
                offset: float = 0.5, per_layer: int = 2) -> np.ndarray:
    """Anchor centres ``[n, 2]`` (x, y) normalised to the input (896 for the short-range defaults),
    as mediapipe's SsdAnchorsCalculator makes them with ``fixed_anchor_size`` (every anchor is 1 x 1,
    so only the centres matter). Consecutive layers with the same stride share one grid; each layer
    adds ``per_layer`` anchors per cell (2: aspect ratio 1 plus the interpolated scale; 1 when the
    interpolated scale is off, as in the full-range model)."""
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
        centres.append(np.repeat(grid, per_layer * same, axis=0))
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


class FaceDetector:
    """BlazeFace (short- or full-range, told apart by the file's shapes) on BGR frames;
    ``detect(frame)`` -> ``list[Detection]`` in frame pixels, best first, over this call's regions of
    the scan schedule. Anchors and the input buffer are made once; one instance per thread."""

    def __init__(self, model_path: str | Path, config: DetectorConfig | None = None,
                 interpreter: InterpreterConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        # default: the CPU; these models are not compiled for an accelerator (the bundle loader says the same)
        self.model: Model = load_with_config(model_path, interpreter or InterpreterConfig().on_cpu())
        self._input = self.model.input()
        self._regressors, self._scores = _output_names(self.model)
        self.spec = _spec_of(self.model, self._input.shape, self.model.outputs[self._scores].shape)
        size = self.size = self.spec.input_size
        self.anchors = ssd_anchors(size, self.spec.strides, per_layer=self.spec.anchors_per_layer)
        self._canvas = np.full((size, size, 3), _PAD_VALUE, np.uint8)
        self._rgb = np.empty_like(self._canvas)
        self._tensor = np.empty((1, size, size, 3), np.float32)
        cfg = self.config
        self.schedule = ScanSchedule(size, self.spec.min_face, cfg.min_face_px, cfg.tile_overlap, cfg.tiles,
                                     cfg.tiles_per_call, cfg.scan_frames)

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8 frame (``H x W x 3``), best first: the whole frame and this frame's tiles."""
        h, w = frame_bgr.shape[:2]
        return self.detect_regions(frame_bgr, self.schedule.regions(w, h))

    __call__ = detect

    def detect_regions(self, frame_bgr: np.ndarray, regions: list[Region]) -> list[Detection]:
        """Faces in the given regions ``(x, y, w, h)`` of a frame, merged across regions, best first."""
        found = [self._detect_region(frame_bgr, region) for region in regions]
        return merge_regions(found, self.config.iou_threshold, self.config.max_faces)

    def detect_input(self, image_bgr: np.ndarray) -> Candidates:
        """Candidates (before NMS) of an image already at the model's input size (e.g. a mosaic of
        regions, runtime/roi_detect.py), in that image's pixels."""
        self._canvas[:] = image_bgr
        return self._run()

    def _detect_region(self, frame: np.ndarray, region: Region) -> Candidates:
        """Candidates (before NMS) of one region, mapped to frame pixels."""
        x, y, w, h = region
        scale, pad_x, pad_y = self._letterbox(frame[y:y + h, x:x + w])
        boxes, kps, scores = self._run()
        # input pixels -> region pixels -> frame pixels
        boxes = (boxes - [pad_x, pad_y, pad_x, pad_y]) / scale + [x, y, x, y]
        kps = (kps - [pad_x, pad_y]) / scale + [x, y]
        return boxes, kps, scores

    def model_input(self, frame_bgr: np.ndarray, region: Region) -> np.ndarray:
        """What the model is fed for one region of a frame: float32 RGB ``[size, size, 3]`` in [-1, 1]
        (a copy), e.g. to calibrate an int8 conversion on exactly the device's inputs."""
        x, y, w, h = region
        self._letterbox(frame_bgr[y:y + h, x:x + w])
        return self._prepare()[0].copy()

    def _prepare(self) -> np.ndarray:
        """The canvas (BGR uint8) as the model's real-valued input ``[1, size, size, 3]``."""
        cv2.cvtColor(self._canvas, cv2.COLOR_BGR2RGB, dst=self._rgb)
        np.multiply(self._rgb, np.float32(1 / 127.5), out=self._tensor[0], casting="unsafe")
        self._tensor -= 1.0
        return self._tensor

    def _run(self) -> Candidates:
        """The model on the canvas (BGR, input size): passing candidates in input pixels. An int8
        model's input is quantised and its outputs dequantised as its tensors say."""
        name = self._input.name
        out = self.model.run(**{name: self.model.quantize(name, self._prepare())})
        regressors, scores = (self.model.dequantize(k, out[k]) for k in (self._regressors, self._scores))
        boxes, kps, probs = decode(regressors, scores, self.anchors, self.config.score_threshold, self.size)
        return boxes * self.size, kps * self.size, probs

    def _letterbox(self, image: np.ndarray) -> tuple[float, int, int]:
        """Fit ``image`` into the canvas (aspect kept, centred); returns the scale and the padding so
        detections can be mapped back."""
        h, w = image.shape[:2]
        scale = self.size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        pad_x, pad_y = (self.size - nw) // 2, (self.size - nh) // 2
        self._canvas[:] = _PAD_VALUE
        self._canvas[pad_y:pad_y + nh, pad_x:pad_x + nw] = resample(image, nw, nh)
        return scale, pad_x, pad_y


def resample(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` at ``width x height`` for the detector: box filter (INTER_AREA) when shrinking by more than
    2x, else bilinear. Why not always INTER_AREA: at non-integer factors near 1 (a 160 px tile to 128)
    OpenCV's box filter costs about as much as the model call, and bilinear barely aliases there."""
    shrink = width < image.shape[1] * 0.5 or height < image.shape[0] * 0.5
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _spec_of(model: Model, input_shape: tuple[int, ...], scores_shape: tuple[int, ...]) -> SsdSpec:
    """The BlazeFace model a file is, from its input side and anchor count."""
    for spec in MODELS.values():
        if input_shape == (1, spec.input_size, spec.input_size, 3) and scores_shape[-2] == spec.num_anchors:
            return spec
    raise ModelFileError(f"{model.choice.model}: not a BlazeFace model this runtime knows (input {input_shape}, "
                         f"scores {scores_shape}); expected short-range 1x128x128x3 / 896 or full-range 1x192x192x3 / 2304")


def _output_names(model: Model) -> tuple[str, str]:
    """(regressors, classificators) by shape, so a renamed conversion still works."""
    by_width = {t.shape[-1]: name for name, t in model.outputs.items()}
    if set(by_width) != {16, 1}:
        raise ModelFileError(f"{model.choice.model}: expected BlazeFace outputs [1, N, 16] and [1, N, 1], "
                             f"got {[t.shape for t in model.outputs.values()]}")
    return by_width[16], by_width[1]
