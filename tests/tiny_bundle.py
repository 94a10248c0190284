"""A tiny synthetic bundle (placeholder files, a real manifest written by ``write_bundle``) for the
tests of verification, signing and flash refusals that never load the models."""

from __future__ import annotations

import json
from pathlib import Path

from edge_affectsr.bundle import MANIFEST, Golden, Preprocessing, staging_dir, write_bundle

SHIPPED = Path(__file__).resolve().parents[1] / "edge_affectsr" / "models" / "bundle-x4"


def make_bundle(out: Path) -> Path:
    """A bundle with one model file and the three golden files (contents are placeholders)."""
    stage = staging_dir(out)
    for name in ("sr_int8.tflite", "golden_lr.npy", "golden_lm.npy", "golden_sr.npy"):
        (stage / name).write_bytes(name.encode())
    return write_bundle(stage, out, {
        "name": "tiny", "version": "1", "scale": 4, "created": "2026-01-01T00:00:00+00:00",
        "source": {"checkpoint": "s.pt", "checkpoint_sha256": "0" * 64, "git_commit": None, "teacher": None, "target": "all"},
        "models": {"sr_int8": {"file": "sr_int8.tflite", "format": "tflite-int8"}},
        "preprocessing": Preprocessing(lr_size=32).model_dump(),
        "landmarks": {"subset": "contours", "nodes": [0, 1], "adjacency_sha256": "a" * 64},
        "golden": Golden(lr="golden_lr.npy", lm="golden_lm.npy", expected_sr="golden_sr.npy").model_dump(),
    })


def edit_manifest(bundle: Path, change) -> None:
    """Apply ``change(doc)`` to the manifest's JSON (no re-hashing: that is the caller's business)."""
    doc = json.loads((bundle / MANIFEST).read_text())
    change(doc)
    (bundle / MANIFEST).write_text(json.dumps(doc))
