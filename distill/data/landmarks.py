"""FaceMesh landmarks for training and evaluation, cached on disk by image content.

Landmarks come from mediapipe 0.10.21's legacy FaceMesh with iris refinement (478 points), as
normalised ``(x, y)`` in ``[0, 1]`` of the image they were found on. Two variants are used: on the HR
face (supervision) and on the LR face upscaled with bicubic (what a device sees at run time). A face
where FaceMesh finds nothing gets the core's mean shape and ``found = False``; callers count those.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from edge_affectsr.assets import cache_dir
from edge_affectsr.landmark_graph import NUM_LANDMARKS, mean_shape

log = logging.getLogger(__name__)
_MP_SETTINGS = "mediapipe-0.10.21/facemesh/static/refine/conf0.5"


def image_key(img: np.ndarray) -> str:
    """Content key: the exact pixels, their shape and the detector settings."""
    h = hashlib.sha256(_MP_SETTINGS.encode())
    h.update(str(img.shape).encode())
    h.update(np.ascontiguousarray(img, dtype=np.uint8).tobytes())
    return h.hexdigest()


class FaceMeshDetector:
    """One mediapipe FaceMesh instance (it is slow to build: reuse it)."""

    def __init__(self) -> None:
        try:
            from mediapipe.python.solutions import face_mesh
        except ImportError as e:  # pragma: no cover - install problem
            raise RuntimeError("mediapipe 0.10.21 is needed for landmarks: pip install -e '.[distill]'") from e
        self._mesh = face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.5
        )

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        """``[478, 2]`` float32 normalised (x, y), or None when no face is found."""
        res = self._mesh.process(np.ascontiguousarray(rgb, dtype=np.uint8))
        if not res.multi_face_landmarks:
            return None
        pts = res.multi_face_landmarks[0].landmark
        return np.array([(p.x, p.y) for p in pts], dtype=np.float32)

    def close(self) -> None:
        self._mesh.close()


class LandmarkCache:
    """Landmarks on disk under ``<cache>/landmarks/<key[:2]>/<key>.npy`` (NaNs = not found)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else cache_dir() / "landmarks"
        self._detector: FaceMeshDetector | None = None

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, rgb: np.ndarray) -> tuple[np.ndarray, bool]:
        """Landmarks ``[478, 2]`` and whether FaceMesh found the face (else: the mean shape)."""
        path = self._path(image_key(rgb))
        if path.exists():
            pts = np.load(path)
        else:
            pts = self._detect(rgb)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, pts)
            os.replace(tmp, path)
        if np.isnan(pts).any():
            return mean_shape(), False
        return pts, True

    def _detect(self, rgb: np.ndarray) -> np.ndarray:
        if self._detector is None:
            self._detector = FaceMeshDetector()
        pts = self._detector(rgb)
        if pts is None:
            return np.full((NUM_LANDMARKS, 2), np.nan, dtype=np.float32)
        return pts
