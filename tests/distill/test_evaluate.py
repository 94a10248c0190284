"""`edge-affectsr eval` and the shipped checkpoints: quality on real CelebA val faces where ../shared/data
is, everything else on variants of the built-in face (tests/synthetic_faces.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from edge_affectsr import protocol
from edge_affectsr.distill.archs.complexity import count_macs, count_params
from edge_affectsr.distill.evaluate import column, evaluate, markdown_table, paired_table
from edge_affectsr.distill.upscale import upscale_folder
from edge_affectsr.errors import UserError
from edge_affectsr.runtime.backend import load_model
from synthetic_faces import face_folder

STUDENTS = ("student-x4", "student-x4-clean", "student-x4-nodistill-clean", "student-x4-nograph-clean", "student-x4-camera")


@pytest.fixture(scope="module")
def face_dir() -> Path:
    """Six face JPEGs (read-only): for what eval and upscale do, not how well."""
    return face_folder(6)


@pytest.fixture(scope="module")
def val_faces(shared_data: Path, tmp_path_factory) -> Path:
    """12 real CelebA val faces: for the quality claims the project makes on them."""
    src = sorted((shared_data / "celeba" / "val").glob("*.jpg"))[:12]
    if len(src) < 12:
        pytest.skip("too few CelebA val faces in the shared data")
    folder = tmp_path_factory.mktemp("val")
    for p in src:
        shutil.copy(p, folder / p.name)
    return folder


@pytest.mark.parametrize("name", STUDENTS)
def test_shipped_students_fit_the_edge_budget(name):
    pred = load_model(name)
    assert pred.kind == "student" and pred.scale == 4
    assert count_params(pred.model) <= 100_000
    assert count_macs(pred.model, protocol.lr_size(4), len(pred.nodes)) <= 150_000_000


def test_eval_table_has_cost_columns_and_trained_models_beat_bicubic(val_faces):
    """On the clean protocol the clean-trained models gain over 1 dB (the camera-trained student-x4
    is held to its bars by the camera benchmark, docs/camera.md)."""
    report, faces, images, _ = evaluate(["teacher-x4", "student-x4-clean"], val_faces, scale=4)
    rows = {r["model"]: r for r in report["rows"]}
    assert report["faces"] == 12 and set(rows) == {"bicubic", "teacher-x4", "student-x4-clean"}
    assert rows["bicubic"]["params"] is None and rows["bicubic"]["macs_m"] is None
    n_params = count_params(load_model("student-x4-clean").model)
    assert 50_000 < n_params <= 100_000 and rows["student-x4-clean"]["params"] == n_params
    assert rows["teacher-x4"]["params"] > 20 * rows["student-x4-clean"]["params"]
    for name in ("teacher-x4", "student-x4-clean"):
        assert rows[name]["psnr"] > rows["bicubic"]["psnr"] + 1.0
        assert rows[name]["kl"] < rows["bicubic"]["kl"]
    table = markdown_table(report)
    bicubic_line = next(line for line in table.splitlines() if line.startswith("| bicubic "))
    assert bicubic_line.count("—") == 2
    assert f"{n_params:,}" in table
    assert images["student-x4-clean"][0].shape == (12, 128, 128, 3)
    files = sorted(p.name for p in val_faces.glob("*.jpg"))
    assert report["files"] == files
    for r in rows.values():  # every per-face record names its file and the expressions behind its score
        assert [f["file"] for f in r["per_face"]] == files
        assert all(f["agree"] == int(f["expression"] == f["hr_expression"]) for f in r["per_face"])
    assert sum(column(rows["student-x4-clean"], "agree")) / 12 == pytest.approx(rows["student-x4-clean"]["agreement"])
    assert sum(column(rows["student-x4-clean"], "ssim")) / 12 == pytest.approx(rows["student-x4-clean"]["ssim"])


def test_paired_table_compares_every_model_with_the_reference(face_dir):
    report, *_ = evaluate(["student-x4"], face_dir, scale=4, limit=6)
    lines = paired_table(report, 1).splitlines()
    assert lines[0].startswith("| model − student-x4 |") and len(lines) == 3  # header, rule, bicubic
    rows = {r["model"]: r for r in report["rows"]}
    gain = rows["bicubic"]["psnr"] - rows["student-x4"]["psnr"]
    assert lines[2].startswith("| bicubic |") and f"| {gain:+.2f} |" in lines[2]


def test_bundle_and_tflite_files_score_like_the_checkpoint_they_came_from(val_faces):
    """bundle-x4-clean's int8 and fp16 files score like student-x4-clean; the routed bundle-x4 sends
    (nearly all) these sharp protocol faces to its sr_clean_int8 (the same student), so it scores like it too."""
    fp16 = "edge_affectsr/models/bundle-x4-clean/sr_fp16.tflite"
    report, *_ = evaluate(["student-x4-clean", "bundle-x4-clean", str(Path(__file__).parents[2] / fp16), "bundle-x4"],
                          val_faces, scale=4)
    torch_row, int8_row, fp16_row, routed_row = report["rows"][1:]
    assert int8_row["model"] == "bundle-x4-clean (int8)" and int8_row["params"] is None
    assert abs(int8_row["psnr"] - torch_row["psnr"]) < 0.3  # the conversion gate, on these 12 faces
    assert abs(fp16_row["psnr"] - torch_row["psnr"]) < 0.01
    assert routed_row["routed_to_camera"] <= 0.25  # the router is ~95 % right (docs/camera.md): 1 of these 12 goes astray
    assert abs(routed_row["psnr"] - torch_row["psnr"]) < 0.3


def test_upscale_a_folder_of_lr_crops_with_the_bundle(face_dir, tmp_path):
    lr_dir = tmp_path / "lr"
    lr_dir.mkdir()
    for p in sorted(face_dir.glob("*.jpg"))[:3]:
        hr = protocol.make_hr(Image.open(p).convert("RGB"))
        Image.fromarray(protocol.make_lr(hr, 4)).save(lr_dir / f"{p.stem}.png")
    upscale_folder(lr_dir, tmp_path / "sr", "bundle-x4")
    outs = sorted((tmp_path / "sr").glob("*.png"))
    assert [o.name for o in outs] == sorted(p.name for p in lr_dir.glob("*.png"))
    assert all(Image.open(o).size == (128, 128) for o in outs)


def test_the_prior_student_skips_lr_crops_of_another_size(face_dir, tmp_path):
    """Its landmark prior is a 32x32 map: a 40 px crop is counted and skipped, not a crash."""
    lr_dir = tmp_path / "lr"
    lr_dir.mkdir()
    hr = protocol.make_hr(Image.open(sorted(face_dir.glob("*.jpg"))[0]).convert("RGB"))
    Image.fromarray(protocol.make_lr(hr, 4)).save(lr_dir / "x4.png")
    Image.fromarray(protocol.make_lr(hr, 4)).resize((40, 40)).save(lr_dir / "odd.png")
    summary = upscale_folder(lr_dir, tmp_path / "sr", "student-x4")
    assert summary["upscaled"] == 1 and summary["wrong_size"] == 1
    assert [o.name for o in (tmp_path / "sr").glob("*.png")] == ["x4.png"]


def test_paired_reference_must_be_a_compared_model(capsys):
    """Checked before any face is scored: exit 2 with the choices, no traceback."""
    from edge_affectsr.cli import main

    assert main(["eval", "--model", "student-x4", "--paired", "teacher-x4"]) == 2
    err = capsys.readouterr().err
    assert "--paired 'teacher-x4' must be one of the compared models: bicubic, student-x4" in err
    assert "Traceback" not in err


def faces(agree: list[int], psnr: list[float]) -> list[dict]:
    """Per-face records as ``evaluate`` writes them (the fields the tables read)."""
    return [{"file": f"{i}.jpg", "psnr": p, "ssim": 0.8, "agree": a} for i, (a, p) in enumerate(zip(agree, psnr))]


def test_paired_table_tells_rows_with_the_same_name_apart():
    """Two models can share a display name (x/model.pt and x/model.tflite); rows go by position."""
    row = lambda name, agree, psnr: {"model": name, "per_face": faces(agree, psnr)}  # noqa: E731
    report = {"rows": [row("bicubic", [0, 0, 0, 0], [20.0] * 4), row("x/model", [1, 1, 1, 1], [25.0] * 4),
                       row("x/model", [1, 1, 0, 0], [24.0] * 4)]}
    lines = paired_table(report, 1).splitlines()[2:]
    assert [line.split(" | ")[0] for line in lines] == ["| bicubic", "| x/model"]
    assert "| -50.0 |" in lines[1] and "| -1.00 |" in lines[1]  # the other x/model, not itself


def test_mean_landmarks_replace_every_faces_landmarks(face_dir):
    """--mean-landmarks: the graph models see the mean face shape, flagged not found, like a FaceMesh
    failure; a model without landmarks (bicubic) scores exactly as before."""
    real, *_ = evaluate(["student-x4"], face_dir, scale=4, limit=4)
    mean, *_ = evaluate(["student-x4"], face_dir, scale=4, limit=4, mean_landmarks=True)
    assert mean["mean_landmarks"] and mean["landmarks_found_lr"] == 0 < real["landmarks_found_lr"]
    assert mean["rows"][0]["psnr"] == real["rows"][0]["psnr"]  # bicubic
    assert column(mean["rows"][1], "psnr") != column(real["rows"][1], "psnr")


def test_seed_replicas_are_averaged_into_one_row_and_compared_by_their_means():
    """X, seeds/X-s1 and seeds/X-s2 are one group; per-face scores are averaged over seeds before the
    paired comparison, and the range shows how far one seed can sit from another."""
    from edge_affectsr.distill.evaluate import group_index, seed_groups, tables

    def row(name, agree, psnr, kl):
        return {"model": name, "psnr": sum(psnr) / 4, "agreement": sum(agree) / 4, "kl": kl, "ecm": 2 * kl,
                "params": 100, "per_face": faces(agree, psnr)}

    report = {"rows": [row("bicubic", [0, 0, 0, 0], [20.0] * 4, 0.4),
                       row("student-x4", [1, 1, 0, 0], [26.0] * 4, 0.06),
                       row("seeds/student-x4-s1", [1, 1, 1, 1], [27.0] * 4, 0.04),
                       row("student-x4-nograph", [1, 0, 0, 0], [26.0] * 4, 0.05),
                       row("seeds/student-x4-nograph-s1", [1, 0, 0, 0], [25.0] * 4, 0.07)]}
    groups = seed_groups(report)
    rows = {g["model"]: g for g in groups["rows"]}
    assert list(rows) == ["bicubic", "student-x4", "student-x4-nograph"]
    assert rows["student-x4"]["seeds"] == 2 and rows["student-x4"]["agreement"] == pytest.approx(0.75)
    assert rows["student-x4"]["range"]["kl"] == [0.04, 0.06] and rows["student-x4"]["params"] == 100
    assert column(rows["student-x4-nograph"], "psnr") == [25.5] * 4
    assert [f["file"] for f in rows["student-x4"]["per_face"]] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert group_index(groups, "seeds/student-x4-nograph-s1") == 2

    text = tables(report, paired=1, seeds=True)
    seed_part = text.split("Seed means:")[1]
    assert "| student-x4 | 2 | 26.00–27.00 | 0.500–1.000 |" in seed_part
    nograph = next(line for line in seed_part.splitlines() if line.startswith("| student-x4-nograph | -50.0 |"))
    assert "| -1.00 |" in nograph  # 25.5 dB vs 26.5 dB, face by face
    assert report["seed_groups"]["rows"][1]["members"] == ["student-x4", "seeds/student-x4-s1"]


def test_eval_seeds_prints_and_saves_seed_means_of_the_shipped_replicas(face_dir, tmp_path, capsys):
    """The shipped student and its seed-1 replica (edge_affectsr/models/seeds/) through the CLI."""
    from edge_affectsr.cli import main

    replica = str(Path(__file__).parents[2] / "edge_affectsr/models/seeds/student-x4-clean-s1.pt")
    out = tmp_path / "seeds.json"
    assert main(["eval", "--model", "student-x4-clean", "--model", replica, "--paired", "student-x4-clean", "--seeds",
                 "--data", str(face_dir), "--limit", "4", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| seeds/student-x4-clean-s1 |" in printed and "Seed means:" in printed
    assert "| student-x4-clean | 2 |" in printed  # the spread table: two seeds in one group
    groups = json.loads(out.read_text())["seed_groups"]["rows"]
    assert [g["model"] for g in groups] == ["bicubic", "student-x4-clean"]
    assert groups[1]["members"] == ["student-x4-clean", "seeds/student-x4-clean-s1"]


def test_seed_groups_keep_runs_apart_and_refuse_ambiguous_replicas():
    """Two runs' ``a/model`` and ``b/model`` are not seeds of one model; a second seed 1 or a
    replica of another size is an error that names the rows, not a silent average."""
    from edge_affectsr.distill.evaluate import seed_groups, seed_of

    assert seed_of("seeds/student-x4-nograph-s2") == ("student-x4-nograph", 2)
    assert seed_of("runs/a/model") == ("runs/a/model", 0) and seed_of("student-x4") == ("student-x4", 0)

    def row(name, params=100):
        return {"model": name, "psnr": 27.0, "agreement": 0.8, "kl": 0.05, "ecm": 0.5, "params": params,
                "per_face": faces([1, 0], [27.0, 27.0])}

    groups = seed_groups({"rows": [row("a/model"), row("b/model")]})
    assert [g["model"] for g in groups["rows"]] == ["a/model", "b/model"]
    with pytest.raises(UserError, match="x/student-s1 and y/student-s1 are both seed 1 of student"):
        seed_groups({"rows": [row("student"), row("x/student-s1"), row("y/student-s1")]})
    with pytest.raises(UserError, match="replicas of student differ in size: student 100, x/student-s1 120"):
        seed_groups({"rows": [row("student"), row("x/student-s1", params=120)]})


def test_eval_seeds_refuses_a_replica_of_another_model_before_reading_faces(tmp_path, capsys):
    """A no-graph checkpoint saved as student-x4-s9.pt is not a seed of student-x4: exit 2 naming
    both sizes, before the (missing) face folder is even looked at."""
    from edge_affectsr.cli import main

    shutil.copy(Path(__file__).parents[2] / "edge_affectsr/models/student-x4-nograph-clean.pt", tmp_path / "student-x4-s9.pt")
    code = main(["eval", "--model", "student-x4", "--model", str(tmp_path / "student-x4-s9.pt"), "--seeds",
                 "--data", str(tmp_path / "no-such-faces")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    sizes = [count_params(load_model(m).model) for m in ("student-x4", "student-x4-nograph-clean")]
    assert f"the replicas of student-x4 differ in size: student-x4 {sizes[0]:,}" in err
    assert f"student-x4-s9 {sizes[1]:,}" in err


def test_a_class_per_folder_set_is_scored_for_fer_accuracy(tmp_path):
    """Folders named like expressions are labels: the critic's accuracy on HR and on each SR is
    reported (contempt has no critic class: left out of the accuracy, still scored for PSNR)."""
    from edge_affectsr.builtin_face import builtin_face

    face = Image.fromarray(builtin_face())
    for label in ("happy", "sadness", "contempt"):
        (tmp_path / label).mkdir()
        face.save(tmp_path / label / f"{label}.png")
    report, *_ = evaluate(["student-x4"], tmp_path, scale=4)
    assert report["faces"] == 3
    assert report["hr_fer_accuracy"] in (0.0, 0.5)  # the same face labelled happy and sad: one is wrong
    assert all(r["fer_accuracy"] in (0.0, 0.5) for r in report["rows"])
    table = markdown_table(report)
    assert "FER acc." in table
    assert f"| HR (no upscale) | {'— | ' * 9}{report['hr_fer_accuracy']:.3f} |" in table
    per_face = report["rows"][1]["per_face"]
    assert sorted((f["file"], f["label"]) for f in per_face) == [
        ("contempt/contempt.png", "contempt"), ("happy/happy.png", "happy"), ("sadness/sadness.png", "sadness")]
    plain, *_ = evaluate(["student-x4"], tmp_path / "happy", scale=4)
    assert plain["hr_fer_accuracy"] is None and "FER acc." not in markdown_table(plain)
