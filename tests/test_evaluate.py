"""`edge-affectsr eval` and the shipped checkpoints, on real CelebA val faces."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from distill.archs.complexity import count_macs, count_params
from distill.evaluate import evaluate, markdown_table
from distill.predictors import load_predictor
from edge_affectsr import protocol

STUDENTS = ("student-x4", "student-x4-nodistill", "student-x4-nograph")


@pytest.fixture(scope="module")
def val_faces(shared_data: Path, tmp_path_factory) -> Path:
    src = sorted((shared_data / "celeba" / "val").glob("*.jpg"))[:12]
    if len(src) < 12:
        pytest.skip("too few CelebA val faces in the shared data")
    folder = tmp_path_factory.mktemp("val")
    for p in src:
        shutil.copy(p, folder / p.name)
    return folder


@pytest.mark.parametrize("name", STUDENTS)
def test_shipped_students_fit_the_edge_budget(name):
    pred = load_predictor(name)
    assert pred.kind == "student" and pred.scale == 4
    assert count_params(pred.model) <= 100_000
    assert count_macs(pred.model, protocol.lr_size(4), len(pred.nodes)) <= 150_000_000


def test_eval_table_has_cost_columns_and_trained_models_beat_bicubic(val_faces):
    report, faces, images, _ = evaluate(["teacher-x4", "student-x4"], val_faces, scale=4)
    rows = {r["model"]: r for r in report["rows"]}
    assert report["faces"] == 12 and set(rows) == {"bicubic", "teacher-x4", "student-x4"}
    assert rows["bicubic"]["params"] is None and rows["bicubic"]["macs_m"] is None
    assert rows["student-x4"]["params"] == 81_304
    assert rows["teacher-x4"]["params"] > 20 * rows["student-x4"]["params"]
    for name in ("teacher-x4", "student-x4"):
        assert rows[name]["psnr"] > rows["bicubic"]["psnr"] + 1.0
        assert rows[name]["kl"] < rows["bicubic"]["kl"]
    table = markdown_table(report)
    bicubic_line = next(line for line in table.splitlines() if line.startswith("| bicubic "))
    assert bicubic_line.count("—") == 2
    assert "81,304" in table
    assert images["student-x4"][0].shape == (12, 128, 128, 3)
