"""The conversion sub-command. Light imports only at the top."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from edge_affectsr.cli_args import add_model, add_renamed
from edge_affectsr.convert.formats import TARGETS


class Convert:
    """Export a student checkpoint to ONNX, convert it with onnx2tf to full-int8 and fp16 TFLite,
    add the FER critic and the face models, verify every format on every installed runtime, and
    write a model bundle (only if every gate passes). ``--target`` picks the formats and reports:
    every target gets the camera's models (sr_int8, the FER critic, the face detector and landmarker)."""

    help = "student checkpoint -> verified int8/fp16/ONNX model bundle"
    examples = ("edge-affectsr convert --model student-x4 --data ../shared/data/celeba/train --out out/bundle-x4",
                "edge-affectsr convert --model runs/student/best.pt --data ../shared/data/celeba/train --target edgetpu "
                "--limit 50 --out out/bundle-tpu")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        add_model(p, "the student to convert: a checkpoint .pt or a shipped name, e.g. student-x4; required",
                  old="CHECKPOINT", required=True)
        add_renamed(p, "--data", "--calib", required=True, type=Path, metavar="DIR",
                    help="folder of face images for int8 calibration (>= 200 usable); required")
        p.add_argument("--out", type=Path, required=True, help="bundle folder to create (must not exist); required")
        p.add_argument("--target", default="all", choices=tuple(TARGETS), help="what the bundle is for (what is built "
                       "and checked): " + "; ".join(f"{k}: {v}" for k, v in TARGETS.items()))
        p.add_argument("--val", type=Path, metavar="DIR", help="faces to verify on, under the eval protocol (default: the "
                       "calibration faces as the device prepared them)")
        add_renamed(p, "--limit", "--verify-faces", type=int, default=200, metavar="N",
                    help="verify every format on at most N faces: the first N of --val, else of the calibration "
                         "faces (default: 200)")
        p.add_argument("--degradation", default="clean", metavar="PRESET[:SIZE]",
                       help="render calibration and verification LR faces with the camera model (e.g. camera), as a "
                            "camera-robust model will see them (default: clean, the protocol; see eval --degradation)")
        p.add_argument("--clean-model", metavar="CHECKPOINT", help="also bundle this sharp-input student as "
                       "sr_clean_int8, with a router that sends each face to it or to the camera-robust model "
                       "(needs --degradation; docs/camera.md), e.g. --degradation camera --clean-model student-x4-clean")
        p.add_argument("--guard-reference", action="store_true", help="with --clean-model: also fit the expression "
                       "guard's calibrated reference for camera-routed faces (off by default: on the camera cells it "
                       "loosens the guard without telling right readings from wrong ones; docs/camera.md)")
        p.add_argument("--force", action="store_true", help="accept fewer than 200 calibration faces")
        p.add_argument("--name", default="bundle-x4", help="model name written into the manifest (default: bundle-x4)")
        p.add_argument("--sign", type=Path, metavar="KEY", help="sign the bundle's manifest with this Ed25519 private "
                       "key (from `edge-affectsr keygen`); checked before any conversion work")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.signing import SigningKey

        signer = SigningKey.load(args.sign) if args.sign else None  # a bad key fails now, before TensorFlow loads
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's CUDA-probing noise
        from edge_affectsr.convert.build import build_bundle
        from edge_affectsr.errors import UserError
        from edge_affectsr.models import resolve_model
        from edge_affectsr.runtime.degradation import parse_degradation

        if args.limit < 1:
            raise UserError("--limit must be at least 1")
        try:
            parse_degradation(args.degradation)
        except ValueError as e:
            raise UserError(f"--degradation: {e}") from None

        report = build_bundle(resolve_model(args.model), args.data, args.out, args.target, args.val,
                              args.limit, args.force, args.name, args.degradation, signer,
                              resolve_model(args.clean_model) if args.clean_model else None, args.guard_reference)
        print(report["table"] + "\n")
        if tpu := report["checks"].get("edgetpu"):
            print(f"Edge TPU (documented rules): {tpu['ops_mapped']}/{tpu['ops_total']} ops mapped; on CPU: "
                  + (", ".join(f"{o['op']} ({o['why_cpu']})" for o in tpu["ops_on_cpu"]) or "none"))
            compiled = tpu["compiler"]
            print(f"Edge TPU compiler {compiled['version']}: {compiled['ops_on_edgetpu']}/{compiled['ops_total']} ops "
                  f"on the Edge TPU, {compiled['subgraphs']} subgraph(s), {tpu['compiled_model']} in the bundle"
                  if compiled else tpu["compiler_note"])
        if gpu := report["checks"].get("gpu"):
            print(f"GPU delegate checks: {'ok' if gpu['compatible'] else gpu['problems']}")
        print(f"bundle: {args.out}" + (f" (signed by key {signer.key_id})" if signer else ""))
        return 0
