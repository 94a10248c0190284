"""deploy/arm64/compare_events.py, the judge of `make check-arm64`: on a real daemon run's events it
passes the same run and fails a changed expression, a lost face or probabilities past the tolerance."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("compare_events", ROOT / "deploy" / "arm64" / "compare_events.py")
compare_events = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_events)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """Six frames of the built-in clip through the daemon, as check-arm64 runs it."""
    out = tmp_path_factory.mktemp("run") / "x86.jsonl"
    done = subprocess.run([sys.executable, "-m", "edge_affectsr.cli", "run", "--config", "deploy/arm64/emulated.yaml",
                           "--max-frames", "6", "--events-jsonl", str(out), "--db", "off", "--http", "off"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def edited(run: Path, tmp_path: Path, change) -> Path:
    """A copy of the run's events with ``change(face_events)`` applied (summaries kept as they were)."""
    lines = [json.loads(line) for line in run.read_text().splitlines()]
    faces = [e for e in lines if e.get("kind", "face") == "face"]
    change(faces)
    out = tmp_path / "arm64.jsonl"
    out.write_text("".join(json.dumps(e) + "\n" for e in lines if e.get("kind", "face") != "face" or e in faces))
    return out


def test_the_same_run_passes_and_summaries_are_not_compared(run, tmp_path):
    reference = compare_events.read_events(run)
    assert len(reference) >= 5  # one face per frame, most frames
    assert compare_events.main([str(run), str(run), "--json", str(tmp_path / "c.json")]) == 0
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["passed"] and result["max_probability_diff"] == 0 and result["faces"] == len(reference)


def bumped(probabilities: dict, by: float) -> dict:
    """The first class's probability raised by ``by``, the others as they were."""
    first = next(iter(probabilities))
    return {k: v + by if k == first else v for k, v in probabilities.items()}


def test_a_changed_expression_a_lost_face_and_far_probabilities_fail(run, tmp_path):
    def change(faces):
        faces[0]["raw_expression"] = "surprise" if faces[0]["raw_expression"] != "surprise" else "sad"
        faces[1]["raw_probabilities"] = bumped(faces[1]["raw_probabilities"], 0.15)
        faces[2]["raw_probabilities"] = bumped(faces[2]["raw_probabilities"], 0.05)  # within the tolerance
        faces[4]["probabilities"] = bumped(faces[4]["probabilities"], 0.3)  # smoothed over wall time: not compared
        del faces[3]

    other = compare_events.read_events(edited(run, tmp_path, change))
    result = compare_events.compare(compare_events.read_events(run), other)
    assert not result["passed"] and len(result["problems"]) == 3, result["problems"]
    assert sum("only in the reference run" in p for p in result["problems"]) == 1
    assert sum(": expression " in p for p in result["problems"]) == 1
    assert sum("differ by 0.150 > 0.1" in p for p in result["problems"]) == 1
