"""``edge-affectsr crowd-bench``: the device pipeline on crowd clips, scored against the true boxes.

Why: the camera's faces in a station or a lecture hall are many and small, and a detector tuned on
one near face finds none of them (docs/crowd.md). Each clip (runtime/crowd_clips.py: real faces at a fixed
box width, drifting, camera-degraded) runs through the daemon's own pipeline, configured as the
daemon configures it (detector schedule, track mosaics, tracker, landmarks, SR, guard, budget), one
fresh pipeline per clip, frames in order from the first (so a face's first frames before the tile
rotation reaches it count as misses, as they would on a camera). Per clip:

* detection recall and precision of the detections the pipeline used, frame by frame
  (runtime/crowd_clips.py states the matching rule), identity switches and distinct tracks of the daemon's
  tracker on the matched faces;
* fps = frames / the pipeline's own time (rendering a frame is not timed), the p50 of every stage the
  pipeline times, ms per upscaled face (frame time minus detection, over the faces upscaled);
* how FaceMesh does on faces that small against the keypoint fallback (crowd_landmarks.py);
* label flicker of the raw and the smoothed expression, and how often each agrees with the
  person's HR label (crowd_labels.py); a plan of several seeds (``--seeds``) runs every clip once per
  seed, with other people, and pools these label counts over the seeds.

``--candidates`` adds a detector-only comparison: each candidate detector scans every region of its
schedule on every ``CANDIDATE_STRIDE``-th frame (no rotation, no tracking): what a model and a zoom
schedule can find, and what a full scan costs. The candidates' model files come from the installed
mediapipe wheel (a workstation measurement; the device runs its bundle's file), except the int8
detector's, which is the bundle's (its row is left out for a bundle without one).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edge_affectsr.device.capture.frame import Frame
from edge_affectsr.device.inference.pipeline import EXTRA_COUNTERS, Pipeline
from edge_affectsr.device.reporting.stats import Stats, StatsConfig
from edge_affectsr.device.service.crowd_labels import LabelCheck, pool
from edge_affectsr.device.service.crowd_landmarks import LandmarkCheck
from edge_affectsr.device.service.crowd_score import ClipScore
from edge_affectsr.device.service.settings import DeviceConfig
from edge_affectsr.errors import UserError
from edge_affectsr.runtime.bundle_models import DETECTOR_INT8, LoadedBundle, load_bundle
from edge_affectsr.runtime.crowd_clips import MATCH_RULE, Clip, ClipSpec, build_clip, people
from edge_affectsr.runtime.detect import MODELS, Detection, DetectorConfig, FaceDetector, mediapipe_model_path
from edge_affectsr.runtime.interpreter import InterpreterConfig

FACE_SIZES = (16, 20, 24, 32, 48, 64)
FRAME_SIZES = ((640, 480), (1280, 720))
CANDIDATE_STRIDE = 8
FPS = 25.0  # the clips' frame rate, for the frames' timestamps


@dataclass(frozen=True)
class Candidate:
    """A detector to compare: a model of :data:`~edge_affectsr.runtime.detect.MODELS` and a schedule."""

    label: str
    model: str
    config: DetectorConfig
    bundle_model: str | None = None  # a model key of the bundle, run instead of mediapipe's file (its int8 detector)


CANDIDATES = (
    Candidate("short-range, 3x2 tiles (the old default)", "short_range", DetectorConfig(tiles=(3, 2))),
    Candidate("short-range, 8x6 tiles", "short_range", DetectorConfig(tiles=(8, 6))),
    Candidate("short-range, zoom to 24 px", "short_range", DetectorConfig(min_face_px=24)),
    Candidate("short-range, zoom to 20 px", "short_range", DetectorConfig(min_face_px=20)),
    Candidate("short-range, zoom to 16 px", "short_range", DetectorConfig(min_face_px=16)),
    Candidate("full-range sparse, zoom to 16 px", "full_range", DetectorConfig(min_face_px=16)),
    Candidate("short-range int8, zoom to 20 px", "short_range", DetectorConfig(min_face_px=20), DETECTOR_INT8),
)


def clip_plan(face_sizes: tuple[int, ...], frame_sizes: tuple[tuple[int, int], ...], faces: int, frames: int,
              degradation: str, seed: int, crowd_sizes: tuple[int, ...] = ()) -> list[ClipSpec]:
    """One clip per frame size and face size with ``faces`` people (fewer where they do not fit), then
    for each of ``crowd_sizes`` (people) one more at the largest frame and 24 px (or the smallest size)."""
    plan = []
    for size in frame_sizes:
        for face_px in face_sizes:
            fits = ClipSpec(size, face_px, 1, frames).capacity()
            if fits:
                plan.append(ClipSpec(size, face_px, min(faces, fits), frames, degradation, seed))
    crowd_face = 24 if 24 in face_sizes else min(face_sizes)
    for n in crowd_sizes:
        spec = ClipSpec(frame_sizes[-1], crowd_face, n, frames, degradation, seed)
        if spec not in plan:
            plan.append(spec)
    for spec in plan:
        spec.check()
    return plan


class RecordingDetector:
    """The pipeline's detector, keeping the last frame's detections for scoring (the same objects the
    pipeline goes on with; nothing is run twice)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.last: list[Detection] = []

    def detect(self, frame_bgr: np.ndarray, track_boxes: list[np.ndarray] | None = None) -> list[Detection]:
        self.last = self.inner.detect(frame_bgr, track_boxes)
        return self.last


