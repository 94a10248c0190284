"""``convert --clean-model``: a second, sharp-input SR model in the bundle and the router between them.

Why (docs/camera.md): the camera-robust student converted as ``sr_int8`` gains on blurred, noisy,
compressed faces but gives up most of the clean-protocol gain; the student trained on sharp faces
keeps that gain and adds nothing on camera faces. The bundle carries both and a router
(``edge_affectsr.runtime.routing``) that picks per face. What is built here:

* ``sr_clean_int8.tflite``: the clean checkpoint through the same export (onnx2tf, full int8),
  calibrated on the *undegraded* device-path LR of the same calibration faces, verified on clean
  verification faces and held to the same gates as ``sr_int8`` (gate labels prefixed
  ``sr_clean_int8:``; any failure refuses the whole bundle);
* the manifest's ``routing``: a logistic classifier fitted on the calibration faces' clean LR
  (label 0) against a fresh camera rendering of each (label 1, no clean draws), so the router is
  fitted on training faces, never on the faces it is judged on.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_affectsr.assets import sha256_file
from edge_affectsr.bundle import Routing
from edge_affectsr.convert.calibration import FaceSet
from edge_affectsr.convert.export import load_student
from edge_affectsr.convert.formats import ExportContext, export_sr_int8, tensor_specs
from edge_affectsr.convert.gates import evaluate, measure_structure
from edge_affectsr.convert.tflite_inspect import inspect_tflite
from edge_affectsr.convert.verify import markdown, verify
from edge_affectsr.distill.archs.fer_critic import build_fer_critic
from edge_affectsr.errors import UserError
from edge_affectsr.runtime.degradation import CameraDegradation, degrade_face
from edge_affectsr.runtime.routing import FEATURES, quality_features

log = logging.getLogger(__name__)
CLEAN_FILE = "sr_clean_int8.tflite"
ROUTE_SEED = 7_000_003  # the camera draws the router is fitted against


def fit_routing(clean: np.ndarray, degraded: np.ndarray, steps: int = 3000, l2: float = 1e-3,
                **fitted_on: float | int | str) -> Routing:
    """Logistic regression (full-batch gradient descent, standardised features) separating the
    ``clean`` LR faces ``[N, h, w, 3]`` (label 0) from their ``degraded`` renderings (label 1)."""
    x = np.concatenate([quality_features(clean), quality_features(degraded)])
    y = np.r_[np.zeros(len(clean)), np.ones(len(degraded))]
    mean, std = x.mean(0), x.std(0) + 1e-9
    z = (x - mean) / std
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(steps):
        g = 1.0 / (1.0 + np.exp(-(z @ w + b))) - y
        w -= 0.1 * (z.T @ g / len(y) + l2 * w)
        b -= 0.1 * float(g.mean())
    accuracy = float(((z @ w + b > 0) == y).mean())
    return Routing(features=list(FEATURES), mean=mean.tolist(), std=std.tolist(), weights=w.tolist(), bias=b,
                       fitted_on={"faces": int(len(clean)), "train_accuracy": round(accuracy, 4), **fitted_on})


def load_clean_student(primary_cfg, clean_model: Path):
    """The clean student, loaded before any conversion work; UserError unless it has the primary's
    scale and landmark subset (one aligner and one landmark input serve both)."""
    student, _ = load_student(clean_model)
    cfg = student.cfg
    if (cfg.scale, cfg.landmark_subset) != (primary_cfg.scale, primary_cfg.landmark_subset):
        raise UserError(f"--clean-model {clean_model} is x{cfg.scale} on {cfg.landmark_subset!r} landmarks; the bundle's "
                        f"model is x{primary_cfg.scale} on {primary_cfg.landmark_subset!r}: they must match")
    return student


def build_clean_model(student, calib: FaceSet, val: FaceSet, verify_faces: int, work: Path, stage: Path) -> dict:
    """Export, verify and gate the clean student into ``stage``: ``entry`` (its manifest entry),
    ``gates`` (keyed ``sr_clean_int8: <gate>``) and ``table`` (its verification, markdown).
    ``calib`` must carry its undegraded LR; ``val`` are clean verification faces."""
    clean_calib = replace(calib, img=calib.clean.astype(np.float32) / 255.0)
    work.mkdir(parents=True, exist_ok=True)
    ctx = ExportContext(student, clean_calib, calib.clean.shape[1], calib.lm.shape[1], work)
    path = export_sr_int8(ctx, stage / CLEAN_FILE)
    n = min(verify_faces, len(val.img))
    lr_u8 = np.round(val.img[:n] * 255).astype(np.uint8)
    result = verify({"int8": path}, student, build_fer_critic(), lr_u8, val.lm[:n], val.hr[:n])
    info = inspect_tflite(path)
    gates = evaluate(result["measurements"] + measure_structure([info]))
    entry = {"file": CLEAN_FILE, "format": "tflite-int8", "inputs": tensor_specs(info.inputs),
             "outputs": tensor_specs(info.outputs), "notes": "for sharp faces: the manifest's routing picks it per face"}
    return {"entry": entry, "gates": {f"sr_clean_int8: {k}": v for k, v in gates.items()},
            "table": markdown(result | {"gates": gates})}


def camera_renderings(calib: FaceSet, degradation: CameraDegradation) -> np.ndarray:
    """A fresh camera rendering (no clean draws) of each calibration face's HR crop, ``[n, h, w, 3]``
    uint8: what the router (and the guard reference, ``convert/guard_reference.py``) is fitted against."""
    always = degradation.model_copy(update={"clean_p": 0.0})
    lr_size = calib.clean.shape[1]
    return np.stack([degrade_face(hr, always, lr_size, ROUTE_SEED, i) for i, hr in enumerate(calib.hr)])


def fit_router(calib: FaceSet, degraded: np.ndarray, label: str, clean_model: Path) -> dict:
    """The manifest's ``routing``: calibration faces' clean LR vs ``degraded``, their camera renderings."""
    spec = fit_routing(calib.clean, degraded, degradation=label, clean_checkpoint=str(clean_model),
                       clean_checkpoint_sha256=sha256_file(clean_model))
    log.info("routing: fitted on %d calibration faces x2, train accuracy %.3f",
             spec.fitted_on["faces"], spec.fitted_on["train_accuracy"])
    return spec.model_dump()
