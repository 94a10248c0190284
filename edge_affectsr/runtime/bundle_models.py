"""The models of a bundle, loaded for the device: verify the bundle, build its interpreters, prove it works.

Why verify and self-test before use: a camera runs unattended, so a bundle that was tampered with,
half copied or written by a newer converter must be refused at start (or on a SIGHUP reload, or
by ``flash``) with a message naming the file, never half loaded. Verification is
:func:`edge_affectsr.bundle.verify_bundle` (with trusted keys configured, the manifest's signature;
every sha256, the schema version) plus the checks only
the device cares about: the four models it runs are listed, and the landmark topology the SR model
was trained on is the one this runtime builds. The self-test then runs the bundle's golden input
through the int8 SR model on the delegate actually chosen and compares with the expected output
(PSNR >= ``golden.min_psnr_db``): a delegate that miscomputes is caught before the first frame.

Delegates: the SR model follows the configured order (Edge TPU -> GPU -> CPU by default; on the
Edge TPU the bundle's compiled ``sr_int8_edgetpu.tflite`` when it has one); the
critic, BlazeFace and FaceMesh always run on the CPU (they are float or not compiled for the TPU),
with the same thread count.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr import landmark_graph
from edge_affectsr.bundle import BundleError, Manifest, verify_bundle
from edge_affectsr.errors import UserError
from edge_affectsr.metrics import psnr
from edge_affectsr.models import resolve_model
from edge_affectsr.runtime.backend import TFLiteBackend, with_routing
from edge_affectsr.runtime.critic import FerCritic
from edge_affectsr.runtime.detect import DetectorConfig, FaceDetector
from edge_affectsr.runtime.interpreter import DelegateChoice, InterpreterConfig, load_with_config
from edge_affectsr.runtime.landmarks import FaceLandmarker, LandmarkConfig
from edge_affectsr.runtime.routing import RoutedBackend
from edge_affectsr.runtime.sr import TFLiteSR
from edge_affectsr.signing import TrustConfig, TrustedKeys

log = logging.getLogger(__name__)

REQUIRED_MODELS = ("sr_int8", "fer_int8", "face_detector", "face_landmark")
DETECTOR_INT8 = "face_detector_int8"  # BlazeFace converted to full int8 and gated against the float one (convert)
EDGETPU_MODEL = "sr_edgetpu"  # sr_int8 compiled by edgetpu_compiler, in bundles converted where it is installed
SHIPPED_BUNDLE = "bundle-x4"


class SelfTestError(BundleError):
    """The bundle's golden input did not give its expected output on this device."""


class BundleConfig(BaseModel):
    """The ``bundle:`` section of the device config."""

    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(None, description="a bundle folder; null: the shipped bundle-x4")
    self_test: bool = Field(True, description="run the golden input at load (start, SIGHUP reload)")


@dataclass(frozen=True)
class SelfTestResult:
    """Golden output PSNR against the manifest's bar, and how long the SR call took."""

    psnr_db: float
    min_psnr_db: float
    ms: float

    @property
    def passed(self) -> bool:
        return self.psnr_db >= self.min_psnr_db


@dataclass
class LoadedBundle:
    """A verified bundle with one interpreter per model (use from one thread only)."""

    path: Path
    manifest: Manifest
    sr: TFLiteBackend | RoutedBackend  # the int8 SR model(s), on the configured delegate (``sr.runner``: sr_int8, one face)
    delegate: DelegateChoice  # the SR model's delegate choice (the only model that may run on an accelerator)
    critic: FerCritic
    detector_file: Path  # the detector model running: face_detector or face_detector_int8 (detector.precision)
    detector: FaceDetector  # whole frame + tiles (the configured detector)
    roi_detector: FaceDetector  # the same model on one region per call (around live tracks)
    landmarker: FaceLandmarker
    nodes: np.ndarray  # the SR model's landmark subset, indices into the 478-point mesh

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def self_test(self) -> SelfTestResult:
        """Run the golden input through the int8 SR model; SelfTestError when below the bar."""
        golden = self.manifest.golden
        lr, lm, expected = (_load_golden(self.path, file) for file in (golden.lr, golden.lm, golden.expected_sr))
        start = time.perf_counter()
        got = self.sr.runner(lr, lm)
        result = SelfTestResult(psnr(got, expected), golden.min_psnr_db, (time.perf_counter() - start) * 1000)
        if not result.passed:
            raise SelfTestError(f"{self.path}: self-test failed on delegate {self.delegate.delegate}: golden output "
                                f"PSNR {result.psnr_db:.1f} dB < {result.min_psnr_db:.1f} dB; the model or the delegate "
                                "miscomputes here (try interpreter.delegate_order: [cpu])")
        return result

    def describe(self) -> str:
        """One line for the start-up log: name, version, delegate (and why others failed)."""
        return (f"bundle {self.name} v{self.version} from {self.path}: SR {self.delegate.summary()}; others on cpu; "
                f"detector {self.detector_file.name}")


def default_bundle_path() -> Path:
    """The shipped bundle, or a UserError saying to pass --model until one ships."""
    try:
        return resolve_model(SHIPPED_BUNDLE)
    except UserError as e:  # not shipped in this installation (yet)
        raise BundleError(f"no bundle given and the shipped bundle is not usable ({e}); "
                          "pass --model PATH (a folder made by `edge-affectsr convert`) "
                          "or set bundle.path in the config") from None


