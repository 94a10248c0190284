"""The manifest's ``guard_reference``: the expression guard's reference for camera-routed faces.

Why (``edge_affectsr/runtime/guard_reference.py``): on a camera-degraded face the critic's reading
of the bicubic upscale is biased, and the guard judged the camera model's outputs against it. Here
a vector scaling of that reading (a temperature and one bias per class) is fitted to the critic's
reading of the HR crop, by minimising their cross-entropy. The faces are the router's own fitting
faces (calibration faces: their clean device-path LR and the same camera renderings the router is
fitted against, ``convert/routed.py``) that the fitted router sends to the camera model, so the
reference is fitted on the faces it will serve and never on validation faces. The critic is the
bundle's int8 one, the one the guard runs.

``python -m edge_affectsr.convert.guard_reference --model BUNDLE --data CALIB_DIR --out NEW_BUNDLE``
refits only this part into a copy of a routed bundle (unsigned: the manifest changed), for
measuring it without a full conversion (``make docs-guard-reference``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edge_affectsr.assets import FER_CLASSES
from edge_affectsr.bundle import GuardReference, Routing, read_manifest, write_bundle
from edge_affectsr.convert.calibration import FaceSet, load_calibration
from edge_affectsr.convert.routed import camera_renderings
from edge_affectsr.errors import UserError
from edge_affectsr.protocol import HR_SIZE, bicubic_up
from edge_affectsr.runtime.critic import FerCritic
from edge_affectsr.runtime.degradation import CameraDegradation, parse_degradation
from edge_affectsr.runtime.guard_reference import calibrated_logits, floored_log, softmax
from edge_affectsr.runtime.interpreter import load_interpreter
from edge_affectsr.runtime.routing import degraded_probability

log = logging.getLogger(__name__)
FLOOR = 1e-3  # the int8 critic's probabilities are multiples of ~1/256, with exact zeros


def cross_entropy(target: np.ndarray, log_p: np.ndarray, inverse_temperature: float, bias: np.ndarray) -> float:
    """Mean cross-entropy of the reference (floored ``log_p`` ``[N, C]`` scaled) against ``target`` ``[N, C]``."""
    z = calibrated_logits(log_p, inverse_temperature, bias)
    log_softmax = z - z.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    return float(-(target * log_softmax).sum(1).mean())


def fit_vector_scaling(p_bicubic: np.ndarray, p_hr: np.ndarray, floor: float = FLOOR, steps: int = 50,
                       tol: float = 1e-10) -> tuple[float, np.ndarray]:
    """(temperature, bias ``[C]``) minimising the cross-entropy of ``softmax(log p_bicubic / T + b)``
    against ``p_hr`` (both ``[N, C]``). The loss is convex in (1/T, b), so damped Newton steps on
    those 1 + C numbers converge in a few iterations; the bias is centred (softmax ignores a shift)."""
    log_p = floored_log(p_bicubic, floor)
    target = np.asarray(p_hr, np.float64) / np.asarray(p_hr, np.float64).sum(1, keepdims=True)
    theta = np.r_[1.0, np.zeros(log_p.shape[1])]  # (1/T, b): start at the plain bicubic reading
    loss = cross_entropy(target, log_p, theta[0], theta[1:])
    for _ in range(steps):
        step = -np.linalg.lstsq(_hessian(log_p, theta), _gradient(log_p, target, theta), rcond=None)[0]
        new, new_loss = _damped(target, log_p, theta, step, loss)
        if new is None:
            break
        theta, done, loss = new, loss - new_loss < tol, new_loss
        if done:
            break
    return 1.0 / theta[0], theta[1:] - theta[1:].mean()


def _gradient(log_p: np.ndarray, target: np.ndarray, theta: np.ndarray) -> np.ndarray:
    dz = (softmax(calibrated_logits(log_p, theta[0], theta[1:])) - target) / len(log_p)  # [N, C]
    return np.r_[(dz * log_p).sum(), dz.sum(0)]


def _hessian(log_p: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``[1 + C, 1 + C]``: the sum over faces of J^T (diag s - s s^T) J, with J = [log_p_i, I]."""
    s = softmax(calibrated_logits(log_p, theta[0], theta[1:]))
    sl = (s * log_p).sum(1, keepdims=True)  # [N, 1]
    n, c = log_p.shape
    h = np.empty((1 + c, 1 + c))
    h[0, 0] = ((s * log_p**2).sum(1) - sl[:, 0] ** 2).sum()
    h[0, 1:] = h[1:, 0] = (s * log_p - s * sl).sum(0)
    h[1:, 1:] = np.diag(s.sum(0)) - s.T @ s
    return h / n


def _damped(target: np.ndarray, log_p: np.ndarray, theta: np.ndarray, step: np.ndarray,
            loss: float) -> tuple[np.ndarray | None, float]:
    """The first of step, step/2, ... that keeps 1/T positive and lowers the loss; (None, loss) if none does."""
    for _ in range(30):
        new = theta + step
        if new[0] > 0:
            new_loss = cross_entropy(target, log_p, new[0], new[1:])
            if new_loss <= loss:
                return new, new_loss
        step = step / 2
    return None, loss


