"""``run --save`` / ``--report`` and ``process`` as a user runs them (a real process, the real bundle):
the annotated video read back with OpenCV, the CSV rows and the events naming their files and frames,
and the flags' errors before any work."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from _device_daemon import jsonl_events
from _video import video_frames
from _device_events import LABELS
from device_bundle import require_bundle
from edge_affectsr.device.capture.builtin import BuiltinSequence
from edge_affectsr.device.service.bench import write_builtin_video

CLIP_FRAMES = 12


@pytest.fixture(scope="module")
def bundle() -> Path:
    return require_bundle()


def cli(tmp: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_affectsr.cli", *args], cwd=tmp, capture_output=True,
                          text=True, timeout=timeout)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_save_and_report_on_a_video_file(tmp_path: Path, bundle: Path):
    write_builtin_video(tmp_path / "clip.avi", frames=60, fps=10.0)
    clip = BuiltinSequence(frames=60)
    done = cli(tmp_path, "run", "--model", str(bundle), "--source", "clip.avi", "--max-frames", str(CLIP_FRAMES),
               "--save", "out/annotated.mp4",               "--report", "out/faces.csv", "--events-jsonl", "events.jsonl", "--db", "off", "--http", "off")
    assert done.returncode == 0, done.stderr[-3000:]
    frames = video_frames(tmp_path / "out" / "annotated.mp4")
    cap = cv2.VideoCapture(str(tmp_path / "out" / "annotated.mp4"))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    assert len(frames) == CLIP_FRAMES and frames[0].shape == (480, 640, 3) and fps == pytest.approx(10.0)
    assert f"stopped (max frames ({CLIP_FRAMES})): {CLIP_FRAMES} frames" in done.stderr
    rows, events = read_csv(tmp_path / "out" / "faces.csv"), jsonl_events(tmp_path / "events.jsonl")
    assert len(rows) == len(events) >= 3  # report: frame, so every upscale is an event too
    assert all(r["file"] == "clip.avi" and r["source"] == "clip.avi" and r["expression"] in LABELS for r in rows)
    assert [int(r["frame"]) for r in rows] == [e["frame"] for e in events] and all(e["file"] == "clip.avi" for e in events)
    assert all(abs(sum(float(r[f"p_{c}"]) for c in LABELS) - 1) < 1e-3 for r in rows)
    first = next(r for r in rows)
    annotated = frames[int(first["frame"])].astype(int)
    raw = clip.render(int(first["frame"])).astype(int)
    inset = np.abs(annotated[10:100, 10:100] - raw[10:100, 10:100]).mean()
    assert inset > 30, inset  # the SR face drawn into the top-left corner of an otherwise plain background
    x0, y0 = int(float(first["x0"])), int(float(first["y0"]))
    assert np.abs(annotated[y0 - 25:y0, x0:x0 + 40] - raw[y0 - 25:y0, x0:x0 + 40]).mean() > 30  # the label band


def test_process_a_folder_names_each_file_in_the_report_the_events_and_the_video(tmp_path: Path, bundle: Path):
    folder = tmp_path / "photos"
    folder.mkdir()
    clip = BuiltinSequence(frames=6)
    names = [f"visitor-{i}.jpg" for i in range(6)]
    for i, name in enumerate(names):
        cv2.imwrite(str(folder / name), clip.render(i * 9))  # far apart in the clip: faces in different places
    (folder / "notes.jpg").write_bytes(b"not an image")  # skipped, named in the log, no frame
    done = cli(tmp_path, "process", "--model", str(bundle), "--source", "photos", "--save", "faces.avi",
               "--events-jsonl", "events.jsonl")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader(done.stdout.splitlines()))  # --report defaults to stdout
    events = jsonl_events(tmp_path / "events.jsonl")
    assert rows and {r["file"] for r in rows} <= set(names) and len({r["file"] for r in rows}) >= 4
    assert all(names.index(r["file"]) == int(r["frame"]) for r in rows)  # frame i is the i-th image, by name
    assert [(e["file"], e["frame"], e["source"]) for e in events] == [(r["file"], int(r["frame"]), "photos") for r in rows]
    assert len(video_frames(tmp_path / "faces.avi")) == len(names)
    assert "notes.jpg" in done.stderr and not (tmp_path / "events.db").exists()  # batch: no database


@pytest.mark.parametrize("args, message", [
    (["run", "--save", "out.gif"], "use a .mp4"),
    (["run", "--report", "-", "--events-jsonl", "-"], "both go to stdout"),
    (["process", "--source", "0"], "is a live source: use run"),
    (["run", "--source", "picamera", "--loop"], "never ends"),
])
def test_output_flags_are_checked_before_any_work(tmp_path: Path, args: list[str], message: str):
    done = cli(tmp_path, *args, "--http", "off", "--db", "off", timeout=60) if args[0] == "run" else cli(tmp_path, *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "bundle bundle-x4" not in done.stderr  # refused before loading


def test_loop_and_the_output_flags_land_in_the_config(tmp_path: Path):
    done = cli(tmp_path, "run", "--loop", "--save", "a.mp4", "--report", "r.csv", "--print-config")
    assert done.returncode == 0, done.stderr[-2000:]
    config = yaml.safe_load(done.stdout)
    assert config["capture"]["source"] == {"kind": "builtin", "frames": 60, "fps": None, "loop": True}
    assert config["outputs"] == {"video": "a.mp4", "video_fps": None, "report": "r.csv"} and config["preview"] is True
