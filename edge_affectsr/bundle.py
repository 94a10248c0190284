"""The model bundle: a folder the device runtime loads, described by ``manifest.json``.

Core module (numpy + stdlib + pydantic): ``convert/`` writes bundles, ``device/`` and ``flash``
read them. A bundle is verified before use: every file's sha256 must match the manifest, and a
manifest from a newer schema is refused rather than half understood. Every path a manifest names
must be relative, normalised and inside the bundle (:func:`bundle_relpath`): whoever hands over a
bundle writes its manifest, so ``flash`` must never be able to write where an entry points (an entry
``../../x`` or ``/etc/x`` is refused when the manifest is read, before anything is copied). With
trusted keys, the manifest's signature (``manifest.sig``, :mod:`edge_affectsr.signing`) is checked
over the very bytes that are then parsed.

Every manifest section is a typed model with ``extra='forbid'``: readers use attributes (no
``.get(key, default)`` scattered over the readers), each default (the self-test's 45 dB bar, the
input descriptions) is written once here, and ``convert`` builds the sections with these same
models, so what is written is what is read. A key this runtime does not know is a BundleError
naming it; a newer ``schema_version`` is refused before the keys are looked at.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from edge_affectsr.assets import sha256_file
from edge_affectsr.errors import UserError

if TYPE_CHECKING:
    from edge_affectsr.signing import SigningKey, TrustedKeys

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"  # detached signature of manifest.json (edge_affectsr/signing.py); not in ``files``
DIR_MODE, FILE_MODE = 0o755, 0o644  # a bundle is readable by every user (a service user runs it), whatever the umask


class BundleError(UserError):
    """A bundle that must not be used; the message names the file or field at fault."""


def bundle_relpath(rel: str) -> str:
    """``rel`` when it names a file inside a bundle: relative, POSIX, normalised (no ``.``, ``..``,
    ``//`` or trailing ``/``), no backslash or control character; else ValueError saying why."""
    if not rel:
        raise ValueError("empty path")
    if any(ord(c) < 0x20 or c in "\\\x7f" for c in rel):
        raise ValueError(f"path {rel!r} has a backslash or a control character")
    if rel.startswith("/"):
        raise ValueError(f"path {rel!r} is absolute; a bundle names its files relative to its folder")
    if ".." in rel.split("/"):
        raise ValueError(f"path {rel!r} leaves the bundle folder")
    if posixpath.normpath(rel) != rel or rel == ".":
        raise ValueError(f"path {rel!r} is not normalised (write {posixpath.normpath(rel)!r})")
    return rel


BundlePath = Annotated[str, AfterValidator(bundle_relpath)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


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

    file: BundlePath = Field(description="path inside the bundle (its sha256 is in files)")
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

    lr: BundlePath = Field(description="LR face, uint8 [lr_size, lr_size, 3]")
    lm: BundlePath = Field(description="its landmarks, float32 [nodes, 2]")
    expected_sr: BundlePath = Field(description="sr_int8's output on them, uint8 [128, 128, 3]")
    min_psnr_db: float = Field(45.0, description="the self-test passes at this PSNR against expected_sr or above")


class Routing(_Section):
    """A logistic classifier on cheap statistics of the LR crop that sends each face to ``sr_int8``
    (camera-degraded inputs) or ``sr_clean_int8`` (sharp ones); see edge_affectsr.runtime.routing."""

    features: list[str] = Field(description="the statistics, in order (routing.FEATURES)")
    mean: list[float] = Field(description="per-feature mean used to standardise")
    std: list[float] = Field(description="per-feature standard deviation used to standardise")
    weights: list[float] = Field(description="logistic weights on the standardised features")
    bias: float = Field(description="logistic bias")
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="P(degraded) at or above which sr_int8 runs")
    fitted_on: dict[str, float | int | str] = Field(default_factory=dict, description="faces, degradation, accuracy")


class GuardReference(_Section):
    """The expression guard's reference for camera-routed faces: vector scaling of the critic's
    reading of the bicubic upscale, ``softmax(log max(p_bicubic, floor) / temperature + bias)``,
    fitted at convert time to the critic's reading of the HR crop (see
    edge_affectsr.runtime.guard_reference)."""

    temperature: float = Field(gt=0.0, description="divides the log-probabilities")
    bias: list[float] = Field(description="added per class, in `classes` order")
    classes: list[str] = Field(description="the critic's classes the bias is for, in order")
    floor: float = Field(1e-3, gt=0.0, lt=1.0, description="probabilities are clipped to at least this before the log")
    fitted_on: dict[str, float | int | str] = Field(default_factory=dict, description="faces, degradation, losses")

    @model_validator(mode="after")
    def _one_bias_per_class(self) -> GuardReference:
        if len(self.bias) != len(self.classes):
            raise ValueError(f"{len(self.bias)} biases for {len(self.classes)} classes")
        return self


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
    routing: Routing | None = Field(None, description="with sr_clean_int8: which SR model each face goes to")
    guard_reference: GuardReference | None = Field(
        None, description="with routing: the expression guard's reference for faces routed to sr_int8")
    verification: dict[str, Any] = Field(default_factory=dict, description="convert's report (rows, gates); read by people, not code")
    files: dict[BundlePath, Sha256] = Field(description="relative path -> sha256 of every other file in the bundle")


def read_manifest(bundle: Path, trust: TrustedKeys | None = None) -> Manifest:
    """The bundle's manifest, parsed and validated; with ``trust`` (non-empty), only after its
    signature was checked over the very bytes parsed here. BundleError naming what is wrong."""
    path = Path(bundle) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle} is not a model bundle: {MANIFEST} is missing")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BundleError(f"{path}: cannot be read ({e.strerror or e})") from None
    if trust:
        trust.check(Path(bundle), data)
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise BundleError(f"{path}: not valid JSON ({type(e).__name__}: {e})") from None
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{path}: no schema_version")
    if version > SCHEMA_VERSION:
        raise BundleError(f"{path}: bundle schema {version} is newer than this runtime reads ({SCHEMA_VERSION}); upgrade edge-affectsr")
    return _validate(raw, path)


