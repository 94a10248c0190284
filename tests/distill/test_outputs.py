"""``upscale`` and ``eval`` output paths, as a user types them: a path that cannot be written is one
``error:`` line (exit 2) before any work, never a traceback after it; an ``upscale`` that writes
nothing is a failure, not exit 0. Real subprocesses of the CLI on the built-in face."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLI = [sys.executable, "-m", "edge_affectsr.cli"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def faces(folder: Path, size: tuple[int, int]) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / "face.png")
    return folder


def one_error_line(done: subprocess.CompletedProcess, *words: str) -> None:
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and last.startswith("error: "), done.stderr[-2000:]
    assert "Traceback" not in done.stderr and all(w in last for w in words), last


def test_upscale_into_a_file_is_refused_before_any_work(tmp_path: Path):
    """Before: a NotADirectoryError traceback. The model named does not exist: the output path is
    checked before the model is even looked up."""
    lr = faces(tmp_path / "lr", (32, 32))
    (tmp_path / "out.png").write_bytes(b"a file")
    done = cli("upscale", "--source", str(lr), "--out", str(tmp_path / "out.png"), "--model", "no-such-model", cwd=tmp_path)
    one_error_line(done, "--out", "is a file")
    (tmp_path / "blocker").write_bytes(b"a file")
    done = cli("upscale", "--source", str(lr), "--out", str(tmp_path / "blocker" / "sr"), "--model", "no-such-model", cwd=tmp_path)
    one_error_line(done, "is a file, not a folder")
    assert (tmp_path / "out.png").read_bytes() == (tmp_path / "blocker").read_bytes() == b"a file"


def test_upscale_that_writes_nothing_exits_non_zero(tmp_path: Path):
    """Before: exit 0 with nothing written (every input skipped, as a warning)."""
    lr = faces(tmp_path / "lr", (40, 30))  # not a square face crop
    done = cli("upscale", "--source", str(lr), "--out", str(tmp_path / "sr"), "--model", "bicubic", cwd=tmp_path)
    one_error_line(done, "nothing upscaled", "1 not square")
    assert not list((tmp_path / "sr").rglob("*.png"))


def test_eval_output_paths_are_checked_before_the_evaluation(tmp_path: Path):
    """Before: the evaluation ran to its end, then IsADirectoryError lost its results. Now the error
    comes first: no table was printed."""
    (tmp_path / "results").mkdir()
    (tmp_path / "blocker").write_bytes(b"a file")
    for flag, path, why in (("--json", tmp_path / "results", "is a folder"),
                            ("--markdown", tmp_path / "blocker" / "t.md", "is a file, not a folder"),
                            ("--grid", tmp_path / "results", "is a folder")):
        done = cli("eval", "--model", "student-x4", flag, str(path), cwd=tmp_path)
        one_error_line(done, flag, why)
        assert "faces from" not in done.stdout
