"""The shared training loop (distill/training.py) and its checkpoints, on a tiny real teacher.

A tiny AffectSRNet trains for a few iterations on face photos made from the built-in face
(tests/synthetic_faces.py; landmarks from FaceMesh, cached in a temp folder), so it runs without data. Checked: exact resume after an interruption, what the checkpoint files hold,
refusal to resume into a different model, and a 2-process CPU (gloo) DDP run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_affectsr.distill.archs.student import StudentConfig, StudentSR
from edge_affectsr.distill.archs.teacher import AffectSRNet, TeacherConfig
from edge_affectsr.distill.checkpoints import FORMAT, VERSION, CheckpointError, load_checkpoint, total_iterations
from edge_affectsr.distill.data.dataset import FaceArrays, FaceSRDataset, prepare_faces
from edge_affectsr.distill.data.landmarks import LandmarkCache
from edge_affectsr.distill.data.readers import FaceRecord
from edge_affectsr.distill.train_config import TrainConfig
from edge_affectsr.distill.train_teacher import TeacherTrainingConfig, make_teacher_loss
from edge_affectsr.distill.training import Run, Trainer, batch_indices, check_init, load_init_weights, lr_at, validate
from synthetic_faces import write_faces

TINY = dict(nf=8, gc=4, blocks=1, hr_nf=4, gcn_hidden=8, gcn_layers=1)
WORKER = Path(__file__).parents[1] / "_ddp_worker.py"


@pytest.fixture(scope="module")
def face_arrays(tmp_path_factory) -> dict[str, FaceArrays]:
    """8 training faces and 4 other validation faces, x4, with FaceMesh landmarks (temp cache)."""
    cache = LandmarkCache(root=tmp_path_factory.mktemp("landmarks"))
    folder = tmp_path_factory.mktemp("faces")
    train, val = write_faces(folder / "train", 8), write_faces(folder / "val", 4, start=8)
    return {
        "train": prepare_faces([FaceRecord(p) for p in train], 4, cache=cache, desc="train"),
        "val": prepare_faces([FaceRecord(p) for p in val], 4, cache=cache, desc="val"),
    }


def teacher_config(iterations: int = 6, model: dict | None = None, **train) -> TeacherTrainingConfig:
    train = {**dict(iterations=iterations, batch_size=2, val_every=3, checkpoint_every=3, warmup=1,
                    threads=1, device="cpu"), **train}
    return TeacherTrainingConfig(model=TeacherConfig(**(model or TINY)), loss={"pixel": 1.0},
                                 train=TrainConfig(**train))


def make_run(cfg: TeacherTrainingConfig, faces: dict[str, FaceArrays], out_dir: Path, seed: int = 0,
             stop_at_call: int | None = None, kind: str = "teacher") -> tuple[Run, list[int]]:
    """A Run of the tiny teacher with the real pixel-only teacher loss. With ``stop_at_call`` the loss
    raises KeyboardInterrupt on that call (1-based), as a Ctrl-C in the middle of training would."""
    torch.manual_seed(seed)
    model = AffectSRNet(cfg.model)
    teacher_loss, criterion = make_teacher_loss(cfg)
    assert criterion.critic is None  # pixel-only: no FER critic needed
    calls: list[int] = []

    def loss_fn(m, batch):
        calls.append(1)
        if stop_at_call is not None and len(calls) == stop_at_call:
            raise KeyboardInterrupt
        return teacher_loss(m, batch)

    run = Run(kind=kind, config=cfg.model_dump(mode="json"), model=model, loss_fn=loss_fn,
              train_set=FaceSRDataset(faces["train"]),
              val_set=FaceSRDataset(faces["val"]), out_dir=out_dir)
    return run, calls


def state_close(a: dict, b: dict, atol: float = 1e-6) -> bool:
    assert a.keys() == b.keys()
    return all(torch.allclose(a[k].float(), b[k].float(), atol=atol, rtol=0) for k in a)


@pytest.fixture(scope="module")
def straight_run(face_arrays, tmp_path_factory):
    """Run A: 6 iterations without interruption."""
    out = tmp_path_factory.mktemp("run_a")
    cfg = teacher_config()
    run, calls = make_run(cfg, face_arrays, out)
    trainer = Trainer(run, cfg.train)
    result = trainer.fit()
    return trainer, result, out, calls


# --- pure helpers -----------------------------------------------------------------------------------


def test_lr_schedule_warms_up_then_decays_to_lr_min():
    cfg = TrainConfig(iterations=100, warmup=10, lr=1e-3, lr_min=1e-5)
    assert lr_at(0, cfg) == pytest.approx(1e-4)  # (0 + 1) / 10 of the peak
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(10, cfg) == pytest.approx(1e-3)  # cosine starts at the peak
    assert lr_at(55, cfg) == pytest.approx((1e-3 + 1e-5) / 2)  # half-way: cos = 0
    assert lr_at(100, cfg) == pytest.approx(1e-5)
    assert lr_at(150, cfg) == pytest.approx(1e-5)  # past the end stays at the floor
    lrs = [lr_at(i, cfg) for i in range(10, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_batches_cover_each_epoch_once_and_ranks_are_disjoint():
    cfg = TrainConfig(batch_size=3, seed=5)
    n, world = 20, 2  # 20 // (3 * 2) = 3 steps per epoch, 2 faces dropped
    for epoch in range(2):
        seen = []
        for step in range(3):
            it = epoch * 3 + step
            per_rank = [batch_indices(n, it, cfg, r, world).tolist() for r in range(world)]
            assert all(len(b) == 3 for b in per_rank)
            seen += per_rank[0] + per_rank[1]
        assert len(seen) == len(set(seen)) == 18
        assert set(seen) <= set(range(n))
    # reproducible, and a different epoch is a different permutation
    assert torch.equal(batch_indices(n, 0, cfg, 0, 1), batch_indices(n, 0, cfg, 0, 1))
    assert not torch.equal(batch_indices(n, 0, cfg, 0, 1), batch_indices(n, 6, cfg, 0, 1))


# --- training, checkpoints, resume --------------------------------------------------------------------


def test_real_faces_prepared_for_training(face_arrays):
    assert len(face_arrays["train"]) == 8 and len(face_arrays["val"]) == 4
    assert face_arrays["train"].found_hr.all()


def test_straight_run_trains_and_writes_checkpoints(straight_run, face_arrays):
    trainer, result, out, calls = straight_run
    assert result["iterations"] == 6 and len(calls) == 6
    assert np.isfinite(result["val_psnr"]) and result["best_val_psnr"] >= result["val_psnr"]
    # no temp files left (train.log is the command's: tests/distill/test_run_folder.py)
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "config.yaml", "last.pt", "metrics.csv", "model.pt"]

    last = load_checkpoint(out / "last.pt", kinds=("teacher",))
    shipped = load_checkpoint(out / "model.pt", kinds=("teacher",))
    assert "train_state" in last and "train_state" not in shipped
    assert last["iteration"] == shipped["iteration"] == 6
    assert last["config"]["model"] == TeacherConfig(**TINY).model_dump(mode="json")
    assert state_close(shipped["model"], trainer.ema.state_dict(), atol=0)  # shipped = EMA weights
    assert state_close(last["train_state"]["model"], trainer.model.state_dict(), atol=0)

    # The shipped weights load into a fresh network, and the metric stored with them is theirs.
    model = AffectSRNet(TeacherConfig(**TINY))
    model.load_state_dict(shipped["model"])
    run, _ = make_run(teacher_config(), face_arrays, out)
    assert validate(run, model, torch.device("cpu"))["val_psnr"] == pytest.approx(shipped["metrics"]["val_psnr"], abs=1e-9)


def test_training_changes_the_weights(straight_run, face_arrays, tmp_path):
    trainer, *_ = straight_run
    run, _ = make_run(teacher_config(), face_arrays, tmp_path)  # same seed: the initial weights
    initial = run.model.state_dict()
    moved = [k for k in initial if not torch.equal(initial[k], trainer.model.state_dict()[k])]
    assert len(moved) > len(initial) // 2


def test_interrupted_run_resumes_exactly(straight_run, face_arrays, tmp_path):
    trainer_a, result_a, out_a, _ = straight_run
    cfg = teacher_config()

    # Run B, leg 1: Ctrl-C during iteration 4, after the checkpoint written at iteration 3.
    run, calls = make_run(cfg, face_arrays, tmp_path, stop_at_call=4)
    with pytest.raises(KeyboardInterrupt):
        Trainer(run, cfg.train).fit()
    assert len(calls) == 4
    assert load_checkpoint(tmp_path / "last.pt")["iteration"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    # Leg 2: a new process would build a new model (different random init here) and a new Trainer.
    run, calls = make_run(cfg, face_arrays, tmp_path, seed=12345)
    trainer_b = Trainer(run, cfg.train)
    result_b = trainer_b.fit()
    assert len(calls) == 3  # iterations 4, 5, 6 only
    assert result_b["iterations"] == 6

    assert state_close(trainer_b.model.state_dict(), trainer_a.model.state_dict())
    assert state_close(trainer_b.ema.state_dict(), trainer_a.ema.state_dict())
    assert result_b["val_psnr"] == pytest.approx(result_a["val_psnr"], abs=1e-6)
    assert result_b["best_val_psnr"] == pytest.approx(result_a["best_val_psnr"], abs=1e-6)
    shipped_a, shipped_b = torch.load(out_a / "model.pt"), torch.load(tmp_path / "model.pt")
    assert state_close(shipped_b["model"], shipped_a["model"])


def test_finished_run_does_not_train_again(straight_run, face_arrays, tmp_path):
    *_, out_a, _ = straight_run
    shutil.copy(out_a / "last.pt", tmp_path / "last.pt")
    cfg = teacher_config()
    run, calls = make_run(cfg, face_arrays, tmp_path, seed=7)
    result = Trainer(run, cfg.train).fit()
    assert calls == [] and result["iterations"] == 6


def test_resume_with_a_different_model_config_is_refused(straight_run, face_arrays, tmp_path):
    *_, out_a, _ = straight_run
    shutil.copy(out_a / "last.pt", tmp_path / "last.pt")
    before = (tmp_path / "last.pt").read_bytes()
    cfg = teacher_config(model={**TINY, "nf": 12})
    run, calls = make_run(cfg, face_arrays, tmp_path)
    with pytest.raises(ValueError, match="different model config"):
        Trainer(run, cfg.train).fit()
    assert calls == []
    assert (tmp_path / "last.pt").read_bytes() == before


def test_resume_into_another_kind_is_refused(straight_run, face_arrays, tmp_path):
    *_, out_a, _ = straight_run
    shutil.copy(out_a / "last.pt", tmp_path / "last.pt")
    cfg = teacher_config()
    run, _ = make_run(cfg, face_arrays, tmp_path, kind="student")
    with pytest.raises(CheckpointError, match="'teacher' checkpoint"):
        Trainer(run, cfg.train).fit()


def test_init_starts_a_new_run_from_a_checkpoints_weights(straight_run, face_arrays, tmp_path):
    trainer_a, _, out_a, _ = straight_run
    cfg = teacher_config(iterations=0)
    run, calls = make_run(cfg, face_arrays, tmp_path / "ft", seed=99)
    trainer = Trainer(run, cfg.train, init=out_a / "model.pt")
    trainer.fit()
    assert calls == []
    assert state_close(trainer.model.state_dict(), trainer_a.ema.state_dict(), atol=0)
    assert state_close(trainer.ema.state_dict(), trainer_a.ema.state_dict(), atol=0)


def test_a_fine_tune_counts_the_iterations_behind_its_init(straight_run, face_arrays, tmp_path):
    """6 iterations from scratch, then 2 from those weights: the checkpoint says 8 in all (a bundle's
    version), also after an interrupted fine-tune resumes."""
    *_, out_a, _ = straight_run
    assert total_iterations(load_checkpoint(out_a / "model.pt")) == 6
    cfg = teacher_config(iterations=2, checkpoint_every=1)
    run, _ = make_run(cfg, face_arrays, tmp_path, stop_at_call=2)
    run.config["init"] = str(out_a / "model.pt")  # as the training commands record it
    with pytest.raises(KeyboardInterrupt):
        Trainer(run, cfg.train, init=out_a / "model.pt").fit()
    assert total_iterations(load_checkpoint(tmp_path / "last.pt")) == 7
    run, _ = make_run(cfg, face_arrays, tmp_path)
    Trainer(run, cfg.train).fit()  # resumed without --init: the lineage comes from the run itself
    ckpt = load_checkpoint(tmp_path / "model.pt")
    assert ckpt["iteration"] == 2 and total_iterations(ckpt) == 8
    assert ckpt["config"]["init"] == str(out_a / "model.pt")


def test_init_is_ignored_when_the_run_can_resume(straight_run, face_arrays, tmp_path):
    trainer_a, _, out_a, _ = straight_run
    shutil.copy(out_a / "last.pt", tmp_path / "last.pt")
    other = teacher_config(iterations=2)
    run_o, _ = make_run(other, face_arrays, tmp_path / "other", seed=5)
    Trainer(run_o, other.train).fit()  # a different 2-iteration run to offer as --init
    cfg = teacher_config()
    run, calls = make_run(cfg, face_arrays, tmp_path, seed=7)
    trainer = Trainer(run, cfg.train, init=tmp_path / "other" / "model.pt")
    trainer.fit()
    assert calls == []  # resumed the finished run; the init weights were not loaded
    assert state_close(trainer.ema.state_dict(), trainer_a.ema.state_dict())


def test_init_with_a_different_model_config_is_refused(straight_run, face_arrays, tmp_path):
    *_, out_a, _ = straight_run
    cfg = teacher_config(model={**TINY, "nf": 12})
    run, calls = make_run(cfg, face_arrays, tmp_path)
    with pytest.raises(CheckpointError, match="fine-tuning needs the same model section"):
        Trainer(run, cfg.train, init=out_a / "model.pt").fit()
    assert calls == [] and not (tmp_path / "last.pt").exists()


def _student_checkpoint(path: Path, cfg: StudentConfig) -> dict:
    torch.manual_seed(0)
    ckpt = {"format": FORMAT, "version": VERSION, "kind": "student", "config": {"model": cfg.model_dump()},
            "model": StudentSR(cfg).state_dict(), "iteration": 5}
    torch.save(ckpt, path)
    return ckpt


def test_init_may_add_and_leave_out_branches(tmp_path):
    """A FiLM-gated student starts a spatial-prior one: shared weights carried over, the prior new
    (at its zero start), the gate dropped; both named for the log."""
    ckpt = _student_checkpoint(tmp_path / "film.pt", StudentConfig())
    grown = StudentConfig(film_gate=False, prior_grid=8)
    check_init(tmp_path / "film.pt", "student", {"model": grown.model_dump()})
    model = StudentSR(grown)
    new, dropped = load_init_weights(model, ckpt)
    assert sorted(new) == ["prior.proj.bias", "prior.proj.weight", "prior.splat.weight"]
    assert sorted(dropped) == ["graph.pool.weight", "graph.to_gate.bias", "graph.to_gate.weight",
                               "graph.to_shift.bias", "graph.to_shift.weight"]
    assert not model.prior.proj.weight.any()
    for key, value in model.state_dict().items():
        if key in ckpt["model"]:
            assert torch.equal(value, ckpt["model"][key]), key


@pytest.mark.parametrize("change", [dict(channels=24), dict(blocks=6), dict(gcn_layers=3)])
def test_init_with_another_architecture_is_refused_before_any_data(tmp_path, change):
    """Only branch switches may differ: more blocks or GCN layers would start random, not as the identity."""
    _student_checkpoint(tmp_path / "c28.pt", StudentConfig())
    key = next(iter(change))
    with pytest.raises(CheckpointError, match=f"differs from this run's in {key}; fine-tuning needs the same"):
        check_init(tmp_path / "c28.pt", "student", {"model": StudentConfig(**change).model_dump()})


# --- DDP -------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _save_faces(faces: dict[str, FaceArrays], path: Path) -> None:
    arrays = {}
    for prefix, fa in faces.items():
        for key in ("names", "hr", "lr", "lm_lr", "lm_hr", "found_lr", "found_hr"):
            arrays[f"{prefix}_{key}"] = np.asarray(getattr(fa, key))
    np.savez(path, **arrays)


@pytest.mark.slow
def test_ddp_two_cpu_ranks_stay_in_sync(face_arrays, tmp_path, monkeypatch):
    """Two gloo ranks start from *different* random weights (rank-dependent seed, see the worker);
    DDP must broadcast rank 0's weights and average the gradients, so both ranks end identical, equal
    to one process training on the union of their batches, and only rank 0 writes checkpoints.
    Pixel-only loss: the landmark head gets no gradient, which DDP has to tolerate."""
    iterations = 2
    faces = tmp_path / "faces.npz"
    _save_faces(face_arrays, faces)
    out = tmp_path / "out"
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "CUDA_VISIBLE_DEVICES": ""}
        procs.append(subprocess.Popen(
            [sys.executable, str(WORKER), str(faces), str(out), str(tmp_path), str(iterations)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=150)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for rank, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"rank {rank} failed:\n{log[-3000:]}"

    w0, w1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert w0["result"]["iterations"] == w1["result"]["iterations"] == iterations
    assert state_close(w0["model"], w1["model"], atol=0)
    assert state_close(w0["ema"], w1["ema"], atol=0)
    assert np.isfinite(w0["result"]["val_psnr"])  # rank 0 validated

    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "config.yaml", "last.pt", "metrics.csv", "model.pt"]
    ckpt = load_checkpoint(out / "last.pt", kinds=("teacher",))
    assert ckpt["iteration"] == iterations
    assert state_close(ckpt["train_state"]["model"], w0["model"], atol=0)

    # One process with rank 0's initial weights and the two ranks' batches together.
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = teacher_config(iterations=iterations, batch_size=4, val_every=1, checkpoint_every=1)
    run, _ = make_run(cfg, face_arrays, tmp_path / "single", seed=1000)  # the worker's rank-0 seed
    single = Trainer(run, cfg.train)
    single.fit()
    assert state_close(single.model.state_dict(), w0["model"], atol=1e-5)
