"""``edge-affectsr convert``: a student checkpoint -> a verified, self-describing model bundle.

The formats come from the table in ``formats.py`` (``--target`` picks its rows and reports), the
pass/fail bars from ``gates.py``. Everything is written into a staging folder beside the output
and moved into place in one rename only when every file exists and every gate passed: no half
bundles, and none that silently lost quality.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edge_affectsr import landmark_graph
from edge_affectsr.assets import sha256_file
from edge_affectsr.bundle import Golden, Preprocessing, Routing, staging_dir, write_bundle
from edge_affectsr.convert.calibration import FaceSet, load_calibration, load_verification
from edge_affectsr.convert.detector_gates import verify_detector
from edge_affectsr.convert.export import load_student
from edge_affectsr.convert.formats import (ExportContext, Format, model_entries, run_checks, select, third_party_text,
                                           trtexec_lines, try_export)
from edge_affectsr.convert.gates import evaluate, measure_structure
from edge_affectsr.convert.guard_reference import fit_guard_reference
from edge_affectsr.convert.routed import build_clean_model, camera_renderings, fit_router, load_clean_student
from edge_affectsr.convert.tflite_inspect import inspect_tflite
from edge_affectsr.convert.verify import markdown, verify
from edge_affectsr.distill.archs.fer_critic import build_fer_critic
from edge_affectsr.distill.checkpoints import total_iterations
from edge_affectsr.errors import UserError
from edge_affectsr.runtime.degradation import parse_degradation
from edge_affectsr.runtime.sr import TFLiteSR
from edge_affectsr.signing import SigningKey

log = logging.getLogger(__name__)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"], capture_output=True, text=True,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except OSError:
        return None


def check_output(out: Path) -> None:
    if out.exists():
        raise UserError(f"{out} already exists; choose a new --out or remove it")
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    probe = parent / f".{out.name}.write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write into {parent}: {e}") from None


def build_bundle(checkpoint: Path, calib_dir: Path, out: Path, target: str = "all", val_dir: Path | None = None,
                 verify_faces: int = 200, force: bool = False, name: str = "bundle-x4", degradation: str = "clean",
                 signer: SigningKey | None = None, clean_model: Path | None = None, guard_reference: bool = False) -> dict:
    """Convert, verify and write the bundle ``out`` (signed by ``signer`` when given); the report
    (``manifest``, ``gates``, ``table`` and the ``checks`` ``target`` wants) is returned. UserError
    when a gate fails: nothing written. ``clean_model``: a sharp-input student bundled beside it
    with the router between them (``convert/routed.py``; needs a camera ``degradation``);
    ``guard_reference``: with it, also the guard's calibrated reference (``convert/guard_reference.py``)."""
    rows = select(target)
    check_output(out)
    student, ckpt = load_student(checkpoint)
    cfg = student.cfg
    label, camera = parse_degradation(degradation)
    if clean_model is not None and camera is None:
        raise UserError("--clean-model needs --degradation PRESET: the router is fitted on the camera renderings "
                        "of the calibration faces, and sr_int8 is the camera-robust model")
    if guard_reference and clean_model is None:
        raise UserError("--guard-reference needs --clean-model: it is the guard's reference for faces routed to the "
                        "camera model")
    clean_student = None if clean_model is None else load_clean_student(cfg, clean_model)
    calib = load_calibration(calib_dir, cfg.scale, cfg.landmark_subset, force=force, degradation=camera)
    val = calib if val_dir is None else load_verification(val_dir, cfg.scale, cfg.landmark_subset, verify_faces, camera)
    stage = staging_dir(out)
    try:
        with tempfile.TemporaryDirectory() as work:
            ctx = ExportContext(student, calib, 128 // cfg.scale, len(landmark_graph.subset_nodes(cfg.landmark_subset)),
                                Path(work), calib_dir)
            files = {fmt.key: try_export(fmt, ctx, stage) for fmt in rows}
            routed = None if clean_student is None else build_clean_model(
                clean_student, calib, _clean_verification(calib, val_dir, cfg, verify_faces), verify_faces,
                Path(work) / "clean", stage)
        (stage / "THIRD_PARTY.md").write_text(third_party_text(rows))
        report = _verify(stage, rows, files, ctx, val, verify_faces, target)
        report["verification"]["degradation"] = label  # what the calibration and verification faces went through
        if routed is not None:
            report["gates"] |= routed["gates"]
            report["table"] += f"\n\n## sr_clean_int8 (clean LR)\n\n{routed['table']}"
        (stage / "report.md").write_text(f"# {name} verification (LR: {label})\n\n{report['table']}\n")
        if not all(g["passed"] for g in report["gates"].values()):
            raise UserError("a verification gate failed; no bundle written:\n\n" + report["table"])
        manifest = _manifest(name, target, checkpoint, ckpt, rows, ctx, report)
        if routed is not None:
            manifest["models"]["sr_clean_int8"] = routed["entry"]
            renderings = camera_renderings(calib, camera)
            manifest["routing"] = fit_router(calib, renderings, label, clean_model)
            if guard_reference:
                manifest["guard_reference"] = fit_guard_reference(calib, renderings, Routing(**manifest["routing"]),
                                                                  stage / manifest["models"]["fer_int8"]["file"], label)
        write_bundle(stage, out, manifest, signer)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {"manifest": manifest, "gates": report["gates"], "table": report["table"], "checks": report["checks"]}


