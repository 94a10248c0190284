"""``edge-affectsr camera-eval``: the camera path on real faces, scored against the aligned HR crop.

Why a second evaluation: ``eval`` scores models under the training protocol (LR = bicubic
downsample, landmarks from mediapipe-python with real irises). On the camera the LR comes out of
the aligner warping a frame, the landmarks from the bundled FaceMesh TFLite with estimated irises,
the SR from the int8 model and the critic is the int8 one. Here each face is pasted into a 640x480
frame and taken through the device's own :class:`~device.inference.pipeline.Pipeline`; the int8 SR output and
reference outputs (bicubic, sharpened, blurred, another person, upside down, the HR crop itself)
are scored against the aligned HR crop and given to the expression guard, which is how its
thresholds were chosen (docs/device.md).
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
from edge_affectsr.device.inference.pipeline import FaceResult, Pipeline
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


def score_output(name: str, faces: list[FaceResult], hr_labels: list[int], pipeline: Pipeline) -> dict:
    """PSNR and expression agreement against the HR crop (``hr_labels``: the critic's top-1 on each),
    and the guard's verdict numbers."""
    rows = []
    min_prob = pipeline.guard.config.min_reference_prob
    for i, (face, hr_label) in enumerate(zip(faces, hr_labels)):
        out = OUTPUTS[name](face, faces[(i + 1) % len(faces)])
        verdict = pipeline.guard(face.aligned.lr, out, face.aligned.landmarks_full)
        g = verdict.guard
        rows.append((psnr(out, face.aligned.hr), int(np.argmax(verdict.p_sr) == hr_label), g.agreement,
                     g.reference_prob >= min_prob, g.kl, g.landmark_error, g.preserved))
    psnrs, agree_hr, agree_bic, plaus, kl, lm_err, passed = (np.array(c, dtype=float) for c in zip(*rows))
    finite, finite_psnr = lm_err[np.isfinite(lm_err)], psnrs[np.isfinite(psnrs)]
    return {
        "output": name, "psnr_vs_hr": float(finite_psnr.mean()) if finite_psnr.size else None,
        "agreement_with_hr": float(agree_hr.mean()),
        "guard_agreement": float(agree_bic.mean()), "guard_plausible": float(plaus.mean()), "kl_median": float(np.median(kl)),
        "landmark_error_median": float(np.median(finite)) if finite.size else None,
        "no_face_in_output": float(1 - finite.size / len(lm_err)), "guard_pass": float(passed.mean()),
    }


def camera_eval(bundle_path: str | Path | None, data: Path, faces: int = 150, stride: int = 4, offset: int = 0) -> dict:
    """Photos under ``data`` (sub-folders too, e.g. one per expression class), sorted by path, every
    ``stride``-th from ``offset``, at most ``faces`` of them."""
    photos = sorted(p for p in Path(data).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.is_file())
    files = photos[offset::stride][:faces]
    if len(files) < 2:
        raise UserError(f"{data}: need at least 2 face photos (found {len(files)})")
    # one photo per frame, no tracking: the whole frame is searched at once (no tiles in rotation)
    bundle = load_bundle(bundle_path, InterpreterConfig(delegate_order=["cpu"]), DetectorConfig().whole_frame())
    results, missed = pipeline_faces(bundle, files)
    if len(results) < 2:
        raise UserError(f"the pipeline found a face in only {len(results)} of {len(files)} photos")
    pipeline = Pipeline(bundle)
    hr_labels = [int(np.argmax(bundle.critic.probabilities(f.aligned.hr))) for f in results]
    rows = [score_output(name, results, hr_labels, pipeline) for name in OUTPUTS]
    return {"data": str(data), "offset": offset, "stride": stride, "photos": len(files), "faces": len(results), "missed": missed,
            "bundle": f"{bundle.name} v{bundle.version}", "rows": rows}


def markdown(report: dict) -> str:
    lines = ["| output | PSNR vs HR (dB) | agreement with HR | same top-1 as bicubic | plausible | KL median | "
             "landmark err. median | no face in output | guard passes |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        lm = "–" if r["landmark_error_median"] is None else f"{r['landmark_error_median']:.3f}"
        db = "–" if r["psnr_vs_hr"] is None else f"{r['psnr_vs_hr']:.2f}"
        lines.append(f"| {r['output']} | {db} | {r['agreement_with_hr']:.3f} | {r['guard_agreement']:.3f} | {r['guard_plausible']:.3f} | "
                     f"{r['kl_median']:.3f} | {lm} | {r['no_face_in_output']:.2f} | {r['guard_pass']:.3f} |")
    return "\n".join(lines)


def write_report(report: dict, json_path: Path | None, markdown_path: Path | None) -> None:
    if json_path is not None:
        write_json(json_path, report)
    if markdown_path is not None:
        write_text(markdown_path, markdown(report) + "\n")
