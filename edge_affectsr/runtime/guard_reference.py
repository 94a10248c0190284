"""The expression guard's camera-aware reference: the critic's reading of bicubic, recalibrated.

Why: the guard asks whether the SR output's expression is one the LR face supports, and the
critic's reading of the plain bicubic upscale stood for "what the LR face supports". On a
camera-degraded face that reading is biased — blur and compression push the critic towards a few
classes (bicubic agrees with the HR crop on only 21-30 % of such faces, docs/camera.md) — so the
guard failed half of the camera model's outputs for disagreeing with a reading that was itself
wrong. A routed bundle therefore carries a *vector scaling* of that reading, fitted at convert time
(``convert/guard_reference.py``) on calibration faces' camera renderings against the critic's
reading of their HR crops:

    p_ref = softmax(log max(p_bicubic, floor) / temperature + bias)    (8 numbers for 7 classes)

The temperature keeps as much of the bicubic reading as predicts the HR one, the biases remove the
degradation's per-class pull. The guard uses it only on faces the router sends to the camera model;
sharp faces keep the plain bicubic reference, on which the thresholds were chosen. Measured on
CelebA's camera renderings the fit gives T ~ 17 (the reading predicts next to nothing), which makes
the reference a class prior: docs/camera.md says why convert therefore fits it only on request.

Numpy only: the device imports no torch or TensorFlow.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edge_affectsr.bundle import BundleError, GuardReference

def calibrated_logits(log_p: np.ndarray, inverse_temperature: float, bias: np.ndarray) -> np.ndarray:
    """``[N, C]`` floored log-probabilities -> ``[N, C]`` logits of the reference (the fit's model too)."""
    return log_p * inverse_temperature + bias


def floored_log(p: np.ndarray, floor: float) -> np.ndarray:
    """``log max(p, floor)``: the int8 critic gives exact zeros, whose log would be -inf."""
    return np.log(np.maximum(np.asarray(p, np.float64), floor))


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``[N, C]`` logits."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def reference_probabilities(spec: GuardReference, p_bicubic: np.ndarray) -> np.ndarray:
    """The calibrated reference for the critic's readings ``p_bicubic`` ``[N, C]`` (or ``[C]``) -> same shape."""
    p = np.asarray(p_bicubic, np.float64)
    z = calibrated_logits(floored_log(np.atleast_2d(p), spec.floor), 1.0 / spec.temperature, np.asarray(spec.bias))
    return softmax(z).reshape(p.shape)


def check_classes(spec: GuardReference, classes: Sequence[str]) -> None:
    """BundleError unless the reference was fitted for a critic with these classes, in this order."""
    if list(spec.classes) != list(classes):
        raise BundleError(f"the bundle's guard_reference is for the classes {spec.classes}, its critic gives "
                        f"{list(classes)}; rebuild the bundle with `edge-affectsr convert`")
