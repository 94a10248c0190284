"""``camera-eval --small PRESET:SIZE``: each face staged small in a whole, degraded camera frame.

Why: the shipped models were trained and scored on clean faces pasted large, but a camera gives
faces 12-40 px across, blurred, noisy and compressed. Here each photo's protocol HR crop
(:func:`edge_affectsr.protocol.make_hr`) is rendered at SIZE px by the camera degradation model's
optics half (:func:`~edge_affectsr.runtime.degradation.render_crop`: lens blur at the scene's
scale, resampling), pasted at a seeded place in a plain frame, and the sensor-and-encoder half
(:func:`~edge_affectsr.runtime.degradation.degrade_frame`: noise, JPEG or H.264) is applied to the
WHOLE frame, as a camera does. The frame then goes through the device's own pipeline.

Scoring: the pipeline's own "HR crop" is the tiny face warped up, so the reference is the protocol
HR crop warped by the transform the aligner fitted to the frame (frame px -> 128 px crop), i.e. the
face the device would have seen with a perfect camera, in the device's alignment.

Found or not: the detector scans the whole frame and every tile of ``tiles`` at once (a still
face meets every tile within a few frames of the device's rotation). Faces it misses, or that are
dropped for want of landmarks (``landmarks.fallback: skip``), are counted by reason, not scored;
with the default ``fallback: keypoints`` a face FaceMesh rejects is aligned from the detector's
keypoints and scored, and ``paths`` counts the scored faces per landmark path. The pipeline's ``min_face_px`` is lowered to
:data:`SMALL_MIN_FACE_PX` so that faces below the device's default limit are scored too; how many
of the scored faces the device's default would have skipped is reported separately.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from edge_affectsr.device.capture.frame import Frame
from edge_affectsr.device.inference.pipeline import FaceResult, Pipeline, PipelineConfig
from edge_affectsr.errors import UserError
from edge_affectsr.protocol import HR_SIZE, make_hr
from edge_affectsr.runtime.bundle_models import LoadedBundle
from edge_affectsr.runtime.degradation import CameraDegradation, degrade_frame, parse_degradation, render_crop
from edge_affectsr.runtime.detect import DetectorConfig, FaceDetector
from edge_affectsr.runtime.frames import BACKGROUND, FRAME_SIZE
from edge_affectsr.runtime.interpreter import InterpreterConfig

log = logging.getLogger(__name__)

SMALL_MIN_FACE_PX = 8.0  # the pipeline's floor here: score what the device's default (24 px) would skip
OUTCOMES = ("scored", "not_detected", "no_landmarks", "too_small")


@dataclass(frozen=True)
class SmallFaces:
    """One small-faces cell: the degradation at a fixed crop size, the frame and the detector's tiles."""

    cell: str  # e.g. "jpeg:24", as ``eval --degradation`` spells it
    degradation: CameraDegradation
    tiles: tuple[int, int] | None = None  # None: the device's default schedule (zoom levels)
    frame_size: tuple[int, int] = FRAME_SIZE  # rows, columns
    seed: int = 0

    @classmethod
    def parse(cls, spec: str, tiles: tuple[int, int] | None = None, frame_size: tuple[int, int] = FRAME_SIZE,
              seed: int = 0) -> SmallFaces:
        """``"PRESET[:SIZE]"`` (PRESET in lens, jpeg, h264, camera, camera-hard) -> a cell; UserError otherwise."""
        try:
            cell, cfg = parse_degradation(spec)
        except ValueError as e:
            raise UserError(f"--small: {e}") from None
        if cfg is None:
            raise UserError("--small needs a camera cell such as jpeg:24; 'clean' is camera-eval without --small")
        rows, cols = frame_size
        if cfg.crop_px[1] * 3 > min(rows, cols):
            raise UserError(f"--small {spec}: a {cfg.crop_px[1]} px face needs a frame of at least 3 times that "
                            f"(a crop's side clear of each edge; got {cols}x{rows})")
        return cls(cell, cfg, tiles, frame_size, seed)

    def detector_config(self) -> DetectorConfig:
        """The device's detector settings with this cell's tiles, every tile scanned on the one frame."""
        return DetectorConfig(tiles=self.tiles, tiles_per_call=None)

    def describe(self) -> dict:
        rows, cols = self.frame_size
        tiles = list(self.tiles) if self.tiles else "zoom levels"
        return {"mode": "small", "cell": self.cell, "frame": f"{cols}x{rows}", "tiles": tiles, "seed": self.seed}


@dataclass(frozen=True)
class StagedFace:
    """A camera frame (BGR, as capture gives it) with one small face; ``box`` = (x0, y0, side) of the
    face crop in frame px; ``hr`` the protocol HR crop (RGB) it was rendered from."""

    frame_bgr: np.ndarray
    hr: np.ndarray
    box: tuple[int, int, int]


def stage(photo: Image.Image, spec: SmallFaces, index: int) -> StagedFace:
    """The photo's HR crop at the cell's size, pasted at a seeded place, the whole frame degraded."""
    hr = make_hr(photo)
    rng = np.random.default_rng([spec.seed, index])  # the face's degradation draws, as degrade_face seeds them
    small = render_crop(hr, spec.degradation, rng)
    side = small.shape[0]
    x0, y0 = place(spec.frame_size, side, np.random.default_rng([spec.seed, index, 1]))
    frame = np.empty((*spec.frame_size, 3), np.float32)
    frame[:] = BACKGROUND[::-1]  # BGR -> RGB
    frame[y0:y0 + side, x0:x0 + side] = small
    frame_rgb = degrade_frame(frame, spec.degradation, rng)
    return StagedFace(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR), hr, (x0, y0, side))


