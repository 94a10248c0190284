"""The per-frame pipeline: detect -> per face: landmarks, size checks, align, SR, guard, track -> events.

Why this shape: every stage is timed with ``time.perf_counter`` and recorded in
:class:`~edge_affectsr.device.reporting.stats.Stats` under a fixed stage name (``detect``, ``landmarks``, ``align``,
``sr``, ``guard``, and ``frame`` for the whole frame), so ``/api/stats``, ``/metrics`` and
``bench`` all report the same numbers. Faces that cannot be upscaled (too small, too large,
FaceMesh finds no face) are counted, never raised; a frame that is not an image (corrupt decode,
wrong dtype) is counted under ``errors`` and skipped. The pipeline owns no thread and no sink: it
turns one frame into :class:`FrameResult` (events + the images behind them) and the daemon or the
benchmark decides where they go.

A face FaceMesh rejects (common on small, blurred camera faces) is, with ``landmarks.fallback:
keypoints`` (the default), aligned from its detection instead and upscaled with the mean face shape
flagged not found, as the SR models were trained
(:meth:`~edge_affectsr.runtime.align.Aligner.from_keypoints`); its event says ``"landmarks":
"keypoints"``, the guard skips its landmark check, and the ``keypoint_faces`` counter counts it.
With ``fallback: skip`` it is dropped and counted under ``no_landmarks``.

Reporting: ``report: frame`` gives one event per face per processed frame; ``report: track`` one
event when a track first gets an upscale and again whenever its expression label or its
``preserved`` verdict changes (a quiet log of what each person showed, not 25 lines a second).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr.device.capture.frame import Frame
from edge_affectsr.device.inference.guard import CANONICAL_BOX, ExpressionGuard, GuardConfig, Verdict
from edge_affectsr.device.inference.track import IouTracker, TrackerConfig
from edge_affectsr.device.reporting.events import FaceEvent
from edge_affectsr.device.reporting.stats import Stats
from edge_affectsr.runtime.align import AlignConfig, AlignedFace, Aligner
from edge_affectsr.runtime.bundle_models import LoadedBundle
from edge_affectsr.runtime.detect import Detection
from edge_affectsr.runtime.roi_detect import RoiConfig, TrackingDetector

log = logging.getLogger(__name__)

STAGES = ("detect", "landmarks", "align", "sr", "guard")
EXTRA_COUNTERS = {
    "no_landmarks": "Faces skipped because FaceMesh found no face in the detection (landmarks.fallback: skip).",
    "keypoint_faces": "Faces FaceMesh rejected, upscaled from the detector's keypoints with the mean face shape.",
}


class PipelineConfig(BaseModel):
    """The ``pipeline:`` section of the device config. Face size = side of the aligned crop in frame
    pixels (the training crop's convention: the face is about 60 % of it)."""

    model_config = ConfigDict(extra="forbid")
    report: Literal["frame", "track"] = Field(
        "frame", description="frame: an event per face per frame; track: on a track's changes only")
    min_face_px: float = Field(24.0, gt=0, description="smaller faces are not upscaled (LR is 32 px at x4)")
    max_face_px: float = Field(1024.0, gt=0, description="larger faces need no upscaling")


class CropSink(Protocol):
    """Where upscaled crops go when crop saving is on (:class:`edge_affectsr.device.reporting.crops.CropSaver`)."""

    def save(self, event: FaceEvent, image: np.ndarray) -> object: ...  # image: BGR uint8


@dataclass
class FaceResult:
    """One upscaled face: its event, the aligned input and the guard's verdict (``verdict.image`` is
    what was reported)."""

    event: FaceEvent
    aligned: AlignedFace
    sr: np.ndarray
    verdict: Verdict
    reported: bool


@dataclass
class FrameResult:
    """What one frame gave: upscaled faces, the events to report, counts and stage latencies."""

    index: int
    faces: list[FaceResult] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def events(self) -> list[FaceEvent]:
        return [f.event for f in self.faces if f.reported]


class TrackReporter:
    """Decides which faces become events under ``report: track``."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._last: dict[int, tuple[str, bool]] = {}

    def should_report(self, track_id: int, label: str, preserved: bool) -> bool:
        if self.mode == "frame":
            return True
        state = (label, preserved)
        changed = self._last.get(track_id) != state
        self._last[track_id] = state
        return changed

    def forget_except(self, live: set[int]) -> None:
        """Drop the state of expired tracks (ids are never reused)."""
        for track_id in set(self._last) - live:
            del self._last[track_id]


class Pipeline:
    """``process(frame, source)`` -> :class:`FrameResult`. Single-threaded: one pipeline per thread."""

    def __init__(self, bundle: LoadedBundle, config: PipelineConfig | None = None, guard: GuardConfig | None = None,
                 align: AlignConfig | None = None, tracker: TrackerConfig | None = None, roi: RoiConfig | None = None,
                 stats: Stats | None = None, crops: CropSink | None = None) -> None:
        self.config = config or PipelineConfig()
        self.stats = stats or Stats(extra_counters=EXTRA_COUNTERS)
        self.tracker = IouTracker(tracker)
        self.crops = crops
        self._reporter = TrackReporter(self.config.report)
        self._guard_config, self._align_config, self._roi_config = guard, align, roi
        self.use_bundle(bundle)

    def use_bundle(self, bundle: LoadedBundle) -> None:
        """Switch to another loaded bundle (SIGHUP reload) between frames; tracks are kept."""
        self.bundle = bundle
        self.detector = TrackingDetector(bundle.detector, bundle.roi_detector, self._roi_config)
        self.aligner = Aligner(bundle.sr.lr_size, bundle.nodes, self._align_config)
        self.guard = ExpressionGuard(bundle.critic, bundle.landmarker, self._guard_config)

    def process(self, frame: Frame, source: str = "") -> FrameResult:
        """Run every stage on one frame; never raises for bad input (counted under ``errors``)."""
        result = FrameResult(frame.index)
        start = time.perf_counter()
        image, problem = as_bgr(frame.image)
        if image is None:
            result.error = problem
            self._count(result, "errors")
            return result
        detections = self._timed(result, "detect", self.detector.detect, image, [t.box for t in self.tracker.tracks])
        ids = self.tracker.update([d.bbox for d in detections]) if detections else self.tracker.update([])
        self._reporter.forget_except({t.id for t in self.tracker.tracks})
        if not detections:
            self._count(result, "no_face")
        for det, track_id in zip(detections, ids):
            face = self._process_face(image, det, track_id, frame.index, source, result)
            if face is not None:
                result.faces.append(face)
        result.latency_ms["frame"] = (time.perf_counter() - start) * 1000
        self.stats.record_latency("frame", result.latency_ms["frame"])
        self.stats.record_frame()
        return result

    def _process_face(self, image: np.ndarray, det: Detection, track_id: int, index: int, source: str,
                      result: FrameResult) -> FaceResult | None:
        """One detected face -> FaceResult, or None (counted) when it cannot be upscaled."""
        lat: dict[str, float] = {"detect": result.latency_ms["detect"]}
        size_problem = self._size_problem(estimated_face_px(det), slack=1.5)  # skip FaceMesh on hopeless sizes
        if size_problem:
            self._count(result, size_problem)
            return None
        landmarks = self._timed(result, "landmarks", self.bundle.landmarker, image, det, into=lat)
        if self.bundle.landmarker.found(landmarks):
            aligned = self._timed(result, "align", self.aligner, image, landmarks.points, into=lat)
        elif self.bundle.landmarker.config.fallback == "keypoints":  # the mean shape, found=False
            aligned = self._timed(result, "align", self.aligner.from_keypoints, image, det, into=lat)
        else:
            self._count(result, "no_landmarks")
            return None
        size_problem = self._size_problem(aligned.face_px)
        if size_problem:
            self._count(result, size_problem)
            return None
        if not aligned.found:
            self._count(result, "keypoint_faces")
        found = np.array([aligned.found])
        sr = self._timed(result, "sr", self.bundle.sr, aligned.lr[None], aligned.landmarks_full[None], found, into=lat)[0]
        verdict = self._timed(result, "guard", self.guard, aligned.lr, sr, aligned.landmarks_full, aligned.found, into=lat)
        if verdict.guard.fallback:
            self._count(result, "fallbacks")
        event = self._event(det, track_id, index, source, verdict, lat, aligned.found)
        reported = self._reporter.should_report(track_id, event.expression, verdict.guard.preserved)
        if reported:
            self._count(result, "faces")
            if self.crops is not None:
                self.crops.save(event, cv2.cvtColor(verdict.image, cv2.COLOR_RGB2BGR))
        return FaceResult(event, aligned, sr, verdict, reported)

    def _size_problem(self, face_px: float, slack: float = 1.0) -> str | None:
        """``too_small`` / ``too_large`` / None; ``slack`` widens the limits for a rough estimate."""
        if face_px * slack < self.config.min_face_px:
            return "too_small"
        if face_px > self.config.max_face_px * slack:
            return "too_large"
        return None

    def _event(self, det: Detection, track_id: int, index: int, source: str, verdict: Verdict,
               latency: dict[str, float], found: bool) -> FaceEvent:
        probs = verdict.probabilities
        lr = self.bundle.sr.lr_size
        return FaceEvent(frame=index, source=source, track_id=track_id, bbox=tuple(round(v, 1) for v in det.bbox),
                         lr_size=(lr, lr), expression=self.bundle.critic.label(probs),
                         probabilities={c: round(float(p), 5) for c, p in zip(self.bundle.critic.classes, probs)},
                         guard=verdict.guard, latency_ms={k: round(v, 3) for k, v in latency.items()},
                         model=self.bundle.name, model_version=self.bundle.version,
                         landmarks="facemesh" if found else "keypoints")

    def _timed(self, result: FrameResult, stage: str, fn, *args, into: dict[str, float] | None = None):
        """Call ``fn(*args)``, record its latency under ``stage`` (stats, the frame, the face)."""
        start = time.perf_counter()
        out = fn(*args)
        ms = (time.perf_counter() - start) * 1000
        self.stats.record_latency(stage, ms)
        result.latency_ms[stage] = result.latency_ms.get(stage, 0.0) + ms
        if into is not None:
            into[stage] = ms
        return out

    def _count(self, result: FrameResult, counter: str) -> None:
        result.counts[counter] = result.counts.get(counter, 0) + 1
        self.stats.inc(counter)


def estimated_face_px(det: Detection) -> float:
    """The aligned crop's side guessed from a BlazeFace box (its box is ~52 % of the crop's width)."""
    return det.width / (CANONICAL_BOX[2] - CANONICAL_BOX[0])


def as_bgr(image: object) -> tuple[np.ndarray | None, str | None]:
    """A usable BGR uint8 ``H x W x 3`` view of a frame (grey and BGRA converted), or (None, why not)."""
    if not isinstance(image, np.ndarray):
        return None, f"frame is {type(image).__name__}, not an image"
    if image.dtype != np.uint8 or image.size == 0 or min(image.shape[:2]) < 8:
        return None, f"frame is not a usable uint8 image (dtype {image.dtype}, shape {image.shape})"
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), None
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR), None
    if image.ndim == 3 and image.shape[2] == 3:
        return image, None
    return None, f"frame has shape {image.shape}; expected H x W x 3 BGR"
