"""mediapipe's BlazeFace short-range detector as a full-int8 TFLite model, calibrated on what the
device feeds it.

Why a conversion and not a copy: the wheel's model is float (float16 weights expanded by
``DEQUANTIZE``), which an Edge TPU or an NPU cannot run. TensorFlow cannot import a ``.tflite``,
and ``tf2onnx`` needs protobuf 3.20 (onnx2tf's stack pins 4.25.5), so the route is ``tflite2onnx``
(pure Python, reads the flatbuffer; its ONNX matches the ``.tflite`` to 1e-4 on random inputs) and
then the project's own onnx2tf step (``onnx2tflite.py``): int8 weights per channel, int8 input
and outputs.

Calibration inputs are the detector's own inputs on crowd frames (``runtime/crowd_clips.py``: real
faces of every size the schedule covers, camera optics, noise and JPEG): the whole frame and the zoom
tiles of ``runtime/scan.py``, letterboxed by :meth:`FaceDetector.model_input`, mostly tiles that hold a
face and some that hold none. People are drawn one photo per identity; the calibration and the
gates (``detector_gates.py``) get disjoint identities.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_affectsr.errors import UserError
from edge_affectsr.runtime.crowd_clips import Clip, ClipSpec, build_clip, people
from edge_affectsr.runtime.detect import MODEL_NAME, DetectorConfig, FaceDetector, mediapipe_model_path
from edge_affectsr.runtime.scan import Region

CALIBRATION_SIZES = (16, 20, 24, 32, 48, 64)  # face box widths, frame px
FRAME_SIZES = ((1280, 720), (640, 480))
FRAMES_PER_SIZE = 1  # frames per (frame size, face size), each with other people
# Per frame, besides the whole frame: 12 frames x 9 = 108 inputs. 264 inputs (2 frames, 10 face tiles)
# gave the same gate numbers, and onnx2tf calibrates 4 variants on them (~45 s each on 2 busy cores).
FACE_TILES, EMPTY_TILES = 6, 2
MAX_PEOPLE = 20  # per frame
PEOPLE = (60, 40)  # identities for calibration, for the gates (fewer, split the same way, when the folder has fewer)
SEED = 13_000_001
# Output -> the bound its int8 range is clipped to (bound_output). Scores: logits; the decoder clips at
# +-100 and thresholds at logit(score_threshold), and no float logit of a face passed 4 on the
# calibration frames, so +-16 changes no detection (scores saturate at 1 - 1e-7). Regressors: input
# px; faces' boxes and keypoints stayed within -50..100 on those frames, and a face as wide as the input is 128.
OUTPUT_BOUNDS = {"classificators": 16.0, "regressors": 192.0}


class DetectorConversionError(UserError):
    """The detector could not be converted; the message says why."""


@dataclass(frozen=True)
class People:
    """HR crops (RGB ``[n, 128, 128, 3]``) of disjoint identities: ``calibration`` and ``held_out``."""

    calibration: list[np.ndarray]
    held_out: list[np.ndarray]


def split_people(folder: Path) -> People:
    """One photo per identity of ``folder``, drawn with :data:`SEED`, split into the calibration people
    and the held-out people the gates use (at most :data:`PEOPLE`; halves when the folder has fewer)."""
    faces = people(folder, sum(PEOPLE), SEED)
    if len(faces) < 2:
        raise DetectorConversionError(f"{folder}: the int8 detector needs at least 2 people (one to calibrate on, "
                                      f"one held out for its gates); found {len(faces)}")
    cut = min(PEOPLE[0], len(faces) // 2) if len(faces) < sum(PEOPLE) else PEOPLE[0]
    return People(faces[:cut], faces[cut:])


def float_model() -> Path:
    """mediapipe's short-range BlazeFace, the model the int8 one is converted from and gated against."""
    return mediapipe_model_path(MODEL_NAME)


def crowd_frame(faces: list[np.ndarray], size: tuple[int, int], face_px: int, index: int, seed: int) -> Clip:
    """A one-frame crowd clip of :data:`MAX_PEOPLE` faces (fewer where they do not fit; ``faces`` rotated
    by ``index``, so each frame shows other people first, and cycled when fewer) at ``face_px``,
    camera-degraded (the ``jpeg`` preset, as ``crowd-bench``)."""
    fits = ClipSpec(size, face_px, 1, 1).capacity()
    spec = ClipSpec(size, face_px, min(MAX_PEOPLE, fits), 1, "jpeg", seed + index)
    shift = index * spec.faces % len(faces)
    return build_clip(spec, faces[shift:] + faces[:shift])


def _holds_face(region: Region, boxes: np.ndarray) -> bool:
    x, y, w, h = region
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return bool(np.any((cx >= x) & (cx < x + w) & (cy >= y) & (cy < y + h)))


