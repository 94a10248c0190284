"""A still face photo staged as a camera frame, so calibration and ``camera-eval`` feed the device's
detector, FaceMesh and aligner what a camera would."""

from __future__ import annotations

import cv2
import numpy as np

FRAME_SIZE = (480, 640)  # rows, columns
BACKGROUND = (90, 110, 120)  # BGR


def paste(face_bgr: np.ndarray, top_left: tuple[int, int] = (100, 200)) -> np.ndarray:
    """The face photo on a plain 640x480 frame (a CelebA crop, 218x178, at its own size; larger
    photos shrunk to fit)."""
    room_h, room_w = FRAME_SIZE[0] - top_left[0], FRAME_SIZE[1] - top_left[1]
    shrink = min(1.0, room_h / face_bgr.shape[0], room_w / face_bgr.shape[1])
    if shrink < 1.0:
        size = (max(1, int(face_bgr.shape[1] * shrink)), max(1, int(face_bgr.shape[0] * shrink)))
        face_bgr = cv2.resize(face_bgr, size, interpolation=cv2.INTER_AREA)
    frame = np.full((*FRAME_SIZE, 3), BACKGROUND, np.uint8)
    h, w = face_bgr.shape[:2]
    frame[top_left[0] : top_left[0] + h, top_left[1] : top_left[1] + w] = face_bgr
    return frame
