"""The expression-preservation guard: did this upscale keep the face's expression?

On the camera there is no HR ground truth, only the LR crop. Its plain bicubic upscale is the
"no hallucination" reference: blurry, inventing nothing, and therefore *uncertain* about the
expression. A good SR output resolves that uncertainty — towards the truth, which is why it often
has another top-1 class than bicubic (the HR crop itself agrees with bicubic on only 59 % of faces).
So the guard does not ask the SR output to agree with bicubic; it asks it to stay plausible:

* ``plausible``: the SR output's top expression has probability ≥ ``min_reference_prob`` under
  bicubic (a reading the LR face supports, not one it rules out);
* ``kl``: KL(p_bicubic || p_SR) ≤ ``kl_max`` (the distribution did not move wholesale);
* ``landmark_error``: FaceMesh on the SR output vs the input's landmarks (mean distance over the 468
  mesh points, over the inter-ocular distance) ≤ ``landmark_max`` (the face kept its shape).

The verdict has three values: ``preserved`` when ``plausible and kl <= kl_max and landmark_error <=
landmark_max``, else ``changed``, and, on camera-routed faces only, ``unverified`` (below);
``agreement`` (same top-1 as bicubic) is reported for information. With ``fallback_to_bicubic`` the
bicubic image is reported instead of a ``changed`` output, never instead of an ``unverified`` one
(nothing says it is wrong). The event's boolean ``preserved`` is ``verdict == "preserved"``.

On a camera-degraded face the critic's reading of bicubic is itself biased (blur and compression
pull it towards a few classes: it agrees with the HR crop on 21-30 % of such faces), so a routed
bundle may carry a ``guard_reference`` (:mod:`edge_affectsr.runtime.guard_reference`): a vector
scaling of that reading fitted at convert time to the critic's reading of HR crops. On the faces
the router sent to the camera model it replaces ``p_bicubic`` in ``plausible`` and ``kl`` (the
event's ``reference: calibrated``); every other face, and every face of a bundle without one, is
judged against bicubic exactly as before (``reference: bicubic``). Measured (docs/camera.md): fitted
on CelebA camera renderings its temperature is ~17, i.e. a near-constant class prior; it raises the
pass rate without telling right readings from wrong ones, so ``convert`` adds it only on request.

So on those faces the guard says what it can verify and no more (``camera_faces: landmarks``, the
default): a camera-routed face is judged by the landmark check alone (FaceMesh on the SR output vs
the input's landmarks, the schedule below included), and where there is no landmark check (a face
aligned from the detector's keypoints, or ``landmarks: false``) its verdict is ``unverified``. On
those faces the expression checks pass ~50 % of SR outputs whether the SR's reading is the HR
crop's or not (camera-eval --small, docs/camera.md), so a pass or a failure from them would be a coin
toss reported as a measurement. ``kl`` and ``reference_prob`` are still recorded there, for
information. ``camera_faces: all_checks`` judges them as every other face. Faces the router sent to
the clean model, and every face of a bundle without routing, are judged by every check either way.

A face FaceMesh rejected (aligned from the detector's keypoints, ``found=False``: its landmarks are
the mean shape, not its own) has no input landmarks to compare with, so its landmark check is not
made: ``landmark_error`` is NaN (``null`` in the event, whose ``landmarks: keypoints`` says why) and
the verdict rests on plausibility and KL (``unverified`` when the face is camera-routed, above).
Neither stand-in reference works (camera-eval --small, lens:32 / jpeg:24 / h264:24, 25 / 50 / 52
such faces): the clean HR crop itself is 0.28-0.31 inter-ocular distances from the mean shape (every
output would fail 0.10), and FaceMesh finds a face in the bicubic upscale of 0-2 % of them (in the
SR output of 12-40 %, in the HR crop of 88-96 %).

FaceMesh runs on the 128x128 SR image as if it were a frame holding one detected face: the
detection is the *canonical* one for an aligned crop (BlazeFace's mean box and keypoints on
CelebA-aligned crops, measured once on 50 CelebA val faces), because the crop is aligned to the
mean shape by construction. A detection spanning the whole image gives FaceMesh a crop 1.5x too
wide and errors of ~0.6 inter-ocular distances even on HR; the canonical one gives 0.03.

FaceMesh on the SR output is the guard's dearest part (~2.2 ms of its ~2.9 ms a face), and a
track's face shape changes slowly, so in the frame loop (:meth:`ExpressionGuard.batch` with track
ids) it runs on a track's first upscale, then every ``landmark_every``-th, and on any face whose SR
output the critic reads differently from its bicubic upscale (``landmark_on_disagreement``: where SR
may have changed the face); in between, the track's last measured error stands for the verdict
and the event says ``landmark_checked: false``. :class:`LandmarkSchedule` keeps that per track.
All the faces of a frame share one critic call (SR outputs and bicubic upscales together).

Defaults ``min_reference_prob = 0.15``, ``kl_max = 1.0``, ``landmark_max = 0.10`` were chosen with
``edge-affectsr camera-eval`` on 148 CelebA val faces taken through the device pipeline and checked
on 149 others (docs/device.md): the trained int8 student passes 68-76 %, the HR crop 61-77 %, a
sharpened bicubic 88-90 %, while a heavy blur passes 0 %, the face upside down 1-2 % and another
person's face 18-24 % (the same expression on another face is not an expression change; the
landmark check catches part of them). The earlier rule (same top-1 as bicubic, KL ≤ 0.3) passed the
trained student on only 36-38 % and the HR crop on 29-34 %: it punished the very detail SR restores.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal, Sequence

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr import landmark_graph
from edge_affectsr.device.reporting.events import CHANGED, PRESERVED, UNVERIFIED, Guard
from edge_affectsr.metrics import kl_divergence
from edge_affectsr.protocol import bicubic_up
from edge_affectsr.bundle import GuardReference
from edge_affectsr.runtime.align import CANONICAL_BOX, CANONICAL_KEYPOINTS
from edge_affectsr.runtime.critic import FerCritic
from edge_affectsr.runtime.detect import Detection
from edge_affectsr.runtime.guard_reference import check_classes, reference_probabilities
from edge_affectsr.runtime.landmarks import FaceLandmarker

NUM_MESH = 468


class GuardConfig(BaseModel):
    """The ``guard:`` section of the device config."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(
        True, description="check that the upscale kept the expression; false: every face reported as preserved")
    min_reference_prob: float = Field(
        0.15, ge=0, le=1, description="the reference's (p_bicubic, or the bundle's guard_reference on camera-routed "
                                      "faces) probability of the SR output's top expression must be at least this")
    kl_max: float = Field(1.0, ge=0, description="largest KL(p_reference || p_SR), nats")
    landmark_max: float = Field(
        0.10, ge=0, description="largest mean landmark distance / inter-ocular distance, FaceMesh on SR vs input")
    landmarks: bool = Field(True, description="run FaceMesh on the SR output (one more FaceMesh call per face)")
    landmark_every: int = Field(
        5, ge=1, description="FaceMesh on a track's SR output on its first upscale, then every Nth (1: every "
                             "face); in between the track's last landmark error stands")
    landmark_on_disagreement: bool = Field(
        True, description="also run it on a face whose SR output the critic reads differently from its bicubic upscale")
    camera_faces: Literal["landmarks", "all_checks"] = Field(
        "landmarks", description="faces the router sent to the camera model: landmarks: judged by the landmark "
                                 "check alone, unverified where there is none (keypoint-aligned faces, landmarks: "
                                 "false), because on them the expression checks are noise; all_checks: the "
                                 "expression checks too, as on every other face")
    fallback_to_bicubic: bool = Field(
        False, description="report the bicubic upscale when the guard says the SR output changed the expression "
                           "(not when it could not verify it)")