def calibration_inputs(faces: list[np.ndarray], model: Path | None = None) -> np.ndarray:
    """The detector's inputs, float32 RGB ``[n, 128, 128, 3]`` in [-1, 1]: per frame of every frame size
    and face size, the whole frame, :data:`FACE_TILES` tiles with a face and :data:`EMPTY_TILES` without
    (drawn from the default zoom schedule)."""
    detector = FaceDetector(model or float_model(), DetectorConfig(tiles_per_call=None))
    rng = np.random.default_rng([SEED, 1])
    inputs = []
    for size in FRAME_SIZES:
        for face_px in CALIBRATION_SIZES:
            for index in range(FRAMES_PER_SIZE):
                clip = crowd_frame(faces, size, face_px, index, SEED)
                frame, boxes = clip.frame(0), clip.boxes(0)
                tiles = detector.schedule.tiles(*size)
                with_face = [t for t in tiles if _holds_face(t, boxes)]
                empty = [t for t in tiles if not _holds_face(t, boxes)]
                picked = [(0, 0, *size)] + _sample(rng, with_face, FACE_TILES) + _sample(rng, empty, EMPTY_TILES)
                inputs += [detector.model_input(frame, region) for region in picked]
    return np.stack(inputs)


def _sample(rng: np.random.Generator, regions: list[Region], k: int) -> list[Region]:
    chosen = rng.permutation(len(regions))[:k]
    return [regions[i] for i in sorted(chosen)]


def tflite_to_onnx(tflite: Path, out: Path) -> Path:
    """The float ``.tflite`` as ONNX (NCHW input ``[1, 3, 128, 128]``; outputs as in the ``.tflite``)."""
    import tflite2onnx

    # It warns once per float16 weight ("not supported/tested yet"): those feed DEQUANTIZE ops, which it
    # converts as float32 constants, and the ONNX model matches the .tflite (tests/convert/test_detector_int8.py).
    logging.getLogger("tflite2onnx").setLevel(logging.ERROR)
    try:
        tflite2onnx.convert(str(tflite), str(out))
    except Exception as e:  # the library raises plain exceptions for ops or types it does not know
        raise DetectorConversionError(f"tflite2onnx could not convert {tflite.name}: {type(e).__name__}: {e}") from e
    return out


def bound_output(graph, output: str, bound: float) -> None:
    """Clip the graph output ``output`` (a Concat of Conv heads through Transpose/Reshape) to
    ``[-bound, bound]`` in a form int8 keeps fine: each head Conv's weights and bias divided by
    ``bound`` and clipped to [-1, 1] (TFLite fuses that into the conv as RELU_N1_TO_1, so the head's
    int8 range is [-1, 1], not whatever the calibration frames reached), the Concat multiplied by
    ``bound``. Why: calibrated as it is, the scores' int8 step was 2.5 logits (background anchors
    reach -650), so every score was 0.5 or 0.93; a clip *after* the conv would not help, as the
    conv's own output keeps the wide range."""
    from onnx import helper, numpy_helper

    nodes = {o: n for n in graph.node for o in n.output}
    weights = {t.name: t for t in graph.initializer}
    concat = nodes[output]
    for head in concat.input:
        conv = nodes[head]
        while conv.op_type in ("Reshape", "Transpose"):
            conv = nodes[conv.input[0]]
        if conv.op_type != "Conv":
            raise DetectorConversionError(f"{output}: expected Conv heads, found {conv.op_type} ({conv.name})")
        for name in conv.input[1:]:
            weights[name].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights[name]) / bound, name))
        unit = f"{conv.output[0]}_unit"
        consumers = [n for n in graph.node if conv.output[0] in n.input]
        for n in consumers:
            n.input[list(n.input).index(conv.output[0])] = unit
        graph.initializer.extend([numpy_helper.from_array(np.array(v, np.float32), f"{unit}_{k}") for k, v in
                                  (("min", -1.0), ("max", 1.0))])
        graph.node.append(helper.make_node("Clip", [conv.output[0], f"{unit}_min", f"{unit}_max"], [unit]))
    concat.output[0] = f"{output}_unit"
    graph.initializer.append(numpy_helper.from_array(np.array(bound, np.float32), f"{output}_bound"))
    graph.node.append(helper.make_node("Mul", [f"{output}_unit", f"{output}_bound"], [output]))


def bounded_onnx(tflite: Path, out: Path) -> Path:
    """:func:`tflite_to_onnx`, then the scores and the box regressors bounded (:func:`bound_output`,
    :data:`OUTPUT_BOUNDS`) and the nodes re-sorted."""
    import onnx

    model = onnx.load(str(tflite_to_onnx(tflite, out)))
    for name, bound in OUTPUT_BOUNDS.items():
        bound_output(model.graph, name, bound)
    _topological_sort(model.graph)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


def _topological_sort(graph) -> None:
    """ONNX wants nodes in execution order; the inserted ones were appended."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    pending, ordered = list(graph.node), []
    while pending:
        node = next(n for n in pending if all(i in ready or not i for i in n.input))
        ordered.append(node)
        pending.remove(node)
        ready.update(node.output)
    del graph.node[:]
    graph.node.extend(ordered)


def convert_detector(calibration: np.ndarray, work: Path, model: Path | None = None) -> Path:
    """The full-int8 detector (int8 input and outputs, per-channel weights) in ``work``, calibrated on
    ``calibration`` (:func:`calibration_inputs`)."""
    from edge_affectsr.convert.onnx2tflite import convert

    work = work.resolve()  # onnx2tf runs in a folder of its own
    work.mkdir(parents=True, exist_ok=True)
    onnx = bounded_onnx(model or float_model(), work / "face_detector.onnx")
    return convert(onnx, {"input": calibration}, work / "onnx2tf")["int8"]
