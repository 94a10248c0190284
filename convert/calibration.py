"""Calibration faces for full-int8 quantisation, prepared the way the model will see them: the
evaluation protocol's LR crop and FaceMesh landmarks found on its upscale (mean shape where none),
restricted to the student's landmark subset."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.data.dataset import FaceArrays, prepare_faces
from distill.data.readers import face_set
from edge_affectsr.errors import UserError
from edge_affectsr.landmark_graph import subset_nodes

log = logging.getLogger(__name__)
MIN_FACES = 200


class CalibrationError(UserError):
    pass


@dataclass
class Calibration:
    img: np.ndarray  # [n, h, w, 3] float32 in [0, 1] (NHWC, as onnx2tf wants)
    lm: np.ndarray  # [n, N, 2] float32
    hr: np.ndarray  # [n, 128, 128, 3] uint8, the same faces at full resolution
    faces: FaceArrays  # everything that was read
    usable: int


def load_calibration(folder: Path, scale: int, subset: str, limit: int = 500, force: bool = False,
                     keep_all: bool = False) -> Calibration:
    """Faces from ``folder``; fewer than MIN_FACES usable ones (readable, landmarks found) is an
    error unless ``force``: a thin calibration set silently costs int8 quality.

    Calibration keeps only faces whose landmarks were found; verification (``keep_all``) keeps every
    readable face, the rest with the mean shape, as ``eval`` and the device runtime see them.
    """
    try:
        records = face_set(folder)[:limit]
    except FileNotFoundError as e:
        raise CalibrationError(f"calibration folder {folder}: {e}") from None
    faces = prepare_faces(records, scale, desc="calibration faces")
    usable = int(faces.found_lr.sum())
    if usable < MIN_FACES and not force:
        raise CalibrationError(f"only {usable} usable calibration faces in {folder} (need {MIN_FACES}); add faces or pass --force")
    keep = np.ones(len(faces), dtype=bool) if keep_all else faces.found_lr
    img = faces.lr[keep].astype(np.float32) / 255.0
    lm = faces.lm_lr[keep][:, subset_nodes(subset)].astype(np.float32)
    log.info("calibration: %d usable faces of %d read (%d unreadable)", usable, len(faces), len(faces.skipped))
    return Calibration(img=img, lm=lm, hr=faces.hr[keep], faces=faces, usable=usable)
