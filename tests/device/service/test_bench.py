"""device/service/bench.py: ``edge-affectsr bench`` end to end on the built-in clip (short), and its RSS probe."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


from edge_affectsr.device.service.bench import markdown, rss_bytes, write_builtin_video

from _video import video_frames
from device_bundle import require_bundle


def test_the_builtin_clip_becomes_a_readable_640x480_video(tmp_path: Path):
    frames = video_frames(write_builtin_video(tmp_path / "clip.avi", frames=5))
    assert len(frames) == 5 and frames[0].shape == (480, 640, 3)


def test_rss_is_measured():
    assert 10e6 < rss_bytes() < 20e9


def test_bench_prints_tables_and_writes_json(tmp_path: Path):
    bundle = require_bundle()
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "edge_affectsr.cli", "bench", "--model", str(bundle), "--seconds", "1",
                           "--threads", "1", "--soak-minutes", "0.05", "--json", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    (row,) = report["results"]
    assert row["threads"] == 1 and row["fps"] > 0 and row["frames"] > 0 and row["delegate"] == "cpu"
    assert {"detect", "landmarks", "align", "sr", "guard", "frame"} <= set(row["latency_ms"])
    assert report["soak"]["samples"] and "growth_pct" in report["soak"]
    assert "| threads | fps |" in done.stdout and "growth %" in done.stdout
    assert markdown(report["results"]).splitlines()[2].startswith("| 1 |")
