"""``edge-affectsr camera-eval``: the camera path on real faces, scored against the aligned HR crop.

Why a second evaluation: ``eval`` scores models under the training protocol (LR = bicubic
downsample, landmarks from mediapipe-python with real irises). On the camera the LR comes out of
the aligner warping a frame, the landmarks from the bundled FaceMesh TFLite with estimated irises,
the SR from the int8 model and the critic is the int8 one. Here each face is pasted into a 640x480
frame and taken through the device's own :class:`~device.inference.pipeline.Pipeline`; the int8 SR output and
reference outputs (bicubic, sharpened, blurred, another person, upside down, the HR crop itself)
are scored against the aligned HR crop and given to the expression guard, which is how its
thresholds were chosen (docs/device.md). Each output's verdicts (kept / changed / not verified) are
reported as the device's guard gives them and, from the same readings, under every check on every
face (``guard.camera_faces: all_checks``), so one run compares the two policies.

``small=`` (``camera-eval --small PRESET:SIZE``) stages each face small in a whole degraded frame
instead (:mod:`edge_affectsr.device.service.camera_small`); the same outputs are scored against the
clean HR crop in the device's alignment, and the faces the detector or FaceMesh missed are counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge_affectsr.runtime.bundle_models import LoadedBundle, load_bundle
from edge_affectsr.device.capture.frame import Frame
from edge_affectsr.runtime.detect import DetectorConfig
from edge_affectsr.runtime.frames import paste
from edge_affectsr.runtime.interpreter import InterpreterConfig
from edge_affectsr.runtime.landmarks import LandmarkConfig
from edge_affectsr.device.inference.guard import expression_checks
from edge_affectsr.device.reporting.events import CHANGED, PRESERVED, UNVERIFIED
from edge_affectsr.device.inference.pipeline import FaceResult, Pipeline
from edge_affectsr.device.service.camera_small import SmallFaces, small_faces
from edge_affectsr.errors import UserError
from edge_affectsr.metrics import psnr
from edge_affectsr.protocol import bicubic_up
from edge_affectsr.reports import write_json, write_text

log = logging.getLogger(__name__)


def unsharp(img: np.ndarray) -> np.ndarray:
    return np.clip(cv2.addWeighted(img, 1.6, cv2.GaussianBlur(img, (0, 0), 2), -0.6, 0), 0, 255).astype(np.uint8)


def blurred(sigma: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda img: cv2.GaussianBlur(img, (0, 0), sigma)


# Outputs given to the guard, from one face's pipeline result and the next face's (another person).
OUTPUTS: dict[str, Callable[[FaceResult, FaceResult], np.ndarray]] = {
    "int8 SR (bundle)": lambda f, _: f.sr,
    "bicubic": lambda f, _: bicubic_up(f.aligned.lr),
    "bicubic + unsharp mask": lambda f, _: unsharp(bicubic_up(f.aligned.lr)),
    "bicubic blurred, sigma 3": lambda f, _: blurred(3)(bicubic_up(f.aligned.lr)),
    "bicubic blurred, sigma 6": lambda f, _: blurred(6)(bicubic_up(f.aligned.lr)),
    "another person's face": lambda _, other: bicubic_up(other.aligned.lr),
    "the face upside down": lambda f, _: np.ascontiguousarray(bicubic_up(f.aligned.lr)[::-1]),
    "the HR crop itself": lambda f, _: f.aligned.hr,
}


def pipeline_faces(bundle: LoadedBundle, files: list[Path]) -> tuple[list[FaceResult], int]:
    """One FaceResult per photo whose face the pipeline found (a fresh pipeline each: no tracking)."""
    results = []
    for i, path in enumerate(tqdm(files, desc="camera path", unit="face", dynamic_ncols=True)):
        image = cv2.imread(str(path))
        if image is None:
            log.warning("skipping unreadable %s", path)
            continue
        frame_result = Pipeline(bundle).process(Frame(i, 0.0, paste(image)))
        if frame_result.faces:
            results.append(frame_result.faces[0])
    return results, len(files) - len(results)


# The guard's verdicts scored per output, each from the same readings and landmark check, by the suffix
# of their keys: "" the device's guard (its config; by default camera-routed faces judged by the landmark
# check alone), "_all_checks" every check on every face against the bundle's reference (camera_faces:
# all_checks), "_bicubic_reference" every check on every face against bicubic.
POLICIES = ("", "_all_checks", "_bicubic_reference")


def score_output(name: str, faces: list[FaceResult], hr_labels: list[int], pipeline: Pipeline) -> dict:
    """PSNR and expression agreement against the HR crop (``hr_labels``: the critic's top-1 on each),
    and the guard's verdicts under each of :data:`POLICIES`: the device's (the pipeline's guard
    config), and, from the same readings and landmark check, every check with the bundle's reference
    (the calibrated one on faces routed to the camera model, when the bundle has one) and with the
    plain bicubic reference on every face."""
    rows, verdicts = [], []
    config = pipeline.guard.config
    for i, (face, hr_label) in enumerate(zip(faces, hr_labels)):
        out = OUTPUTS[name](face, faces[(i + 1) % len(faces)])
        camera = face.event.sr_model == "camera"
        verdict = pipeline.guard(face.aligned.lr, out, face.aligned.landmarks_full, face.aligned.found, camera=camera)
        g = verdict.guard
        verdicts.append([g.verdict] + [expression_checks(verdict.p_sr, p, config).verdict(config, g.landmark_error)
                                       for p in (verdict.p_reference, verdict.p_bicubic)])
        rows.append((psnr(out, face.aligned.hr), int(np.argmax(verdict.p_sr) == hr_label), g.agreement,
                     g.reference_prob >= config.min_reference_prob, g.kl, g.landmark_error,
                     g.reference == "calibrated", camera))
    psnrs, agree_hr, agree_bic, plaus, kl, lm_err, calibrated, routed = (np.array(c, dtype=float) for c in zip(*rows))
    finite, finite_psnr = lm_err[np.isfinite(lm_err)], psnrs[np.isfinite(psnrs)]
    right = agree_hr.astype(bool)
    by_policy = np.array(verdicts).T
    return {
        "output": name, "psnr_vs_hr": float(finite_psnr.mean()) if finite_psnr.size else None,
        "agreement_with_hr": float(agree_hr.mean()),
        "guard_agreement": float(agree_bic.mean()), "guard_plausible": float(plaus.mean()), "kl_median": float(np.median(kl)),
        "landmark_error_median": float(np.median(finite)) if finite.size else None,
        # of the faces whose landmarks were checked (not those aligned from keypoints: NaN)
        "no_face_in_output": float(np.isinf(lm_err).sum() / checked) if (checked := (~np.isnan(lm_err)).sum()) else None,
        "camera_routed": float(routed.mean()), "guard_calibrated_reference": float(calibrated.mean()),
        **{key: value for suffix, v in zip(POLICIES, by_policy) for key, value in verdict_rates(v, right, suffix).items()},
    }


def verdict_rates(verdicts: np.ndarray, right: np.ndarray, suffix: str) -> dict[str, float | None]:
    """The shares of each verdict (``guard_pass``: preserved), the pass rate over the verified outputs,
    and that rate among the outputs the critic reads as the HR crop (``right``: same top-1) and among
    the others: a useful guard passes the first clearly more often. None where no output."""
    verified, passed = verdicts != UNVERIFIED, verdicts == PRESERVED

    def rate(mask: np.ndarray) -> float | None:
        return float(passed[mask].mean()) if mask.any() else None

    return {f"guard_pass{suffix}": float(passed.mean()), f"guard_changed{suffix}": float((verdicts == CHANGED).mean()),
            f"guard_unverified{suffix}": float((~verified).mean()), f"guard_pass_verified{suffix}": rate(verified),
            f"guard_pass_if_right{suffix}": rate(verified & right), f"guard_pass_if_wrong{suffix}": rate(verified & ~right)}


def select_photos(data: Path, faces: int, stride: int, offset: int) -> list[Path]:
    """Photos under ``data`` (sub-folders too, e.g. one per expression class), sorted by path, every
    ``stride``-th from ``offset``, at most ``faces`` of them."""
    photos = sorted(p for p in Path(data).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.is_file())
    files = photos[offset::stride][:faces]
    if len(files) < 2:
        raise UserError(f"{data}: need at least 2 face photos (found {len(files)})")
    return files


def camera_eval(bundle_path: str | Path | None, data: Path, faces: int = 150, stride: int = 4, offset: int = 0,
                small: SmallFaces | None = None, fallback: str = LandmarkConfig().fallback) -> dict:
    """Score the camera path on photos from :func:`select_photos`: pasted large (default), or staged
    small in a degraded frame (``small``), where too few found faces is a finding, not an error.
    ``fallback``: the device's ``landmarks.fallback`` for faces FaceMesh rejects."""
    landmarks = LandmarkConfig(fallback=fallback)
    files = select_photos(data, faces, stride, offset)
    cpu = InterpreterConfig(delegate_order=["cpu"])
    if small is None:
        # one photo per frame, no tracking: the whole frame is searched at once (no tiles in rotation)
        bundle = load_bundle(bundle_path, cpu, DetectorConfig().whole_frame(), landmarks)
        results, missed = pipeline_faces(bundle, files)
        if len(results) < 2:
            raise UserError(f"the pipeline found a face in only {len(results)} of {len(files)} photos")
        mode: dict = {"mode": "large"}
    else:
        bundle = load_bundle(bundle_path, cpu, small.detector_config(), landmarks)
        results, mode = small_faces(bundle, files, small)
        missed = len(files) - len(results)
    rows = score_all(bundle, results) if len(results) >= 2 else []
    if small is not None:
        mode["by_path"] = score_by_path(bundle, results)
    return {"data": str(data), "offset": offset, "stride": stride, "photos": len(files), "faces": len(results), "missed": missed,
            "bundle": f"{bundle.name} v{bundle.version}", "landmark_fallback": fallback, **mode, "rows": rows}


def score_by_path(bundle: LoadedBundle, results: list[FaceResult]) -> dict[str, dict]:
    """The int8 SR and bicubic rows again, separately for the faces aligned from FaceMesh landmarks and
    from the detector's keypoints (``landmarks.fallback``), where a path has at least 2 faces."""
    out = {}
    for path, found in (("facemesh", True), ("keypoints", False)):
        faces = [f for f in results if f.aligned.found == found]
        if len(faces) >= 2:
            rows = score_all(bundle, faces, ("int8 SR (bundle)", "bicubic"))
            out[path] = {"faces": len(faces), "rows": rows}
    return out


def score_all(bundle: LoadedBundle, results: list[FaceResult], outputs: tuple[str, ...] = tuple(OUTPUTS)) -> list[dict]:
    """The ``outputs`` (default: every one of :data:`OUTPUTS`), scored against each face's ``aligned.hr``."""
    pipeline = Pipeline(bundle)
    hr_labels = [int(np.argmax(bundle.critic.probabilities(f.aligned.hr))) for f in results]
    return [score_output(name, results, hr_labels, pipeline) for name in outputs]


def headline(report: dict) -> str:
    """One line naming what was run (small mode: the cell, the frame, the tiles and how many faces were found)."""
    if report.get("mode") != "small":
        return (f"{report['faces']} of {report['photos']} photos from {report['data']} through the camera path "
                f"({report['bundle']}); the guard compares each output with bicubic (or, on camera-routed faces, the "
                f"bundle's calibrated reference where it has one), and judges camera-routed faces by the landmark "
                f"check alone (guard.camera_faces)")
    o, cols_rows = report["outcomes"], "x".join(map(str, report["tiles"]))
    device = (f"; {report['found_at_device_tiles']} with the device's default tiles"
              if "found_at_device_tiles" in report else "")
    return (f"Small faces, cell {report['cell']}: {report['photos']} photos from {report['data']}, each a "
            f"{report['crop_px'][0]}-{report['crop_px'][1]} px face crop in a degraded {report['frame']} frame, "
            f"detector tiles {cols_rows} ({report['bundle']}). Found {report['found']} of {report['photos']} "
            f"({report['found_rate']:.0%}){device}; scored {o['scored']} ({_paths(report)}), dropped without "
            f"landmarks {o['no_landmarks']}, too small {o['too_small']}; {report['below_device_min_face_px']} scored "
            f"faces are below the device's "
            f"min_face_px {report['device_min_face_px']:g}.")


def _paths(report: dict) -> str:
    paths = report.get("paths", {})
    return f"FaceMesh landmarks {paths.get('facemesh', 0)}, detector keypoints {paths.get('keypoints', 0)}"


def path_table(report: dict) -> list[str]:
    """Small mode: int8 SR against bicubic, per landmark path."""
    by_path = report.get("by_path") or {}
    paths = report.get("paths", {})
    lines = []
    if paths.get("keypoints"):
        lines += ["", f"Landmark columns: the {paths.get('facemesh', 0)} faces with FaceMesh landmarks only; the "
                  f"{paths['keypoints']} aligned from the detector's keypoints have none of their own to check against."]
    if not by_path:
        return lines
    lines += ["", "| landmarks | faces | int8 SR PSNR | bicubic PSNR | gain (dB) | SR agreement with HR | "
             "bicubic agreement with HR | SR guard: kept / changed / not verified |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for path, entry in by_path.items():
        sr, bic = entry["rows"]
        gain = "–" if None in (sr["psnr_vs_hr"], bic["psnr_vs_hr"]) else f"{sr['psnr_vs_hr'] - bic['psnr_vs_hr']:+.2f}"
        db = ["–" if r["psnr_vs_hr"] is None else f"{r['psnr_vs_hr']:.2f}" for r in (sr, bic)]
        lines.append(f"| {path} | {entry['faces']} | {db[0]} | {db[1]} | {gain} | {sr['agreement_with_hr']:.3f} | "
                     f"{bic['agreement_with_hr']:.3f} | {_split(sr)} |")
    return lines


def markdown(report: dict) -> str:
    """The table; in small mode after the headline (the cell and the found counts), or the headline
    alone when fewer than 2 faces were found."""
    lines = [headline(report), ""] if report.get("mode") == "small" else []
    if not report["rows"]:
        return "\n".join(lines[:1] + ["", "(fewer than 2 faces scored: nothing to compare)"])
    lines += ["| output | PSNR vs HR (dB) | agreement with HR | same top-1 as bicubic | plausible | KL median | "
             "landmark err. median | no face in output | guard passes |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        lm = "–" if r["landmark_error_median"] is None else f"{r['landmark_error_median']:.3f}"
        no_face = "–" if r["no_face_in_output"] is None else f"{r['no_face_in_output']:.2f}"
        db = "–" if r["psnr_vs_hr"] is None else f"{r['psnr_vs_hr']:.2f}"
        lines.append(f"| {r['output']} | {db} | {r['agreement_with_hr']:.3f} | {r['guard_agreement']:.3f} | {r['guard_plausible']:.3f} | "
                     f"{r['kl_median']:.3f} | {lm} | {no_face} | {r['guard_pass']:.3f} |")
    return "\n".join(lines + verdict_table(report["rows"]) + reference_table(report["rows"]) + path_table(report))


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _split(row: dict) -> str:
    """The shares of the device guard's three verdicts, ``kept / changed / not verified``."""
    return " / ".join(f"{row[f'guard_{key}']:.2f}" for key in ("pass", "changed", "unverified"))


def verdict_table(rows: list[dict]) -> list[str]:
    """The guard's three verdicts as the device gives them, against every check on every face (the
    ``all_checks`` policy); pass rates over the verified outputs, split by rightness."""
    lines = ["", "Guard verdicts: the device's (camera-routed faces, the share shown, judged by the landmark check "
             "alone: not verified without one) and every check on every face (guard.camera_faces: all_checks); "
             "passes over the verified outputs, among those whose top-1 is the HR crop's (right) and the others (wrong).",
             "", "| output | camera-routed | kept / changed / not verified | passes of verified | if right / if wrong | "
             "all checks: passes | all checks: if right / if wrong |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['output']} | {r['camera_routed']:.2f} | {_split(r)} | {_rate(r['guard_pass_verified'])} | "
                     f"{_rate(r['guard_pass_if_right'])} / {_rate(r['guard_pass_if_wrong'])} | "
                     f"{r['guard_pass_all_checks']:.3f} | {_rate(r['guard_pass_if_right_all_checks'])} / "
                     f"{_rate(r['guard_pass_if_wrong_all_checks'])} |")
    return lines


def reference_table(rows: list[dict]) -> list[str]:
    """Every check on every face, with the plain bicubic reference against the bundle's calibrated one
    (on camera-routed faces); only for a bundle that has one (else the two are the same numbers)."""
    if not any(r["guard_calibrated_reference"] for r in rows):
        return []
    lines = ["", "All checks, by reference: bicubic on every face → the bundle's (calibrated on the share of faces "
             "shown); among outputs whose top-1 is the HR crop's (right) and the others (wrong).", "",
             "| output | calibrated reference | passes | passes if right | passes if wrong |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        cells = [f"{_rate(r[f'{key}_bicubic_reference'])} → {_rate(r[f'{key}_all_checks'])}"
                 for key in ("guard_pass", "guard_pass_if_right", "guard_pass_if_wrong")]
        lines.append(f"| {r['output']} | {r['guard_calibrated_reference']:.2f} | " + " | ".join(cells) + " |")
    return lines


def write_report(report: dict, json_path: Path | None, markdown_path: Path | None) -> None:
    if json_path is not None:
        write_json(json_path, report)
    if markdown_path is not None:
        write_text(markdown_path, markdown(report) + "\n")
