"""Compare the daemon's events from two machines (x86 and emulated arm64) on the same input.

Why tolerances and not equality: BlazeFace and FaceMesh are float32 models, and float SIMD kernels
(and fused multiply-adds) differ between x86 and ARM, so boxes and landmarks move by fractions of a
pixel, the aligned crop shifts, and the int8 critic's probabilities (steps of 1/256) can move by a
few steps. What must not differ is what a user sees: the same faces in the same frames, the same
expressions, probabilities within ``--prob-tol``. The per-frame reading is compared (``raw_expression``,
``raw_probabilities`` where the events carry them): the smoothed ``expression`` / ``probabilities``
decay with wall time between frames, and emulated frames are seconds apart instead of ~50 ms.
Stdlib only: it runs with any Python.

    python3 deploy/arm64/compare_events.py x86.jsonl arm64.jsonl [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PROB_TOL = 0.1  # absolute, per expression class
BOX_TOL_PX = 3.0  # per box edge, in frame pixels (640x480 built-in clip)


def read_events(path: Path) -> dict[tuple[int, int], dict]:
    """``(frame, track_id) -> face event`` of a JSON-lines file (track and group summaries are left
    out: they average the faces' numbers over wall-time windows, which emulation stretches)."""
    events = {}
    for line in Path(path).read_text().splitlines():
        event = json.loads(line) if line.strip() else {}
        if event.get("kind", "face") == "face" and "frame" in event:
            events[(event["frame"], event["track_id"])] = event
    return events


def reading(event: dict) -> tuple[str, dict[str, float]]:
    """The frame's own expression and probabilities (not smoothed over time)."""
    return event.get("raw_expression", event["expression"]), event.get("raw_probabilities", event["probabilities"])


def compare(reference: dict, other: dict, prob_tol: float = PROB_TOL, box_tol: float = BOX_TOL_PX) -> dict:
    """The differences between two runs' events, and whether they are within tolerance."""
    problems = [f"face {key} only in the reference run" for key in sorted(reference.keys() - other.keys())]
    problems += [f"face {key} only in the other run" for key in sorted(other.keys() - reference.keys())]
    prob_diff = box_diff = 0.0
    guard_differs = landmarks_differ = 0
    for key in sorted(reference.keys() & other.keys()):
        a, b = reference[key], other[key]
        (expr_a, prob_a), (expr_b, prob_b) = reading(a), reading(b)
        if expr_a != expr_b:
            problems.append(f"face {key}: expression {expr_a} vs {expr_b}")
        face_prob = max(abs(prob_a[c] - prob_b[c]) for c in prob_a)
        face_box = max(abs(x - y) for x, y in zip(a["bbox"], b["bbox"]))
        if face_prob > prob_tol:
            problems.append(f"face {key}: probabilities differ by {face_prob:.3f} > {prob_tol}")
        if face_box > box_tol:
            problems.append(f"face {key}: box differs by {face_box:.1f} px > {box_tol}")
        prob_diff, box_diff = max(prob_diff, face_prob), max(box_diff, face_box)
        guard_differs += a["guard"]["preserved"] != b["guard"]["preserved"]
        landmarks_differ += a["landmarks"] != b["landmarks"]
    return {"faces": len(reference), "faces_other": len(other), "frames": len({k[0] for k in reference}),
            "max_probability_diff": round(prob_diff, 5), "max_box_diff_px": round(box_diff, 2),
            "probability_tolerance": prob_tol, "box_tolerance_px": box_tol,
            "guard_verdicts_differ": guard_differs, "landmark_paths_differ": landmarks_differ,
            "passed": not problems, "problems": problems}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reference", type=Path, help="JSON-lines events of the reference run (x86)")
    p.add_argument("other", type=Path, help="JSON-lines events of the run to check (arm64)")
    p.add_argument("--prob-tol", type=float, default=PROB_TOL, help=f"per-class probability tolerance ({PROB_TOL})")
    p.add_argument("--box-tol", type=float, default=BOX_TOL_PX, help=f"box edge tolerance in px ({BOX_TOL_PX})")
    p.add_argument("--json", type=Path, help="write the comparison here")
    args = p.parse_args(argv)
    result = compare(read_events(args.reference), read_events(args.other), args.prob_tol, args.box_tol)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'same' if result['passed'] else 'DIFFERENT'}: {result['faces_other']} vs {result['faces']} faces in "
          f"{result['frames']} frames; max probability difference {result['max_probability_diff']} "
          f"(tolerance {result['probability_tolerance']}), max box difference {result['max_box_diff_px']} px; "
          f"guard verdicts differ on {result['guard_verdicts_differ']}, "
          f"landmark paths on {result['landmark_paths_differ']}")
    for problem in result["problems"][:20]:
        print("  " + problem)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
