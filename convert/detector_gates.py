"""The int8 face detector's gates: the int8 model against the float one it was converted from, on
crowd frames of people the calibration never saw, each frame scanned whole (the whole frame and
every tile of the device's default zoom schedule), both models through the runtime's own decode and
NMS (:class:`~edge_affectsr.runtime.detect.FaceDetector`).

Why these gates (judged by :func:`edge_affectsr.convert.gates.evaluate`; a failing one writes no bundle):
- the int8 model finds the float model's faces and no others: at least 95 % of the float model's
  detections are matched by an int8 one (one to one, IoU >= 0.5), and at least 95 % of the int8
  detections are matched by a float one or are a placed face (a face only the int8 model found is
  not an error of the int8 model);
- it puts them in the same place: the mean corner error of matched boxes, at most 5 % of the
  float box's width (a 16 px face: under 1 px);
- it ranks them the same: the Pearson correlation of matched scores, at least 0.9 (the score
  orders the NMS and the tracks' faces);
- it finds as many of the placed faces as float at 16, 24 and 32 px (the crowd sizes), within 3
  points: the detections matched to the true boxes by the crowd benchmark's rule
  (:func:`~edge_affectsr.runtime.crowd_clips.match`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_affectsr.convert.detector_int8 import SEED, crowd_frame, split_people
from edge_affectsr.convert.gates import Gate, Measurement, evaluate
from edge_affectsr.runtime.crowd_clips import match
from edge_affectsr.runtime.detect import Detection, DetectorConfig, FaceDetector
from edge_affectsr.runtime.nms import iou_matrix

GATE_SIZES = (16, 24, 32)  # face box widths, frame px
GATE_FRAME = (1280, 720)
GATE_FRAMES = 4  # per size, each with other people first (20 faces a frame)
MATCH_IOU = 0.5

DETECTOR_GATES: tuple[Gate, ...] = (
    Gate("detector_recall", "detector_recall_vs_float", ">=", 0.95,
         "int8 detector finds >= {points:.0f} % of the float detector's faces (IoU >= 0.5)"),
    Gate("detector_precision", "detector_precision_vs_float", ">=", 0.95,
         "int8 detector's faces: >= {points:.0f} % are the float detector's (IoU >= 0.5) or placed faces"),
    Gate("detector_box_error", "detector_box_error", "<=", 0.05,
         "int8 detector's boxes: mean corner error <= {points:.0f} % of the float box's width"),
    Gate("detector_scores", "detector_score_correlation", ">=", 0.9,
         "int8 detector's scores correlate with the float ones (Pearson >= {threshold:g})"),
    Gate("detector_truth_recall", "detector_truth_recall_drop", "<=", 0.03,
         "int8 detector's recall of placed {subject} faces within {points:.0f} points of float"),
)


@dataclass
class Tally:
    """Running counts over the gate frames."""

    float_faces: int = 0
    int8_faces: int = 0
    matched: int = 0
    int8_only_true: int = 0  # int8 detections no float one matched that are placed faces
    box_errors: list[float] = field(default_factory=list)
    scores: list[tuple[float, float]] = field(default_factory=list)  # (float, int8) of matched pairs
    truth: dict[int, list[int]] = field(default_factory=dict)  # face px -> [placed, found by float, found by int8]

    def add(self, face_px: int, truth: np.ndarray, ref: list[Detection], got: list[Detection]) -> None:
        a, b = _boxes(ref), _boxes(got)
        # which detections are placed faces (one to one: a second box on a face is not a face)
        on_a, on_b = (match(truth, x, np.array([d.score for d in dets])) >= 0 for x, dets in ((a, ref), (b, got)))
        pairs = match_iou(a, b)
        self.float_faces, self.int8_faces = self.float_faces + len(a), self.int8_faces + len(b)
        self.matched += len(pairs)
        self.int8_only_true += int(np.delete(on_b, [j for _, j in pairs]).sum())
        for i, j in pairs:
            self.box_errors.append(float(np.abs(a[i] - b[j]).mean() / max(a[i, 2] - a[i, 0], 1e-6)))
            self.scores.append((ref[i].score, got[j].score))
        row = self.truth.setdefault(face_px, [0, 0, 0])
        row[0], row[1], row[2] = row[0] + len(truth), row[1] + int(on_a.sum()), row[2] + int(on_b.sum())

    def measurements(self) -> list[Measurement]:
        recall = self.matched / max(self.float_faces, 1)
        valid = self.matched + self.int8_only_true
        precision = valid / self.int8_faces if self.int8_faces else 1.0
        box = float(np.mean(self.box_errors)) if self.box_errors else 1.0
        corr = _pearson(np.array(self.scores).reshape(-1, 2))
        out = [Measurement("detector_recall_vs_float", recall, shown=f"{recall:.4f} ({self.matched} of {self.float_faces})"),
               Measurement("detector_precision_vs_float", precision,
                           shown=f"{precision:.4f} ({self.matched} + {self.int8_only_true} placed of {self.int8_faces})"),
               Measurement("detector_box_error", box, shown=round(box, 4)),
               Measurement("detector_score_correlation", corr, shown=round(corr, 4))]
        for px, (placed, by_float, by_int8) in sorted(self.truth.items()):
            drop = round((by_float - by_int8) / max(placed, 1), 9)
            out.append(Measurement("detector_truth_recall_drop", drop, f"{px} px",
                                   f"{drop:+.4f} (float {by_float}, int8 {by_int8} of {placed})"))
        return out


def match_iou(a: np.ndarray, b: np.ndarray, threshold: float = MATCH_IOU) -> list[tuple[int, int]]:
    """One-to-one pairs ``(i, j)`` of boxes ``a [n, 4]`` and ``b [m, 4]`` with IoU >= ``threshold``, the
    highest IoU first."""
    if not len(a) or not len(b):
        return []
    iou = iou_matrix(a, b)
    pairs, used_a, used_b = [], set(), set()
    for flat in np.argsort(-iou, axis=None):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < threshold:
            break
        if i not in used_a and j not in used_b:
            pairs.append((int(i), int(j)))
            used_a.add(i)
            used_b.add(j)
    return pairs


def _pearson(pairs: np.ndarray) -> float:
    """Correlation of the two columns; 0 when there are too few pairs or no spread to correlate."""
    if len(pairs) < 3 or pairs[:, 0].std() == 0 or pairs[:, 1].std() == 0:
        return 0.0
    return float(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1])


def _boxes(detections: list[Detection]) -> np.ndarray:
    return np.array([d.bbox for d in detections], np.float64).reshape(-1, 4)


def compare_detectors(float_model: Path, int8_model: Path, held_out: list[np.ndarray]) -> Tally:
    """Both models on :data:`GATE_FRAMES` frames per gate size of the ``held_out`` people (HR crops),
    each frame scanned whole."""
    config = DetectorConfig(tiles_per_call=None)
    ref, got = FaceDetector(float_model, config), FaceDetector(int8_model, config)
    tally = Tally()
    for face_px in GATE_SIZES:
        for index in range(GATE_FRAMES):
            clip = crowd_frame(held_out, GATE_FRAME, face_px, index, SEED + 1)
            frame = clip.frame(0)
            tally.add(face_px, clip.boxes(0), ref.detect(frame), got.detect(frame))
    return tally


def markdown(tally: Tally) -> str:
    """The report's detector table: placed faces found per size, and the detections compared."""
    lines = ["| face px | placed | float found % | int8 found % |", "|---|---:|---:|---:|"]
    for px, (placed, by_float, by_int8) in sorted(tally.truth.items()):
        lines.append(f"| {px} | {placed} | {100 * by_float / max(placed, 1):.1f} | {100 * by_int8 / max(placed, 1):.1f} |")
    lines += ["", f"Detections: float {tally.float_faces}, int8 {tally.int8_faces}, matched at IoU >= {MATCH_IOU}: "
                  f"{tally.matched}; int8 only, on a placed face: {tally.int8_only_true}."]
    return "\n".join(lines)


def verify_detector(files: dict[str, Path], folder: Path | None) -> dict:
    """For a bundle with ``face_detector_int8``: ``{"gates", "table", "summary"}`` of it against
    ``face_detector`` on the held-out people of ``folder`` (detector_int8.split_people); ``{}`` without."""
    if "face_detector_int8" not in files or folder is None:
        return {}
    tally = compare_detectors(files["face_detector"], files["face_detector_int8"], split_people(folder).held_out)
    gates = evaluate(tally.measurements(), DETECTOR_GATES)
    summary = {"frame": list(GATE_FRAME), "frames_per_size": GATE_FRAMES, "match_iou": MATCH_IOU,
               "truth": {str(px): dict(zip(("placed", "float", "int8"), row)) for px, row in sorted(tally.truth.items())},
               "float_faces": tally.float_faces, "int8_faces": tally.int8_faces, "matched": tally.matched,
               "int8_only_on_placed_faces": tally.int8_only_true}
    return {"gates": gates, "summary": summary,
            "table": f"\n\n## face_detector_int8 against face_detector (held-out crowd frames)\n\n{markdown(tally)}"}
