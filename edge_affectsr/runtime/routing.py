"""Quality routing: send each face to the SR model trained for inputs like it.

Why: a student small enough for a camera (84k parameters) cannot be best at both kinds of face it
meets. Trained on camera faces (blurred, noisy, compressed) it gains +0.6 to +1.1 dB over bicubic on
them but only +0.7 dB on a sharp face, where the student trained on sharp faces gains +2.2 dB; and
that student adds nothing on camera faces (docs/camera.md). A bundle may therefore carry both
(``sr_int8``: the camera-robust model, ``sr_clean_int8``: the sharp-input one) and a tiny linear
classifier on three cheap statistics of the LR crop (``routing`` in the manifest) that decides per
face which one runs. A wrong decision is cheap by construction: either model still beats bicubic
on either kind of face, so a misrouted face loses part of its gain, never falls below bicubic.

The statistics are measured on the crop the SR model gets (``[h, w, 3]`` uint8, the LR grid), in
luma, scale-free (each is a log-ratio to the crop's own variance, so lighting and contrast do not
move them):

* ``laplacian``: log(mean squared 4-neighbour Laplacian / variance), high for sharp detail;
* ``high_band``: log of the share of spectral energy above a quarter of the sampling rate;
* ``noise``: log of Immerkaer's fast noise sigma estimate / the crop's standard deviation.

Costs ~0.1 ms per 32 px face on one core; numpy and OpenCV only (the device imports no torch).
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_affectsr.bundle import Routing

FEATURES = ("laplacian", "high_band", "noise")
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def quality_features(lr: np.ndarray) -> np.ndarray:
    """``lr`` ``[N, h, w, 3]`` uint8 RGB -> ``[N, 3]`` float64 (:data:`FEATURES`)."""
    return np.array([_features_one(face) for face in lr], dtype=np.float64).reshape(len(lr), len(FEATURES))


def _features_one(face: np.ndarray) -> tuple[float, float, float]:
    y = cv2.cvtColor(np.ascontiguousarray(face), cv2.COLOR_RGB2GRAY).astype(np.float32)
    var = float(y.var()) + 1e-3
    lap = cv2.Laplacian(y, cv2.CV_32F, ksize=1)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(y - y.mean()))) ** 2
    h, w = y.shape
    yy, xx = np.mgrid[-(h // 2):h - h // 2, -(w // 2):w - w // 2]
    radius = np.hypot(yy / h, xx / w)  # cycles per pixel
    high = spectrum[radius > 0.25].sum() / (spectrum[radius > 0].sum() + 1e-6)
    sigma = np.abs(cv2.filter2D(y, -1, _IMMERKAER))[1:-1, 1:-1].mean() * np.sqrt(np.pi / 2) / 6
    return (float(np.log(float((lap**2).mean()) / var + 1e-6)), float(np.log(high + 1e-6)),
            float(np.log(sigma + 1e-3) - 0.5 * np.log(var)))


def degraded_probability(spec: Routing, lr: np.ndarray) -> np.ndarray:
    """P(the face is camera-degraded) for each face of ``lr`` ``[N, h, w, 3]`` -> ``[N]``."""
    z = (quality_features(lr) - np.asarray(spec.mean)) / np.asarray(spec.std)
    return 1.0 / (1.0 + np.exp(-(z @ np.asarray(spec.weights) + spec.bias)))


class RoutedBackend:
    """Two SR backends behind the one SR call: each face goes to ``degraded`` (the camera-robust
    model) when the router says so, else to ``clean``. ``last_routes`` holds the last call's choice
    per face (True: the camera model), for events and counters."""

    def __init__(self, degraded, clean, spec: Routing) -> None:
        self.degraded, self.clean, self.spec = degraded, clean, spec
        self.name, self.scale, self.lr_size = degraded.name, degraded.scale, degraded.lr_size
        self.params = self.macs = None
        self.runner, self.nodes = degraded.runner, degraded.nodes  # the primary model (self-test, size checks)
        self.last_routes = np.zeros(0, dtype=bool)

    def routes(self, lr: np.ndarray) -> np.ndarray:
        """``[N]`` bool: True where the face goes to the camera-robust model."""
        return degraded_probability(self.spec, lr) >= self.spec.threshold

    def __call__(self, lr: np.ndarray, landmarks: np.ndarray, found: np.ndarray) -> np.ndarray:
        to_degraded = self.routes(lr)
        out = np.empty((len(lr), lr.shape[1] * self.scale, lr.shape[2] * self.scale, 3), np.uint8)
        for mask, backend in ((to_degraded, self.degraded), (~to_degraded, self.clean)):
            if mask.any():
                out[mask] = backend(lr[mask], landmarks[mask], found[mask])
        self.last_routes = to_degraded
        return out
