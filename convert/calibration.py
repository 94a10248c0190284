"""Faces for full-int8 calibration and for verification.

Calibration faces are prepared exactly as the camera prepares them: each photo is staged in a
640x480 frame and taken through the device's own BlazeFace, FaceMesh TFLite and aligner, so the
quantisation ranges are fitted to the LR crops and landmarks the int8 model will be fed.
Verification faces (``convert --val``) follow the evaluation protocol instead (LR = bicubic
downsample, FaceMesh on its upscale, mean shape where none), so the conversion table compares with
``eval``'s numbers; without ``--val`` the calibration faces are verified as the device saw them.

With a camera degradation (``convert --degradation camera``) the LR of each calibration face is the
camera model's rendering of its aligned HR crop (``edge_affectsr/runtime/degradation.py``), so the
int8 ranges are fitted to the blurred, noisy, compressed faces a camera-robust model will see; the
verification faces get the same model (other draws), so the gates judge int8 where it will run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge_affectsr import protocol
from edge_affectsr.distill.data.dataset import prepare_faces
from edge_affectsr.distill.data.readers import face_set, read_image
from edge_affectsr.errors import UserError
from edge_affectsr.landmark_graph import subset_nodes
from edge_affectsr.runtime.align import Aligner
from edge_affectsr.runtime.degradation import CameraDegradation, degrade_face
from edge_affectsr.runtime.detect import MODEL_NAME as DETECTOR_NAME
from edge_affectsr.runtime.detect import DetectorConfig, FaceDetector, mediapipe_model_path
from edge_affectsr.runtime.frames import paste
from edge_affectsr.runtime.landmarks import MODEL_NAME as LANDMARK_NAME
from edge_affectsr.runtime.landmarks import FaceLandmarker

log = logging.getLogger(__name__)
MIN_FACES = 200
CALIB_SEED, VERIFY_SEED = 7_000_001, 7_000_002  # camera draws of calibration / verification faces


class CalibrationError(UserError):
    pass


@dataclass
class FaceSet:
    """LR faces with their landmarks (model inputs) and HR crops (targets)."""

    img: np.ndarray  # [n, h, w, 3] float32 in [0, 1] (NHWC, as onnx2tf wants)
    lm: np.ndarray  # [n, N, 2] float32
    hr: np.ndarray  # [n, 128, 128, 3] uint8, the same faces at full resolution
    usable: int  # faces with landmarks
    clean: np.ndarray | None = None  # [n, h, w, 3] uint8: the undegraded device-path LR (calibration with a degradation)


def _records(folder: Path, limit: int) -> list:
    try:
        return face_set(folder)[:limit]
    except FileNotFoundError as e:
        raise CalibrationError(f"face folder {folder}: {e}") from None


def load_calibration(folder: Path, scale: int, subset: str, limit: int = 500, force: bool = False,
                     degradation: CameraDegradation | None = None) -> FaceSet:
    """Up to ``limit`` faces from ``folder`` through the device path; fewer than MIN_FACES usable
    ones (readable, face and landmarks found) is an error unless ``force``: a thin calibration set
    silently costs int8 quality."""
    records = _records(folder, limit)
    detector = FaceDetector(mediapipe_model_path(DETECTOR_NAME), DetectorConfig().whole_frame())
    landmarker = FaceLandmarker(mediapipe_model_path(LANDMARK_NAME))
    aligner = Aligner(protocol.lr_size(scale), subset_nodes(subset))
    faces, unreadable = [], 0
    for rec in tqdm(records, desc="calibration faces (device path)", unit="face", dynamic_ncols=True):
        img = read_image(rec.path, rec.box)
        if img is None:
            unreadable += 1
            continue
        frame = paste(cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR))
        detections = detector.detect(frame)
        points = landmarker(frame, detections[0]) if detections else None
        if points is not None and landmarker.found(points):
            faces.append(aligner(frame, points.points))
    if len(faces) < MIN_FACES and not force:
        raise CalibrationError(f"only {len(faces)} usable calibration faces in {folder} (need {MIN_FACES}); "
                               "add faces or pass --force")
    if not faces:
        raise CalibrationError(f"no usable calibration face in {folder}")
    log.info("calibration: %d usable faces of %d (%d unreadable; the rest: no face or landmarks)",
             len(faces), len(records), unreadable)
    lr = [f.lr if degradation is None else degrade_face(f.hr, degradation, aligner.lr_size, CALIB_SEED, i)
          for i, f in enumerate(faces)]
    return FaceSet(img=np.stack(lr).astype(np.float32) / 255.0,
                   lm=np.stack([f.landmarks for f in faces]).astype(np.float32),
                   hr=np.stack([f.hr for f in faces]), usable=len(faces),
                   clean=None if degradation is None else np.stack([f.lr for f in faces]))


def load_verification(folder: Path, scale: int, subset: str, limit: int, degradation: CameraDegradation | None = None) -> FaceSet:
    """Up to ``limit`` faces under the evaluation protocol (or the camera model), every readable one
    (mean shape where FaceMesh found none), as ``eval`` scores them."""
    faces = prepare_faces(_records(folder, limit), scale, degradation=degradation, seed=VERIFY_SEED, desc="verification faces")
    return FaceSet(img=faces.lr.astype(np.float32) / 255.0, lm=faces.lm_lr[:, subset_nodes(subset)].astype(np.float32),
                       hr=faces.hr, usable=int(faces.found_lr.sum()))