@dataclass(frozen=True)
class Verdict:
    """The guard's result on one face: the event's ``guard`` record, the distributions (``p_reference``
    the one the SR output was judged against: ``p_bicubic`` or its calibration), and the image to
    report (the SR output, or bicubic after a fallback)."""

    guard: Guard
    p_sr: np.ndarray
    p_bicubic: np.ndarray
    image: np.ndarray
    p_reference: np.ndarray

    @property
    def probabilities(self) -> np.ndarray:
        """The distribution of the reported image."""
        return self.p_bicubic if self.guard.fallback else self.p_sr


def canonical_detection(size: int) -> Detection:
    """The detection of the face in a ``size`` x ``size`` aligned crop."""
    box = tuple(v * size for v in CANONICAL_BOX)
    return Detection(box, 1.0, np.asarray(CANONICAL_KEYPOINTS, np.float32) * size)


@dataclass(frozen=True)
class ExpressionChecks:
    """The guard's expression checks of one SR reading against a reference reading."""

    reference_prob: float  # the reference's probability of the SR output's top class
    plausible: bool
    kl: float  # KL(p_reference || p_SR)

    def verdict(self, config: GuardConfig, landmark_error: float, landmarks_only: bool = False) -> str:
        """All checks: ``preserved`` when plausible, KL within bounds and no landmark error over the
        maximum (NaN: unchecked), else ``changed``; ``landmarks_only`` (a camera-routed face under
        ``camera_faces: landmarks``): :func:`landmark_verdict`, these checks ignored."""
        if landmarks_only:
            return landmark_verdict(landmark_error, config)
        kept = self.plausible and self.kl <= config.kl_max and not landmark_error > config.landmark_max
        return PRESERVED if kept else CHANGED