def detection_track_ids(pipeline: Pipeline, detections: list[Detection]) -> list[int]:
    """The track id the tracker gave each detection this frame (its track's box is the detection's box)."""
    seen = {tuple(np.round(t.box, 4)): t.id for t in pipeline.tracker.tracks if t.missed == 0}
    return [seen.get(tuple(np.round(np.asarray(d.bbox, np.float64), 4)), 0) for d in detections]


def new_pipeline(bundle: LoadedBundle, config: DeviceConfig) -> Pipeline:
    """A pipeline as the daemon builds it, its stats keeping every sample (exact quantiles)."""
    cfg = config
    stats = Stats(StatsConfig(window=1_000_000, fps_window_s=3600), extra_counters=EXTRA_COUNTERS)
    return Pipeline(bundle, cfg.pipeline, cfg.guard, cfg.align, cfg.tracker, cfg.roi, stats=stats,
                    budget=cfg.budget, smoothing=cfg.smoothing, summaries=cfg.summaries)


def run_clip(bundle: LoadedBundle, config: DeviceConfig, clip: Clip, hr_faces: list[np.ndarray]) -> dict[str, Any]:
    """One clip through a fresh pipeline: scores, timings, the landmark and the label checks."""
    pipeline = new_pipeline(bundle, config)
    bundle.detector.schedule.restart()  # the bundle's detector keeps its rotation from the last clip otherwise
    recorder = RecordingDetector(pipeline.detector)
    pipeline.detector = recorder
    score, check = ClipScore(clip.spec.faces), LandmarkCheck(bundle, clip, hr_faces)
    labels = LabelCheck(bundle.critic, clip.spec.faces, hr_faces, FPS)
    elapsed, detect_ms, upscaled = 0.0, 0.0, 0
    for i in range(len(clip)):
        image, truth = clip.frame(i), clip.boxes(i)
        start = time.perf_counter()
        result = pipeline.process(Frame(i, i / FPS, image))
        elapsed += time.perf_counter() - start
        detect_ms += result.latency_ms.get("detect", 0.0)
        upscaled += len(result.faces)
        detections = recorder.last
        track_ids = detection_track_ids(pipeline, detections)
        matched = score.add(truth, _boxes(detections), np.array([d.score for d in detections]), track_ids)
        check.add(i, image, detections, matched)
        labels.add(i, [face.event for face in result.faces], {t: int(p) for t, p in zip(track_ids, matched) if p >= 0 and t})
    snap = pipeline.stats.snapshot()
    face_ms = (elapsed * 1000 - detect_ms) / upscaled if upscaled else None
    return {**describe(clip.spec), **score.summary(), "recall_second_half": round(score.recall_from(len(clip) // 2), 4),
            "fps": round(len(clip) / elapsed, 2),
            "latency_ms_p50": {k: v["p50"] for k, v in snap["latency_ms"].items()},
            "ms_per_face": None if face_ms is None else round(face_ms, 2),
            "upscaled_per_frame": round(upscaled / len(clip), 2), "counters": snap["counters"],
            "landmarks": check.summary(), "labels": labels.summary()}


def describe(spec: ClipSpec) -> dict[str, Any]:
    return {"clip": spec.name, "frame": f"{spec.size[0]}x{spec.size[1]}", "face_px": spec.face_px,
            "faces": spec.faces, "frames": spec.frames, "degradation": spec.degradation, "seed": spec.seed}


def candidate_file(candidate: Candidate, bundle: LoadedBundle) -> Path | None:
    """The candidate's model file: mediapipe's, or the bundle's (None when the bundle has no such model)."""
    if candidate.bundle_model is None:
        return mediapipe_model_path(MODELS[candidate.model].file)
    entry = bundle.manifest.models.get(candidate.bundle_model)
    return None if entry is None else bundle.path / entry.file


def run_candidate(candidate: Candidate, model: Path, clips: list[Clip], threads: int) -> dict[str, Any]:
    """A detector alone, every region of its schedule on every CANDIDATE_STRIDE-th frame of each clip."""
    config = candidate.config.model_copy(update={"tiles_per_call": None})
    detector = FaceDetector(model, config, InterpreterConfig(threads=threads).on_cpu())
    rows = []
    for clip in clips:
        score, ms = ClipScore(clip.spec.faces), []
        for i in range(0, len(clip), CANDIDATE_STRIDE):
            image = clip.frame(i)
            start = time.perf_counter()
            found = detector.detect(image)
            ms.append((time.perf_counter() - start) * 1000)
            score.add(clip.boxes(i), _boxes(found), np.array([d.score for d in found]))
        width, height = clip.spec.size
        rows.append({**describe(clip.spec), "recall": round(score.recall, 4), "precision": round(score.precision, 4),
                     "tp": score.tp, "fp": score.fp, "fn": score.fn, "calls": len(detector.schedule.regions(width, height)),
                     "ms_full_scan_p50": round(float(np.median(ms)), 1)})
    return {"label": candidate.label, "model": candidate.model, "detector": config.model_dump(mode="json"), "clips": rows}


def _boxes(detections: list[Detection]) -> np.ndarray:
    return np.array([d.bbox for d in detections], np.float64).reshape(-1, 4)


def crowd_bench(config: DeviceConfig, bundle_path: str | None, data: Path | None, plan: list[ClipSpec],
                candidates: bool, threads: int) -> dict[str, Any]:
    """Everything ``crowd-bench`` measures, as the report's JSON."""
    if data is not None and not Path(data).is_dir():
        raise UserError(f"--data {data} is not a folder")
    config = config.model_copy(update={"interpreter": config.interpreter.model_copy(update={"threads": threads})})
    bundle = load_bundle(bundle_path, config.interpreter, config.detector, config.landmarks, self_test=True)
    seeds = list(dict.fromkeys(spec.seed for spec in plan))
    faces_by_seed = {seed: people(data, max(spec.faces for spec in plan), seed) for seed in seeds}
    clips = [build_clip(spec, faces_by_seed[spec.seed]) for spec in plan]
    results = [run_clip(bundle, config, clip, faces_by_seed[clip.spec.seed])
               for clip in tqdm(clips, desc="crowd clips", unit="clip", dynamic_ncols=True)]
    report = {"match_rule": MATCH_RULE, "data": str(data) if data else "built-in face", "seeds": seeds,
              "people": len(faces_by_seed[seeds[0]]),
              "bundle": bundle.name, "threads": threads, "detector": config.detector.model_dump(mode="json"),
              "detector_model": bundle.detector_file.name,
              "roi": config.roi.model_dump(mode="json"), "tracker": config.tracker.model_dump(mode="json"),
              "smoothing": config.smoothing.model_dump(mode="json"), "clips": results,
              "machine": {"cpus": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()]}}
    if len(seeds) > 1:
        report["labels_pooled"] = pool(results)
    if candidates:  # on the first seed's clips: the detector's recall does not need the seeds' spread
        report["candidate_stride"] = CANDIDATE_STRIDE
        found = [(c, file) for c in CANDIDATES if (file := candidate_file(c, bundle)) is not None]
        report["candidates"] = [run_candidate(c, file, [clip for clip in clips if clip.spec.seed == seeds[0]], threads)
                                for c, file in tqdm(found, desc="detector candidates", unit="detector")]
    return report