def load_bundle(path: str | Path | None = None, interpreter: InterpreterConfig | None = None,
                detector: DetectorConfig | None = None, landmarks: LandmarkConfig | None = None,
                self_test: bool = True, trust: TrustConfig | None = None) -> LoadedBundle:
    """Verify ``path`` (None: the shipped bundle; signed by a key of ``trust`` when it lists any; its
    key files are read again at each call, so a SIGHUP reload sees the current ones), build its
    interpreters, self-test; BundleError on any failure."""
    path = resolve_model(path) if path is not None else default_bundle_path()
    keys = TrustedKeys.load(trust.keys if trust else [])
    manifest = verify_bundle(path, keys)
    _check_device_fields(path, manifest)
    interpreter = interpreter or InterpreterConfig()
    cpu = interpreter.on_cpu()
    files = {key: path / manifest.models[key].file for key in REQUIRED_MODELS}
    files["detector"] = detector_file(path, manifest, (detector or DetectorConfig()).precision)
    sr = load_with_config(files["sr_int8"], interpreter, _compiled_models(path, manifest))
    nodes = np.asarray(manifest.landmarks.nodes, dtype=np.int64)
    primary = TFLiteBackend(TFLiteSR(sr), nodes, f"{manifest.name} (int8)")
    bundle = LoadedBundle(
        path=path, manifest=manifest,
        sr=with_routing(primary, manifest, path, lambda file: TFLiteSR(load_with_config(file, interpreter))),
        delegate=sr.choice,
        critic=FerCritic(load_with_config(files["fer_int8"], cpu)),
        detector_file=files["detector"],
        detector=FaceDetector(files["detector"], detector, cpu),
        roi_detector=FaceDetector(files["detector"], (detector or DetectorConfig()).whole_frame(), cpu),
        landmarker=FaceLandmarker(files["face_landmark"], landmarks, cpu),
        nodes=nodes,
    )
    _check_sr_matches_manifest(bundle)
    result = bundle.self_test() if self_test else None
    tested = f"self-test {result.psnr_db:.1f} dB >= {result.min_psnr_db:.0f} dB" if result else "self-test skipped"
    signed = f"signature checked (trusted: {keys.describe()})" if keys else "signature not checked (no trust.keys)"
    log.info("%s; %s; %s", bundle.describe(), signed, tested)
    return bundle


def detector_file(path: Path, manifest: Manifest, precision: str) -> Path:
    """The face detector file ``precision`` picks (``detector.precision``): ``float`` mediapipe's own,
    ``int8`` the converted one (BundleError when the bundle has none), ``auto`` int8 where the bundle
    has it. Both are gated against each other by ``convert``, so either is a valid choice."""
    has_int8 = DETECTOR_INT8 in manifest.models
    if precision == "int8" and not has_int8:
        raise BundleError(f"{path}: detector.precision is int8 but the bundle has no {DETECTOR_INT8} model; rebuild "
                          "it with this release's `edge-affectsr convert`, or set detector.precision: float (or auto)")
    key = DETECTOR_INT8 if has_int8 and precision != "float" else "face_detector"
    return path / manifest.models[key].file


def _compiled_models(path: Path, manifest: Manifest) -> dict[str, Path]:
    """The SR files only one delegate can run: the Edge TPU takes the compiled model when the bundle
    has one (preferred while the delegate loads; when it does not, sr_int8 runs on the next delegate
    and the interpreter's WARNING line names the compiled file it passed over)."""
    entry = manifest.models.get(EDGETPU_MODEL)
    return {"edgetpu": path / entry.file} if entry else {}


def _check_device_fields(path: Path, manifest: Manifest) -> None:
    """The models the device needs are declared and the landmark subset is the one this runtime builds
    (the golden files' presence is the manifest schema's business)."""
    missing = [key for key in REQUIRED_MODELS if key not in manifest.models]
    if missing:
        raise BundleError(f"{path}: manifest lists no {', '.join(missing)} model; rebuild it with `edge-affectsr convert`")
    subset, nodes = manifest.landmarks.subset, manifest.landmarks.nodes
    if subset not in landmark_graph.SUBSETS:
        raise BundleError(f"{path}: manifest landmarks.subset {subset!r} is unknown to this runtime")
    if list(landmark_graph.subset_nodes(subset)) != nodes:
        raise BundleError(f"{path}: manifest landmarks.nodes differ from this runtime's {subset!r} subset")
    if manifest.landmarks.adjacency_sha256 != landmark_graph.adjacency_hash(subset):
        raise BundleError(f"{path}: the SR model was built on another face-mesh topology (landmarks.adjacency_sha256 "
                          "differs); use an edge-affectsr release that matches the bundle")


def _check_sr_matches_manifest(bundle: LoadedBundle) -> None:
    lr = bundle.manifest.preprocessing.lr_size
    runner = bundle.sr.runner
    if runner.lr_size != lr or runner.num_landmarks != len(bundle.nodes):
        raise BundleError(f"{bundle.path}: sr_int8 takes {runner.lr_size} px and {runner.num_landmarks} landmarks, "
                          f"the manifest says {lr} px and {len(bundle.nodes)}")


def _load_golden(path: Path, rel: str) -> np.ndarray:
    try:
        return np.load(path / rel, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise BundleError(f"{path}: golden file {rel} cannot be read ({e})") from None