def landmark_verdict(landmark_error: float, config: GuardConfig) -> str:
    """The landmark check alone: ``unverified`` without one (NaN), else ``preserved`` up to
    ``landmark_max`` (inf, no face found in the output, is ``changed``)."""
    if math.isnan(landmark_error):
        return UNVERIFIED
    return PRESERVED if landmark_error <= config.landmark_max else CHANGED


def expression_checks(p_sr: np.ndarray, p_reference: np.ndarray, config: GuardConfig) -> ExpressionChecks:
    """``plausible`` and ``kl`` of the SR reading ``p_sr`` ``[C]`` against ``p_reference`` ``[C]``."""
    reference_prob = float(p_reference[int(np.argmax(p_sr))])
    return ExpressionChecks(reference_prob, reference_prob >= config.min_reference_prob,
                            kl_divergence(p_reference[None], p_sr[None]))


@functools.lru_cache(maxsize=1)
def _eye_nodes() -> tuple[np.ndarray, np.ndarray]:
    regions = landmark_graph.regions()
    return np.array(regions["right_eye"]), np.array(regions["left_eye"])


def landmark_error(found: np.ndarray, reference: np.ndarray) -> float:
    """Mean distance between two meshes (first 468 points, same pixel units) over the reference's
    inter-ocular distance (between the eye-contour centres)."""
    right, left = _eye_nodes()
    iod = float(np.linalg.norm(reference[right].mean(axis=0) - reference[left].mean(axis=0)))
    if iod <= 0:
        return math.inf
    return float(np.linalg.norm(found[:NUM_MESH] - reference[:NUM_MESH], axis=1).mean() / iod)


class LandmarkSchedule:
    """Which upscales of a track get FaceMesh on their SR output: the first, then every ``every``-th;
    it remembers each track's last measured error for the upscales in between."""

    def __init__(self, every: int) -> None:
        self.every = every
        self._age: dict[int, int] = {}  # upscales since the track's last check
        self._error: dict[int, float] = {}

    def due(self, track: int) -> bool:
        return track not in self._age or self._age[track] + 1 >= self.every

    def record(self, track: int, error: float | None) -> None:
        """The track's error just measured, or None when its check was skipped."""
        if error is None:
            self._age[track] += 1
        else:
            self._age[track], self._error[track] = 0, error

    def last(self, track: int) -> float:
        return self._error.get(track, math.nan)

    def forget_except(self, live: set[int]) -> None:
        for track in set(self._age) - live:
            del self._age[track], self._error[track]


