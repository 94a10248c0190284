"""A copy of an existing bundle with the int8 face detector added: converted, gated and hashed as
``convert`` does it, without converting the SR models again.

Why: bundles converted before the int8 detector existed (a camera's own, converted from its own
student) keep their SR models and their verification; re-running ``convert`` would re-export and
re-verify every model for one new file. ``convert`` itself adds the detector to every new bundle.
The copy is unsigned unless ``--sign`` is given; a failing detector gate writes nothing::

    python -m edge_affectsr.convert.detector_bundle --model my-bundle \\
        --data ../shared/data/celeba/train --out my-bundle-det8 --sign my.key"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from edge_affectsr.bundle import MANIFEST, SIGNATURE, staging_dir, verify_bundle, write_bundle
from edge_affectsr.convert.build import check_output
from edge_affectsr.convert.detector_gates import verify_detector
from edge_affectsr.convert.formats import FORMATS, ExportContext, model_entries, third_party_text, try_export
from edge_affectsr.convert.gates import evaluate, measure_structure
from edge_affectsr.convert.tflite_inspect import inspect_tflite
from edge_affectsr.errors import UserError
from edge_affectsr.runtime.bundle_models import DETECTOR_INT8
from edge_affectsr.signing import SigningKey

log = logging.getLogger(__name__)


def add_int8_detector(bundle: Path, data: Path, out: Path, signer: SigningKey | None = None) -> dict:
    """Write ``out``: ``bundle``'s files plus ``face_detector_int8`` calibrated on the people of ``data``,
    its gates in the manifest's verification and in ``report.md``. Returns the gates; UserError (nothing
    written) when one fails."""
    manifest = verify_bundle(bundle)
    if DETECTOR_INT8 in manifest.models:
        raise UserError(f"{bundle} already has {DETECTOR_INT8}")
    check_output(out)
    fmt = next(f for f in FORMATS if f.key == DETECTOR_INT8)
    stage = staging_dir(out)
    try:
        shutil.copytree(bundle, stage, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MANIFEST, SIGNATURE))
        with tempfile.TemporaryDirectory() as work:
            ctx = ExportContext(student=None, calib=None, lr_size=0, n_landmarks=0, work=Path(work), calib_dir=data)
            path = try_export(fmt, ctx, stage)
        detector = verify_detector({"face_detector": stage / manifest.models["face_detector"].file, DETECTOR_INT8: path},
                                   data)
        info = inspect_tflite(path)
        gates = detector["gates"] | evaluate(measure_structure([info]))
        for name, extra in (("report.md", detector["table"] + "\n"), ("THIRD_PARTY.md", third_party_text([fmt]))):
            (stage / name).write_text((stage / name).read_text() + extra)
        if not all(g["passed"] for g in gates.values()):
            raise UserError(f"an int8 detector gate failed; no bundle written: {json.dumps(gates, indent=1)}")
        doc = json.loads((bundle / MANIFEST).read_text())
        for key in ("schema_version", "files"):
            doc.pop(key, None)
        doc["models"] |= model_entries([fmt], ctx, {fmt.key: info})
        doc["verification"]["gates"] |= gates
        doc["verification"]["detector"] = detector["summary"]
        write_bundle(stage, out, doc, signer)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return gates


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge_affectsr.convert.detector_bundle", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="the bundle folder to copy")
    p.add_argument("--data", type=Path, required=True, help="face photos to calibrate and gate on (CelebA-style folder)")
    p.add_argument("--out", type=Path, required=True, help="the new bundle folder (must not exist)")
    p.add_argument("--sign", type=Path, metavar="KEY", help="sign the new manifest with this Ed25519 private key")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        gates = add_int8_detector(args.model, args.data, args.out, SigningKey.load(args.sign) if args.sign else None)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for label, gate in gates.items():
        print(f"{'pass' if gate['passed'] else 'FAIL'}  {label}: {gate['value']}")
    print(f"bundle: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
