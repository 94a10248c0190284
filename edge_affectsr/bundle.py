"""The model bundle: a folder the device runtime loads, described by ``manifest.json``.

Core module (numpy + stdlib + pydantic): ``convert/`` writes bundles, ``device/`` and ``flash``
read them. A bundle is verified before use: every file's sha256 must match the manifest, and a
manifest from a newer schema is refused rather than half understood.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_affectsr.assets import sha256_file
from edge_affectsr.errors import UserError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


class BundleError(UserError):
    """A bundle that must not be used; the message names the file or field at fault."""


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[int]
    dtype: str
    scale: float | None = None  # quantisation: real = scale * (q - zero_point)
    zero_point: int | None = None


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str
    format: str  # tflite-int8 | tflite-fp16 | onnx | tflite
    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)
    licence: str | None = None
    notes: str | None = None


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int
    name: str
    version: str
    scale: int
    created: str
    source: dict[str, Any]  # checkpoint sha256, git commit, teacher, ...
    models: dict[str, ModelEntry]  # sr_int8, sr_fp16, sr_onnx, fer_int8, face_detector, face_landmark
    preprocessing: dict[str, Any]
    landmarks: dict[str, Any]  # subset, nodes, adjacency_sha256
    golden: dict[str, Any]  # files of a small input and its expected output, with a tolerance
    verification: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str]  # relative path -> sha256 of every other file in the bundle


def read_manifest(bundle: Path) -> Manifest:
    path = Path(bundle) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle} is not a model bundle: {MANIFEST} is missing")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BundleError(f"{path}: not valid JSON ({e})") from None
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if not isinstance(version, int):
        raise BundleError(f"{path}: no schema_version")
    if version > SCHEMA_VERSION:
        raise BundleError(f"{path}: bundle schema {version} is newer than this runtime reads ({SCHEMA_VERSION}); upgrade edge-affectsr")
    try:
        return Manifest.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        raise BundleError(f"{path}: invalid manifest at {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def verify_bundle(bundle: Path) -> Manifest:
    """The manifest, after checking every listed file exists with its sha256 (else BundleError)."""
    manifest = read_manifest(bundle)
    for rel, digest in manifest.files.items():
        path = Path(bundle) / rel
        if not path.is_file():
            raise BundleError(f"{bundle}: {rel} is listed in the manifest but missing")
        if sha256_file(path) != digest:
            raise BundleError(f"{bundle}: {rel} does not match its sha256 in the manifest (tampered or corrupt)")
    for key, entry in manifest.models.items():
        if entry.file not in manifest.files:
            raise BundleError(f"{bundle}: model {key} ({entry.file}) is not covered by a hash")
    return manifest


def write_bundle(staging: Path, out: Path, manifest: dict) -> Path:
    """Hash every file in ``staging``, write the manifest, then move the folder to ``out`` in one
    rename, so a reader never sees half a bundle. ``out`` must not exist."""
    out = Path(out)
    if out.exists():
        raise BundleError(f"{out} already exists; choose a new output folder or remove it")
    files = {str(p.relative_to(staging)): sha256_file(p) for p in sorted(Path(staging).rglob("*")) if p.is_file() and p.name != MANIFEST}
    doc = {"schema_version": SCHEMA_VERSION, **manifest, "files": files}
    Manifest.model_validate(doc)
    (Path(staging) / MANIFEST).write_text(json.dumps(doc, indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, out) if _same_device(staging, out.parent) else shutil.move(str(staging), str(out))
    return out


def _same_device(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def staging_dir(out: Path) -> Path:
    """A temporary folder beside ``out`` (same filesystem, so the final move is one rename)."""
    parent = Path(out).resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{Path(out).name}.", suffix=".partial", dir=parent))