def _clean_verification(calib: FaceSet, val_dir: Path | None, cfg, verify_faces: int) -> FaceSet:
    """Clean faces to verify the sharp-input model on: ``--val`` under the protocol, else the
    calibration faces' undegraded LR."""
    if val_dir is None:
        return FaceSet(img=calib.clean.astype(np.float32) / 255.0, lm=calib.lm, hr=calib.hr, usable=calib.usable)
    return load_verification(val_dir, cfg.scale, cfg.landmark_subset, verify_faces)


def _verify(stage: Path, rows: list[Format], files: dict[str, Path], ctx: ExportContext, val: FaceSet,
            verify_faces: int, target: str) -> dict:
    """Every verified format on every runtime, the inspected models' structure, the gates on both,
    the target's reports, and the golden self-test files (written into ``stage``)."""
    n = min(verify_faces, len(val.img))
    lr_u8 = np.round(val.img[:n] * 255).astype(np.uint8)
    result = verify({f.verify_as: files[f.key] for f in rows if f.verify_as}, ctx.student, build_fer_critic(),
                    lr_u8, val.lm[:n], val.hr[:n])
    infos = {f.key: inspect_tflite(files[f.key]) for f in rows if f.tensors}
    detector = verify_detector(files, ctx.calib_dir)
    gates = evaluate(result["measurements"] + measure_structure(infos.values())) | detector.get("gates", {})
    checks = run_checks(target, infos)
    verification = {"rows": result["rows"], "gates": gates, **checks, "calibration_faces": ctx.calib.usable,
                    "verify_faces": n}
    if detector:
        verification["detector"] = detector["summary"]
    if "sr_onnx" in files:
        verification["trtexec"] = trtexec_lines(ctx.lr_size, ctx.n_landmarks)
    table = markdown(result | {"gates": gates}) + detector.get("table", "")
    return {"gates": gates, "table": table, "checks": checks, "infos": infos,
            "verification": verification, "golden": _golden(stage, files["sr_int8"], lr_u8[0], val.lm[0])}


def _manifest(name: str, target: str, checkpoint: Path, ckpt: dict, rows: list[Format], ctx: ExportContext,
              report: dict) -> dict:
    cfg = ctx.student.cfg
    nodes = landmark_graph.subset_nodes(cfg.landmark_subset)
    return {
        "name": name, "version": str(total_iterations(ckpt)), "scale": cfg.scale,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint),
                   "git_commit": git_commit(), "teacher": ckpt["config"].get("teacher"), "target": target},
        "models": model_entries(rows, ctx, report["infos"]),
        "preprocessing": Preprocessing(lr_size=ctx.lr_size).model_dump(),
        "landmarks": {"subset": cfg.landmark_subset, "nodes": [int(i) for i in nodes],
                      "adjacency_sha256": landmark_graph.adjacency_hash(cfg.landmark_subset)},
        "golden": report["golden"],
        "verification": report["verification"],
    }


def _golden(stage: Path, int8: Path, lr: np.ndarray, lm: np.ndarray) -> dict:
    """A small input and its expected int8 output, for the on-device self-test."""
    np.save(stage / "golden_lr.npy", lr)
    np.save(stage / "golden_lm.npy", lm.astype(np.float32))
    np.save(stage / "golden_sr.npy", TFLiteSR.open(int8, "ai-edge-litert", 2)(lr, lm))
    return Golden(lr="golden_lr.npy", lm="golden_lm.npy", expected_sr="golden_sr.npy").model_dump()