def routed_to_camera(calib: FaceSet, renderings: np.ndarray, routing: Routing) -> np.ndarray:
    """The router's fitting faces (``calib.clean`` and ``renderings``, both ``[n, h, w, 3]`` uint8) that
    ``routing`` sends to the camera model -> ``[m, h, w, 3]``, with their HR crops ``[m, 128, 128, 3]``."""
    lr = np.concatenate([calib.clean, renderings])
    hr = np.concatenate([calib.hr, calib.hr])
    to_camera = degraded_probability(routing, lr) >= routing.threshold
    return lr[to_camera], hr[to_camera]


def fit_guard_reference(calib: FaceSet, renderings: np.ndarray, routing: Routing, critic_file: Path,
                        label: str) -> dict:
    """The manifest's ``guard_reference``, fitted with the int8 critic ``critic_file`` on the faces of
    :func:`routed_to_camera` (see the module doc)."""
    lr, hr = routed_to_camera(calib, renderings, routing)
    critic = FerCritic(load_interpreter(critic_file, ["cpu"]))
    if list(critic.classes) != list(FER_CLASSES):
        raise UserError(f"{critic_file}: the critic's classes {critic.classes} are not {FER_CLASSES}")
    p_bic = critic.probabilities_batch([bicubic_up(face, HR_SIZE) for face in lr])
    p_hr = critic.probabilities_batch(list(hr))
    temperature, bias = fit_vector_scaling(p_bic, p_hr)
    spec = GuardReference(temperature=temperature, bias=bias.tolist(), classes=list(critic.classes), floor=FLOOR,
                          fitted_on=_fit_summary(p_bic, p_hr, temperature, bias, label, len(calib.hr)))
    log.info("guard reference: T = %.3f, fitted on %d camera-routed calibration faces, cross-entropy %.3f -> %.3f",
             temperature, len(lr), spec.fitted_on["cross_entropy_bicubic"], spec.fitted_on["cross_entropy_calibrated"])
    return spec.model_dump()


def _fit_summary(p_bic: np.ndarray, p_hr: np.ndarray, temperature: float, bias: np.ndarray, label: str,
                 calibration_faces: int) -> dict[str, float | int | str]:
    """What the fit saw and bought, on its own faces: cross-entropy and top-1 agreement with the HR reading."""
    log_p, hr_top = floored_log(p_bic, FLOOR), p_hr.argmax(1)
    p_ref = softmax(calibrated_logits(log_p, 1.0 / temperature, bias))
    return {"faces": int(len(p_bic)), "calibration_faces": int(calibration_faces), "degradation": label,
            "cross_entropy_bicubic": round(cross_entropy(p_hr, log_p, 1.0, np.zeros(len(bias))), 4),
            "cross_entropy_calibrated": round(cross_entropy(p_hr, log_p, 1.0 / temperature, bias), 4),
            "top1_agreement_bicubic": round(float((p_bic.argmax(1) == hr_top).mean()), 4),
            "top1_agreement_calibrated": round(float((p_ref.argmax(1) == hr_top).mean()), 4)}


def refit_bundle(bundle: Path, calib_dir: Path, out: Path, degradation: str = "camera", force: bool = False) -> dict:
    """A copy of the routed ``bundle`` at ``out`` with a freshly fitted ``guard_reference`` (the rest
    unchanged; unsigned). The calibration faces and camera renderings are made as ``convert`` makes
    them (``load_calibration``, ``routed.camera_renderings``); ``force`` accepts fewer than 200."""
    manifest = read_manifest(bundle)
    label, camera = parse_degradation(degradation)
    if manifest.routing is None or camera is None:
        raise UserError(f"{bundle}: the guard reference is for routed bundles (convert --clean-model) and needs a "
                        f"camera --degradation (got {degradation!r})")
    if out.exists():
        raise UserError(f"{out} already exists; choose a new --out or remove it")
    calib = load_calibration(calib_dir, manifest.scale, manifest.landmarks.subset, force=force, degradation=camera)
    spec = fit_guard_reference(calib, camera_renderings(calib, camera), manifest.routing,
                               bundle / manifest.models["fer_int8"].file, label)
    with tempfile.TemporaryDirectory(dir=out.resolve().parent) as work:
        stage = Path(work) / "stage"
        shutil.copytree(bundle, stage, ignore=shutil.ignore_patterns("manifest.json", "manifest.sig"))
        doc = manifest.model_dump(exclude={"schema_version", "files"}) | {"guard_reference": spec}
        write_bundle(stage, out, doc)
    return spec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge_affectsr.convert.guard_reference", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="a routed bundle folder (or shipped name), e.g. bundle-x4")
    p.add_argument("--data", type=Path, required=True, help="the calibration faces the bundle was converted with")
    p.add_argument("--degradation", default="camera", help="the camera preset the bundle was converted with")
    p.add_argument("--out", type=Path, required=True, help="the new bundle folder (must not exist)")
    p.add_argument("--force", action="store_true", help="accept fewer than 200 calibration faces")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from edge_affectsr.models import resolve_model

    try:
        spec = refit_bundle(resolve_model(str(args.model)), args.data, args.out, args.degradation, args.force)
    except UserError as e:
        p.exit(2, f"error: {e}\n")
    print(json.dumps(spec, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