class ExpressionGuard:
    """``guard(lr, sr, landmarks_full, found)`` -> :class:`Verdict` for one face, every check made;
    ``guard.batch(...)`` for all the faces of a frame. ``reference``: the bundle's
    ``guard_reference`` (module doc), used on the faces flagged ``camera``. One instance per thread
    (it owns no interpreter, but the critic and landmarker it is given do)."""

    def __init__(self, critic: FerCritic, landmarker: FaceLandmarker | None, config: GuardConfig | None = None,
                 reference: GuardReference | None = None) -> None:
        self.config = config or GuardConfig()
        self.critic = critic
        self.landmarker = landmarker if self.config.landmarks else None
        self.schedule = LandmarkSchedule(self.config.landmark_every)
        if reference is not None:
            check_classes(reference, critic.classes)
        self.reference = reference

    def __call__(self, lr_rgb: np.ndarray, sr_rgb: np.ndarray, landmarks_full: np.ndarray, found: bool = True,
                 camera: bool = False) -> Verdict:
        """``lr_rgb`` the SR input, ``sr_rgb`` its output, ``landmarks_full`` [478, 2] in [0, 1] of the crop;
        ``found`` False when those are the mean shape (no landmark check, module doc); ``camera`` True
        when the router sent the face to the camera model."""
        return self.batch([lr_rgb], [sr_rgb], [landmarks_full], [found], camera=[camera])[0]

    def batch(self, lr_rgb: Sequence[np.ndarray], sr_rgb: Sequence[np.ndarray], landmarks_full: Sequence[np.ndarray],
              found: Sequence[bool], tracks: Sequence[int] | None = None,
              camera: Sequence[bool] | None = None) -> list[Verdict]:
        """The above for N faces (sequences or ``[N, ...]`` stacks) -> one verdict per face. ``tracks``
        (each face's track id) turns on the landmark schedule; None checks every face. ``camera``
        (per face: routed to the camera model) picks the calibrated reference and, under
        ``camera_faces: landmarks``, the landmark-only verdict; None: no face is camera-routed."""
        if not self.config.enabled:  # unchecked: reported as preserved, with no numbers
            guard = Guard(preserved=True, agreement=True, kl=math.nan, landmark_error=math.nan, landmark_checked=False)
            return [Verdict(guard, p, p, sr, p) for p, sr in zip(self.critic.probabilities_batch(sr_rgb), sr_rgb)]
        bicubic = [bicubic_up(lr, sr.shape[0]) for lr, sr in zip(lr_rgb, sr_rgb)]
        p = self.critic.probabilities_batch([*sr_rgb, *bicubic])
        n = len(sr_rgb)
        routed = np.zeros(n, bool) if camera is None else np.asarray(camera, bool)
        calibrated = routed & (self.reference is not None)
        landmarks_only = routed & (self.config.camera_faces == "landmarks")
        p_ref = p[n:].copy()
        if calibrated.any():
            p_ref[calibrated] = reference_probabilities(self.reference, p_ref[calibrated])
        return [self._verdict(sr_rgb[i], bicubic[i], p[i], p[n + i], p_ref[i], bool(calibrated[i]),
                              bool(landmarks_only[i]), landmarks_full[i], bool(found[i]),
                              None if tracks is None else tracks[i]) for i in range(n)]

    def _verdict(self, sr_rgb: np.ndarray, bicubic: np.ndarray, p_sr: np.ndarray, p_bic: np.ndarray,
                 p_ref: np.ndarray, calibrated: bool, landmarks_only: bool, landmarks_full: np.ndarray, found: bool,
                 track: int | None) -> Verdict:
        agreement = int(np.argmax(p_bic)) == int(np.argmax(p_sr))
        checks = expression_checks(p_sr, p_ref, self.config)
        lm_error, checked = self._landmarks(sr_rgb, landmarks_full, found, track, agreement)
        verdict = checks.verdict(self.config, lm_error, landmarks_only)
        fallback = verdict == CHANGED and self.config.fallback_to_bicubic
        guard = Guard.judged(verdict, agreement=agreement, kl=checks.kl, landmark_error=lm_error, fallback=fallback,
                             reference_prob=checks.reference_prob, landmark_checked=checked,
                             reference="calibrated" if calibrated else "bicubic")
        return Verdict(guard, p_sr, p_bic, bicubic if fallback else sr_rgb, p_ref)

    def _landmarks(self, sr_rgb: np.ndarray, landmarks_full: np.ndarray, found: bool, track: int | None,
                   agreement: bool) -> tuple[float, bool]:
        """(landmark error, measured on this output?): measured when due, else the track's last."""
        if not found or self.landmarker is None:
            return math.nan, False
        due = track is None or self.schedule.due(track) or (self.config.landmark_on_disagreement and not agreement)
        error = self.landmark_error(sr_rgb, landmarks_full) if due else None
        if track is None:
            return error, True
        self.schedule.record(track, error)
        return (error, True) if due else (self.schedule.last(track), False)

    def landmark_error(self, sr_rgb: np.ndarray, landmarks_full: np.ndarray) -> float:
        """FaceMesh on the SR image vs the input landmarks; NaN when the check is off, inf when FaceMesh
        finds no face in the output (a face the landmarker cannot see is not a preserved face)."""
        if self.landmarker is None:
            return math.nan
        size = sr_rgb.shape[0]
        found = self.landmarker(cv2.cvtColor(sr_rgb, cv2.COLOR_RGB2BGR), canonical_detection(size))
        if not self.landmarker.found(found):
            return math.inf
        return landmark_error(found.points, landmarks_full * size)