def _validate(raw: dict, where: Path | str) -> Manifest:
    """``raw`` as a Manifest; BundleError naming every offending key (``source.foo: unknown key``)."""
    try:
        return Manifest.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{_location(err['loc'])}: "
                             f"{'unknown key' if err['type'] == 'extra_forbidden' else err['msg'].removeprefix('Value error, ')}"
                             for err in e.errors())
        raise BundleError(f"{where}: invalid manifest: {problems}") from None


def _location(loc: tuple) -> str:
    """``source.foo``; a bad mapping key is named by its mapping (``files``): the message quotes the key."""
    if loc and loc[-1] == "[key]":
        loc = loc[:-2]
    return ".".join(map(str, loc)) or "(top level)"


def verify_bundle(bundle: Path, trust: TrustedKeys | None = None) -> Manifest:
    """The manifest, after checking its signature (when ``trust`` holds keys), that every file it
    names is covered by a hash, and that every listed file exists inside the bundle with its sha256
    (else BundleError)."""
    manifest = read_manifest(bundle, trust)
    named = {f"model {key}": entry.file for key, entry in manifest.models.items()}
    named |= {f"golden {key}": rel for key, rel in manifest.golden.model_dump(include={"lr", "lm", "expected_sr"}).items()}
    for what, rel in named.items():
        if rel not in manifest.files:
            raise BundleError(f"{bundle}: {what} ({rel}) is not covered by a hash")
    root = Path(bundle).resolve()
    for rel, digest in manifest.files.items():
        path = Path(bundle) / rel
        if not path.is_file():
            raise BundleError(f"{bundle}: {rel} is listed in the manifest but missing")
        if not path.resolve().is_relative_to(root):
            raise BundleError(f"{bundle}: {rel} is a link that leads out of the bundle folder")
        if sha256_file(path) != digest:
            raise BundleError(f"{bundle}: {rel} does not match its sha256 in the manifest (tampered or corrupt)")
    return manifest


def write_bundle(staging: Path, out: Path, manifest: dict, signer: SigningKey | None = None) -> Path:
    """Hash every file in ``staging``, write the manifest (and with ``signer`` its signature), make
    the folder readable by all (0755/0644), then move it to ``out`` in one rename, so a reader never
    sees half a bundle. ``out`` must not exist."""
    out = Path(out)
    if out.exists():
        raise BundleError(f"{out} already exists; choose a new output folder or remove it")
    files = {str(p.relative_to(staging)): sha256_file(p) for p in sorted(Path(staging).rglob("*"))
             if p.is_file() and p.name not in (MANIFEST, SIGNATURE)}
    doc = {"schema_version": SCHEMA_VERSION, **manifest, "files": files}
    _validate(doc, out)
    (Path(staging) / MANIFEST).write_text(json.dumps(doc, indent=2))
    if signer is not None:
        signer.sign_bundle(Path(staging))
    publish_modes(Path(staging))
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, out) if _same_device(staging, out.parent) else shutil.move(str(staging), str(out))
    return out


def publish_modes(folder: Path) -> None:
    """``folder`` and every folder in it 0755, every file 0644: a bundle made under a strict umask
    (or in a mkdtemp folder, 0700) must still be readable by the service user that runs it."""
    os.chmod(folder, DIR_MODE)
    for path in Path(folder).rglob("*"):
        if not path.is_symlink():
            os.chmod(path, DIR_MODE if path.is_dir() else FILE_MODE)


def _same_device(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def staging_dir(out: Path) -> Path:
    """A temporary folder beside ``out`` (same filesystem, so the final move is one rename)."""
    parent = Path(out).resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{Path(out).name}.", suffix=".partial", dir=parent))