def place(frame_size: tuple[int, int], side: int, rng: np.random.Generator) -> tuple[int, int]:
    """(x0, y0) of a face crop anywhere in the frame, a crop's side clear of the edges (FaceMesh needs
    context around the face), so it lands on tile seams as often as a real face would."""
    rows, cols = frame_size
    return int(rng.integers(side, cols - 2 * side + 1)), int(rng.integers(side, rows - 2 * side + 1))


def aligned_reference(staged: StagedFace, matrix: np.ndarray) -> np.ndarray:
    """The protocol HR crop on the frame's plain background, warped by the aligner's ``matrix`` (frame
    px -> crop px): the clean face in the device's alignment. The aligned crop usually reaches past the
    pasted crop, so the reference shows the same background there. HR px h sits at frame px
    x0 + (h + 0.5) * side / 128 - 0.5 (pixel centres)."""
    x0, y0, side = staged.box
    s = side / HR_SIZE
    hr_to_frame = np.array([[s, 0.0, x0 + 0.5 * s - 0.5], [0.0, s, y0 + 0.5 * s - 0.5]])
    linear = matrix[:, :2] @ hr_to_frame[:, :2]
    offset = matrix[:, :2] @ hr_to_frame[:, 2] + matrix[:, 2]
    return cv2.warpAffine(staged.hr, np.hstack([linear, offset[:, None]]), (HR_SIZE, HR_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(int(v) for v in BACKGROUND[::-1]))


def on_face(bbox: tuple[float, float, float, float], box: tuple[int, int, int]) -> bool:
    """Whether a detection's centre lies on the staged face crop (not a false detection elsewhere)."""
    x0, y0, side = box
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    return x0 <= cx <= x0 + side and y0 <= cy <= y0 + side


def outcome(counts: dict[str, int]) -> str:
    """Why a staged face gave no result, from the frame's pipeline counters."""
    if counts.get("no_landmarks"):
        return "no_landmarks"
    if counts.get("too_small") or counts.get("too_large"):
        return "too_small"
    return "not_detected"


def small_faces(bundle: LoadedBundle, files: list[Path], spec: SmallFaces) -> tuple[list[FaceResult], dict]:
    """Stage and run each photo; FaceResults whose ``aligned.hr`` is the aligned reference, and the counts."""
    device = device_detector(bundle, spec)
    config = PipelineConfig(min_face_px=SMALL_MIN_FACE_PX)
    results, counts, sides = [], dict.fromkeys(OUTCOMES, 0), []
    found_device = 0
    for i, path in enumerate(tqdm(files, desc=f"camera path, small faces {spec.cell}", unit="face", dynamic_ncols=True)):
        try:
            with Image.open(path) as photo:
                staged = stage(photo, spec, i)
        except OSError:
            log.warning("skipping unreadable %s", path)
            continue
        sides.append(staged.box[2])
        frame_result = Pipeline(bundle, config).process(Frame(i, 0.0, staged.frame_bgr))
        face = next((f for f in frame_result.faces if on_face(f.event.bbox, staged.box)), None)
        counts["scored" if face else outcome(frame_result.counts)] += 1
        if face is not None:
            results.append(with_reference(face, aligned_reference(staged, face.aligned.matrix)))
        if device is not None:
            found_device += any(on_face(d.bbox, staged.box) for d in device.detect(staged.frame_bgr))
    return results, summary(spec, counts, sides, results, found_device if device is not None else None)


def summary(spec: SmallFaces, counts: dict, sides: list[int], results: list[FaceResult], found_device: int | None) -> dict:
    """The report's small-mode fields: outcomes by reason, the found rate, the device-default view."""
    staged = sum(counts.values())
    found = staged - counts["not_detected"]
    device_min = PipelineConfig().min_face_px
    paths = {"facemesh": sum(f.aligned.found for f in results), "keypoints": sum(not f.aligned.found for f in results)}
    out = {**spec.describe(), "crop_px": [min(sides, default=0), max(sides, default=0)], "outcomes": counts,
           "paths": paths, "found": found, "found_rate": found / staged if staged else 0.0,
           "face_px_median": float(np.median([f.aligned.face_px for f in results])) if results else None,
           "below_device_min_face_px": sum(f.aligned.face_px < device_min for f in results), "device_min_face_px": device_min}
    if found_device is not None:
        out["found_at_device_tiles"] = found_device
    return out


def with_reference(face: FaceResult, reference: np.ndarray) -> FaceResult:
    """The face with its aligned HR crop replaced by the reference, so scoring compares with the clean face."""
    return dataclasses.replace(face, aligned=dataclasses.replace(face.aligned, hr=reference))


def device_detector(bundle: LoadedBundle, spec: SmallFaces) -> FaceDetector | None:
    """A second detector with the device's default tiles, when the cell scans other tiles: how many of
    these faces an unconfigured camera would find."""
    if spec.tiles is None:
        return None
    return FaceDetector(bundle.detector_file, DetectorConfig(tiles_per_call=None), InterpreterConfig().on_cpu())
