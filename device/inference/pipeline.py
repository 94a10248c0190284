"""The per-frame pipeline: detect, track -> per face: size checks, budget, landmarks, align -> all the
frame's faces at once: SR, guard -> smoothing -> events, and the track / group summaries.

Why this shape: every stage is timed with ``time.perf_counter`` and recorded in
:class:`~edge_affectsr.device.reporting.stats.Stats` under a fixed stage name (``detect``, ``landmarks``, ``align``,
``sr``, ``guard``, and ``frame`` for the whole frame), so ``/api/stats``, ``/metrics`` and
``bench`` all report the same numbers; ``sr`` and ``guard`` run once per frame on all its faces
(one SR call, one critic call: :meth:`~edge_affectsr.runtime.sr.TFLiteSR.batch`,
:meth:`~edge_affectsr.device.inference.guard.ExpressionGuard.batch`) and are recorded per face as
the frame's call over its faces. Faces over the frame's budget (``budget:``,
:mod:`~edge_affectsr.device.inference.budget`) are skipped before FaceMesh and counted under
``budget_skipped``. Faces that cannot be upscaled (too small, too large,
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

Each face's expression is smoothed over its track (``smoothing:``,
:mod:`~edge_affectsr.device.inference.smoothing`); the event carries the smoothed label and
distribution and the frame's own (``raw_*``). Reporting: ``report: frame`` gives one event per face
per processed frame; ``report: track`` one event when a track first gets an upscale and again
whenever its (smoothed) expression label or its guard ``verdict`` changes (a quiet log of what
each person showed, not 25 lines a second). Either way every upscale feeds
:mod:`~edge_affectsr.device.inference.summaries`: an event when a track ends, and a group summary
every ``summaries.group_every_s`` seconds (:attr:`FrameResult.summaries`; :meth:`Pipeline.finish`
when the input ends).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr.device.capture.frame import Frame
from edge_affectsr.device.inference.budget import BudgetConfig, FaceBudget
from edge_affectsr.device.inference.guard import CANONICAL_BOX, ExpressionGuard, GuardConfig, Verdict
from edge_affectsr.device.inference.smoothing import ExpressionSmoother, SmoothingConfig
from edge_affectsr.device.inference.summaries import LOST, ExpressionTimeline, SummariesConfig
from edge_affectsr.device.inference.track import IouTracker, TrackerConfig
from edge_affectsr.device.reporting.events import FaceEvent, GroupEvent, Record
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
    "budget_skipped": "Faces not upscaled because the frame's face budget (budget.max_faces) was spent.",
    "guard_landmark_checks": "SR outputs the guard ran FaceMesh on.",
    "guard_landmark_skipped": "SR outputs whose FaceMesh check the guard's schedule skipped (the track's last stood).",
    "guard_preserved": "Upscales the guard passed (verdict preserved).",
    "guard_changed": "Upscales the guard failed (verdict changed).",
    "guard_unverified": "Camera-routed upscales the guard could not verify (no landmark check; guard.camera_faces).",
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
    """What one frame gave: upscaled faces, the events to report, track / group summaries, counts and
    stage latencies."""

    index: int
    faces: list[FaceResult] = field(default_factory=list)
    summaries: list[Record] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def events(self) -> list[FaceEvent]:
        return [f.event for f in self.faces if f.reported]

    @property
    def records(self) -> list[Record]:
        """Everything to hand to the sinks: the reported face events, then the summaries."""
        return [*self.events, *self.summaries]


@dataclass
class Candidate:
    """A face chosen for this frame, aligned and waiting for the frame's SR and guard calls;
    ``latency`` its own stages so far (ms)."""

    det: Detection
    track_id: int
    aligned: AlignedFace
    latency: dict[str, float]


class TrackReporter:
    """Decides which faces become events under ``report: track``."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._last: dict[int, tuple[str, str]] = {}

    def should_report(self, track_id: int, label: str, verdict: str) -> bool:
        if self.mode == "frame":
            return True
        state = (label, verdict)
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
                 stats: Stats | None = None, crops: CropSink | None = None, budget: BudgetConfig | None = None,
                 smoothing: SmoothingConfig | None = None, summaries: SummariesConfig | None = None) -> None:
        self.config = config or PipelineConfig()
        self.stats = stats or Stats(extra_counters=EXTRA_COUNTERS)
        self.tracker = IouTracker(tracker)
        self.crops = crops
        self.budget = FaceBudget(budget)
        self.smoother = ExpressionSmoother(smoothing)
        self.timeline = ExpressionTimeline(bundle.critic.classes, summaries)
        self._reporter = TrackReporter(self.config.report)
        self._guard_config, self._align_config, self._roi_config = guard, align, roi
        self._last_t = 0.0
        self.use_bundle(bundle)

    def use_bundle(self, bundle: LoadedBundle) -> None:
        """Switch to another loaded bundle (SIGHUP reload) between frames; tracks are kept."""
        self.bundle = bundle
        self.detector = TrackingDetector(bundle.detector, bundle.roi_detector, self._roi_config)
        self.aligner = Aligner(bundle.sr.lr_size, bundle.nodes, self._align_config)
        self.guard = ExpressionGuard(bundle.critic, bundle.landmarker, self._guard_config, bundle.manifest.guard_reference)

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
        ids = self.tracker.update([d.bbox for d in detections])
        result.summaries += self.timeline.end([t.id for t in self.tracker.expired], LOST)
        self._forget_except({t.id for t in self.tracker.tracks})
        if not detections:
            self._count(result, "no_face")
        self._last_t = frame.timestamp
        self.timeline.seen(ids, frame.timestamp)
        candidates = self._candidates(image, detections, ids, result)
        if candidates:
            result.faces = self._upscale(candidates, frame, source, result)
        result.summaries += self._published(self.timeline.tick(frame.timestamp, source))
        result.latency_ms["frame"] = (time.perf_counter() - start) * 1000
        self.stats.record_latency("frame", result.latency_ms["frame"])
        self.stats.record_frame()
        return result

    def finish(self, source: str = "") -> list[Record]:
        """The input ended: an event for every live track and the last group window (to write, like
        :attr:`FrameResult.summaries`)."""
        return self._published(self.timeline.finish(source, self._last_t))

    def _forget_except(self, live: set[int]) -> None:
        """Drop the per-track state of expired tracks (ids are never reused)."""
        for part in (self._reporter, self.smoother, self.budget, self.guard.schedule):
            part.forget_except(live)

    def _published(self, records: list[Record]) -> list[Record]:
        """``records``, the latest group summary also put in the stats (``/api/stats``)."""
        for record in records:
            if isinstance(record, GroupEvent):
                self.stats.publish("group", record.to_dict())
        return records

    def _candidates(self, image: np.ndarray, detections: list[Detection], ids: list[int],
                    result: FrameResult) -> list[Candidate]:
        """This frame's faces that pass the size checks and the budget, aligned."""
        sized = []
        for det, track_id in zip(detections, ids):
            size_problem = self._size_problem(estimated_face_px(det), slack=1.5)  # skip FaceMesh on hopeless sizes
            if size_problem:
                self._count(result, size_problem)
            else:
                sized.append((det, track_id))
        chosen = self.budget.select([t for _, t in sized], [estimated_face_px(d) for d, _ in sized])
        if len(chosen) < len(sized):
            self._count(result, "budget_skipped", len(sized) - len(chosen))
        aligned = (self._align(image, *sized[i], result) for i in chosen)
        return [c for c in aligned if c is not None]

    def _align(self, image: np.ndarray, det: Detection, track_id: int, result: FrameResult) -> Candidate | None:
        """One detected face -> its Candidate, or None (counted) when it cannot be upscaled."""
        lat: dict[str, float] = {"detect": result.latency_ms["detect"]}
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
        return Candidate(det, track_id, aligned, lat)

    def _upscale(self, faces: list[Candidate], frame: Frame, source: str, result: FrameResult) -> list[FaceResult]:
        """SR and the guard on all the frame's candidates at once -> their results, events made."""
        lr = np.stack([c.aligned.lr for c in faces])
        landmarks = np.stack([c.aligned.landmarks_full for c in faces])
        found = np.array([c.aligned.found for c in faces])
        sr = self._timed_batch(result, "sr", faces, self.bundle.sr, lr, landmarks, found)
        routes = sr_routes(self.bundle.sr, len(faces))
        verdicts = self._timed_batch(result, "guard", faces, self.guard.batch, lr, sr, landmarks, found,
                                     [c.track_id for c in faces], [r == "camera" for r in routes])
        return [self._result(c, s, v, r, frame, source, result) for c, s, v, r in zip(faces, sr, verdicts, routes)]

    def _result(self, face: Candidate, sr: np.ndarray, verdict: Verdict, route: str | None, frame: Frame, source: str,
                result: FrameResult) -> FaceResult:
        """The face's event (smoothed over its track), counted, fed to the summaries, maybe reported."""
        self._count(result, f"guard_{verdict.guard.verdict}")
        if verdict.guard.fallback:
            self._count(result, "fallbacks")
        if verdict.guard.landmark_checked:
            self._count(result, "guard_landmark_checks")
        elif face.aligned.found and self.guard.landmarker is not None and self.guard.config.enabled:
            self._count(result, "guard_landmark_skipped")
        event = self._event(face, frame, source, verdict, route)
        self.timeline.observe(event)
        reported = self._reporter.should_report(face.track_id, event.expression, verdict.guard.verdict)
        if reported:
            self._count(result, "faces")
            if self.crops is not None:
                self.crops.save(event, cv2.cvtColor(verdict.image, cv2.COLOR_RGB2BGR))
        return FaceResult(event, face.aligned, sr, verdict, reported)

    def _size_problem(self, face_px: float, slack: float = 1.0) -> str | None:
        """``too_small`` / ``too_large`` / None; ``slack`` widens the limits for a rough estimate."""
        if face_px * slack < self.config.min_face_px:
            return "too_small"
        if face_px > self.config.max_face_px * slack:
            return "too_large"
        return None

    def _event(self, face: Candidate, frame: Frame, source: str, verdict: Verdict, route: str | None) -> FaceEvent:
        raw = verdict.probabilities
        smoothed = self.smoother(face.track_id, raw, frame.timestamp)
        critic, lr = self.bundle.critic, self.bundle.sr.lr_size
        return FaceEvent(frame=frame.index, source=source, file=frame.file, track_id=face.track_id,
                         bbox=tuple(round(v, 1) for v in face.det.bbox), lr_size=(lr, lr),
                         expression=critic.label(smoothed), probabilities=_rounded(critic.classes, smoothed),
                         raw_expression=critic.label(raw), raw_probabilities=_rounded(critic.classes, raw),
                         guard=verdict.guard, latency_ms={k: round(v, 3) for k, v in face.latency.items()},
                         model=self.bundle.name, model_version=self.bundle.version,
                         landmarks="facemesh" if face.aligned.found else "keypoints", sr_model=route)

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

    def _timed_batch(self, result: FrameResult, stage: str, faces: list[Candidate], fn, *args):
        """Call ``fn(*args)`` once for all ``faces``; each face is charged its share (stats, its latency)."""
        start = time.perf_counter()
        out = fn(*args)
        ms = (time.perf_counter() - start) * 1000
        result.latency_ms[stage] = result.latency_ms.get(stage, 0.0) + ms
        for face in faces:
            face.latency[stage] = ms / len(faces)
            self.stats.record_latency(stage, ms / len(faces))
        return out

    def _count(self, result: FrameResult, counter: str, n: int = 1) -> None:
        result.counts[counter] = result.counts.get(counter, 0) + n
        self.stats.inc(counter, n)


def sr_routes(sr: object, n: int) -> list[str | None]:
    """Which SR model each of the ``n`` faces of ``sr``'s last call went to (``camera`` / ``clean``: a
    routed bundle), else None each."""
    picked = getattr(sr, "last_routes", None)
    if picked is None or len(picked) != n:
        return [None] * n
    return ["camera" if p else "clean" for p in picked]


def _rounded(classes: Sequence[str], p: np.ndarray) -> dict[str, float]:
    return {c: round(float(v), 5) for c, v in zip(classes, p)}


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
