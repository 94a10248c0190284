"""eval --degradation: the camera benchmark's cells, its summary and picture, on the built-in face
(no shared data needed) through the real CLI and the shipped student."""

from __future__ import annotations

import json

from PIL import Image

from edge_affectsr.cli import main
from edge_affectsr.distill.camera_benchmark import GRID, expand, summary_table


def test_grid_expands_to_the_clean_protocol_and_nine_camera_cells():
    assert GRID[0] == "clean" and len(GRID) == 10
    assert {c.split(":")[1] for c in GRID[1:]} == {"16", "24", "32"}
    assert expand(["lens:32", "grid", "clean"]) == ["lens:32", *[c for c in GRID if c != "lens:32"]]


def test_eval_scores_each_camera_cell_and_summarises_them(tmp_path, capsys):
    out = tmp_path / "cells"
    code = main(["eval", "--model", "student-x4", "--degradation", "clean", "--degradation", "lens:32",
                 "--degradation", "h264:16", "--json", str(out.with_suffix(".json")),
                 "--markdown", str(out.with_suffix(".md")), "--grid", str(out.with_suffix(".png"))])
    assert code == 0
    cells = json.loads(out.with_suffix(".json").read_text())["cells"]
    assert [c["degradation"] for c in cells] == ["clean", "lens:32", "h264:16"]
    assert cells[0]["degradation_params"] is None and cells[2]["degradation_params"]["crop_px"] == [16, 16]
    psnr = {c["degradation"]: {r["model"]: r["psnr"] for r in c["rows"]} for c in cells}
    # the same face, rendered harsher, is further from HR for bicubic and the student alike
    assert psnr["clean"]["bicubic"] > psnr["lens:32"]["bicubic"] > psnr["h264:16"]["bicubic"]
    assert psnr["clean"]["student-x4"] > psnr["h264:16"]["student-x4"]
    summary = out.with_suffix(".md").read_text()
    assert "| h264:16 |" in summary and "Δ bicubic (dB)" in summary and "### lens:32" in summary
    assert "3 LR conditions" in capsys.readouterr().out
    picture = Image.open(out.with_suffix(".png"))
    assert picture.width == 128 * 4  # LR | bicubic | student | HR
    assert picture.height > 3 * 128  # a row per cell


def test_summary_states_gain_and_agreement_multiple_of_bicubic():
    rows = [{"model": "bicubic", "psnr": 20.0, "ssim": 0.5, "agreement": 0.2, "kl": 1.0},
            {"model": "m", "psnr": 22.5, "ssim": 0.6, "agreement": 0.5, "kl": 0.5, "fer_accuracy": 0.4}]
    table = summary_table([{"degradation": "jpeg:24", "faces": 10, "landmarks_found_lr": 3, "hr_fer_accuracy": 0.6, "rows": rows}])
    assert "| jpeg:24 | 30 % | m | 22.50 | +2.50 | 0.6000 | 0.500 | 2.50 | 0.5000 | 0.400 |" in table


def test_a_bad_degradation_is_refused_before_any_model_loads(capsys):
    assert main(["eval", "--model", "no-such-model", "--degradation", "fog:24"]) == 2
    assert "unknown degradation 'fog'" in capsys.readouterr().err


def test_the_routed_bundle_reports_where_its_router_sent_the_faces(tmp_path):
    """The shipped bundle routes each face: eval records the share sent to the camera-robust model
    (the sharp protocol LR of the built-in face to the clean model, its camera renderings to the
    camera model), and the summary shows it; models without a router show none."""
    out = tmp_path / "routed"
    assert main(["eval", "--model", "bundle-x4", "--model", "student-x4", "--degradation", "clean",
                 "--degradation", "jpeg:24", "--json", str(out.with_suffix(".json")),
                 "--markdown", str(out.with_suffix(".md"))]) == 0
    cells = {c["degradation"]: {r["model"]: r for r in c["rows"]} for c in json.loads(out.with_suffix(".json").read_text())["cells"]}
    assert cells["clean"]["bundle-x4 (int8)"]["routed_to_camera"] == 0.0
    assert cells["jpeg:24"]["bundle-x4 (int8)"]["routed_to_camera"] == 1.0
    assert cells["clean"]["student-x4"]["routed_to_camera"] is None
    assert "routed to camera model" in out.with_suffix(".md").read_text()
