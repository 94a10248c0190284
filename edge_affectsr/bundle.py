"""The model bundle: a folder the device runtime loads, described by ``manifest.json``.

Core module (numpy + stdlib + pydantic): ``convert/`` writes bundles, ``device/`` and ``flash``
read them. A bundle is verified before use: every file's sha256 must match the manifest, and a
manifest from a newer schema is refused rather than half understood.

Every manifest section is a typed model with ``extra='forbid'``: readers use attributes (no
``.get(key, default)`` scattered over the readers), each default (the self-test's 45 dB bar, the
input descriptions) is written once here, and ``convert`` builds the sections with these same
models, so what is written is what is read. A key this runtime does not know is a BundleError
naming it; a newer ``schema_version`` is refused before the keys are looked at.
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


class _Section(BaseModel):
    """A manifest section: a key this runtime does not know is an error naming it, not ignored."""

    model_config = ConfigDict(extra="forbid")


class TensorSpec(_Section):
    """One input or output tensor of a converted model."""

    name: str = Field(description="the tensor's name in the model")
    shape: list[int] = Field(description="static shape, batch first")
    dtype: str = Field(description="int8, float32, ...")
    scale: float | None = Field(None, description="quantisation: real = scale * (q - zero_point); null: float")
    zero_point: int | None = Field(None, description="quantisation zero point; null: float")


class ModelEntry(_Section):
    """One model file of the bundle."""

    file: str = Field(description="path inside the bundle (its sha256 is in files)")
    format: str = Field(description="tflite-int8 | tflite-fp16 | onnx | tflite")
    inputs: list[TensorSpec] = Field(default_factory=list, description="input tensors, when recorded")
    outputs: list[TensorSpec] = Field(default_factory=list, description="output tensors, when recorded")
    licence: str | None = Field(None, description="for third-party models")
    notes: str | None = Field(None, description="how to feed or rebuild it")


class Source(_Section):
    """Where the models came from (provenance only; nothing at run time depends on it)."""

    checkpoint: str = Field(description="the student checkpoint converted")
    checkpoint_sha256: str = Field(description="its sha256")
    git_commit: str | None = Field(description="`git describe --dirty` of the converter; null outside a checkout")
    teacher: str | None = Field(description="the teacher the student was distilled from")
    target: str = Field(description="the convert --target")


class Preprocessing(_Section):
    """What the SR model's inputs are (the device checks ``lr_size`` against the model itself)."""

    lr_size: int = Field(gt=0, description="side of the LR face crop in pixels")
    img: str = Field("RGB, [0, 1], NHWC", description="image input layout")
    lm: str = Field("FaceMesh (x, y) normalised to the LR crop", description="landmark input")
    protocol: str = Field("HR = centre square, Lanczos 128; LR = bicubic 128/scale", description="how HR/LR pairs were made")


class Landmarks(_Section):
    """The landmark subset the SR model was trained on; the runtime checks it builds the same one."""

    subset: str = Field(description="edge_affectsr.landmark_graph subset name")
    nodes: list[int] = Field(description="indices into the 478-point face mesh, in model input order")
    adjacency_sha256: str = Field(description="landmark_graph.adjacency_hash of the subset")


class Golden(_Section):
    """A small input and its expected int8 output, files in the bundle, for the on-device self-test."""

    lr: str = Field(description="LR face, uint8 [lr_size, lr_size, 3]")
    lm: str = Field(description="its landmarks, float32 [nodes, 2]")
    expected_sr: str = Field(description="sr_int8's output on them, uint8 [128, 128, 3]")
    min_psnr_db: float = Field(45.0, description="the self-test passes at this PSNR against expected_sr or above")


class Manifest(_Section):
    """``manifest.json``: what is in the bundle, where it came from, and every file's sha256."""

    schema_version: int = Field(description="refused when newer than SCHEMA_VERSION")
    name: str = Field(description="the bundle's name (convert --name)")
    version: str = Field(description="the release version (the student's training iterations)")
    scale: int = Field(description="upscaling factor")
    created: str = Field(description="ISO 8601 time of conversion")
    source: Source = Field(description="provenance")
    models: dict[str, ModelEntry] = Field(description="sr_int8, sr_fp16, sr_onnx, fer_int8, face_detector, face_landmark")
    preprocessing: Preprocessing = Field(description="the SR model's inputs")
    landmarks: Landmarks = Field(description="the SR model's landmark subset")
    golden: Golden = Field(description="the self-test")
    verification: dict[str, Any] = Field(default_factory=dict, description="convert's report (rows, gates); read by people, not code")
    files: dict[str, str] = Field(description="relative path -> sha256 of every other file in the bundle")


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
    return _validate(raw, path)


def _validate(raw: dict, where: Path | str) -> Manifest:
    """``raw`` as a Manifest; BundleError naming every offending key (``source.foo: unknown key``)."""
    try:
        return Manifest.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or '(top level)'}: "
                             f"{'unknown key' if err['type'] == 'extra_forbidden' else err['msg']}" for err in e.errors())
        raise BundleError(f"{where}: invalid manifest: {problems}") from None


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
    _validate(doc, out)
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
