"""`edge-affectsr distill` end to end on a few faces (variants of the built-in face,
tests/synthetic_faces.py) with the shipped teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from edge_affectsr.distill.archs.fer_critic import build_fer_critic
from edge_affectsr.distill.checkpoints import CheckpointError, load_checkpoint
from edge_affectsr.runtime.degradation import PRESETS
from edge_affectsr.distill.data.dataset import FaceSRDataset, prepare_faces, to_uint8_image
from edge_affectsr.distill.data.readers import FaceRecord
from edge_affectsr.distill.torch_backend import TorchBackend
from edge_affectsr.distill.train_student import attach_hr_probs, attach_teacher_targets, distill_student
from edge_affectsr.models import resolve_model
from edge_affectsr.runtime.backend import load_model
from synthetic_faces import write_faces

CONFIGS = Path(__file__).resolve().parents[2] / "distill" / "configs"


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> tuple[Path, Path]:
    """A train folder of 8 faces and a val folder of 4 others."""
    root = tmp_path_factory.mktemp("faces")
    write_faces(root / "train", 8)
    write_faces(root / "val", 4, start=8)
    return root / "train", root / "val"


def test_distill_writes_a_student_that_upscales(faces, tmp_path):
    cfg = yaml.safe_load((CONFIGS / "student_x4.yaml").read_text())
    cfg["train"].update(batch_size=4, threads=1, device="cpu", warmup=1)
    config = tmp_path / "student.yaml"
    config.write_text(yaml.safe_dump(cfg))
    result = distill_student(config, "teacher-x4", faces[0], tmp_path / "run", val=faces[1], iterations=2)
    assert result["iterations"] == 2 and result["val_psnr"] > 10
    ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    assert ckpt["kind"] == "student" and ckpt["config"]["teacher"] == "teacher-x4"
    pred = load_model(str(tmp_path / "run" / "model.pt"))
    arrays = prepare_faces([FaceRecord(p) for p in sorted(faces[1].glob("*.jpg"))], 4, desc="val")
    sr = pred(arrays.lr, arrays.lm_lr, arrays.found_lr)
    assert sr.shape == (4, 128, 128, 3)


def test_teacher_targets_match_the_teacher_run_directly(faces):
    arrays = prepare_faces([FaceRecord(p) for p in sorted(faces[0].glob("*.jpg"))], 4, desc="train")
    ds = FaceSRDataset(arrays, "contours")
    teacher = TorchBackend(resolve_model("teacher-x4"))
    attach_teacher_targets(ds, teacher, arrays, build_fer_critic(), "contours", torch.device("cpu"))
    assert ds.extras["t_sr"].shape == (8, 3, 128, 128) and ds.extras["t_sr"].dtype == torch.float16
    assert ds.extras["t_nodes"].shape[:2] == (8, 162)
    sr = teacher(arrays.lr, arrays.lm_lr, arrays.found_lr)  # uint8, straight through the backend
    assert abs(as_uint8(ds.extras["t_sr"]).astype(int) - sr.astype(int)).max() <= 1  # fp16 storage costs at most one level
    probs = ds.extras["t_probs"]
    assert torch.allclose(probs.sum(1), torch.ones(8), atol=1e-5)


def test_privileged_targets_come_from_the_clean_twin_of_each_camera_face(faces):
    """With a camera degradation the student gets the degraded LR and the teacher's targets come
    from the same faces' clean protocol LR (privileged distillation)."""
    arrays = prepare_faces([FaceRecord(p) for p in sorted(faces[0].glob("*.jpg"))[:4]], 4,
                           degradation=PRESETS["camera"], desc="train")
    ds = FaceSRDataset(arrays, "contours")
    teacher = TorchBackend(resolve_model("teacher-x4"))
    attach_teacher_targets(ds, teacher, arrays.clean, build_fer_critic(), "contours", torch.device("cpu"))
    t_sr = as_uint8(ds.extras["t_sr"]).astype(int)
    on_clean = teacher(arrays.clean.lr, arrays.clean.lm_lr, arrays.clean.found_lr).astype(int)
    on_degraded = teacher(arrays.lr, arrays.lm_lr, arrays.found_lr).astype(int)
    assert abs(t_sr - on_clean).max() <= 1
    assert abs(t_sr - on_degraded).mean() > 3  # the student's own input would have given other targets
    np.testing.assert_array_equal(to_uint8_image(ds.lr), arrays.lr)  # the student still sees the camera faces


def test_privileged_targets_are_computed_once_per_face_and_shared_by_its_variants(faces):
    """``data.variants`` renderings of a face share one clean twin: the teacher runs once per face and
    every variant row carries that face's targets."""
    arrays = prepare_faces([FaceRecord(p) for p in sorted(faces[0].glob("*.jpg"))[:3]], 4,
                           degradation=PRESETS["camera"], variants=2, desc="train")
    ds = FaceSRDataset(arrays, "contours")
    teacher = TorchBackend(resolve_model("teacher-x4"))
    attach_teacher_targets(ds, teacher, arrays.clean, build_fer_critic(), "contours", torch.device("cpu"), repeat=2)
    t_sr = as_uint8(ds.extras["t_sr"]).astype(int)
    assert t_sr.shape[0] == len(arrays) == 6
    on_clean = teacher(arrays.clean.lr, arrays.clean.lm_lr, arrays.clean.found_lr).astype(int)
    assert abs(t_sr - on_clean).max() <= 1
    assert abs(t_sr[0] - t_sr[2]).mean() > 3  # rows of different faces differ


def as_uint8(t: torch.Tensor) -> np.ndarray:
    return (t.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def test_control_without_distillation_needs_no_teacher(faces, tmp_path):
    """student_x4_nodistill trains on ground truth and the critic on HR only: no teacher is loaded
    (a teacher name that does not exist is never resolved), and the HR distributions are attached."""
    cfg = yaml.safe_load((CONFIGS / "student_x4_nodistill.yaml").read_text())
    cfg["train"].update(batch_size=4, threads=1, device="cpu", warmup=1)
    config = tmp_path / "nodistill.yaml"
    config.write_text(yaml.safe_dump(cfg))
    result = distill_student(config, "no-such-teacher", faces[0], tmp_path / "run", val=faces[1], iterations=1)
    assert result["iterations"] == 1
    assert load_checkpoint(tmp_path / "run" / "model.pt")["config"]["teacher"] is None


def test_hr_probs_are_the_critics_distribution_on_each_hr_face(faces):
    arrays = prepare_faces([FaceRecord(p) for p in sorted(faces[0].glob("*.jpg"))], 4, desc="train")
    ds = FaceSRDataset(arrays, "contours")
    critic = build_fer_critic()
    attach_hr_probs(ds, critic, torch.device("cpu"), batch=3)  # batches that do not divide 8
    assert torch.allclose(ds.extras["hr_probs"], critic.probs(ds.hr), atol=1e-6)


def test_distill_can_fine_tune_a_shipped_student(faces, tmp_path):
    """--init with the shipped student and --set overrides; the run starts from its weights."""
    config = CONFIGS / "student_x4.yaml"
    sets = ["train.batch_size=4", "train.threads=1", "train.device=cpu", "train.warmup=1", "train.lr=1e-9"]
    distill_student(config, "teacher-x4", faces[0], tmp_path / "run", val=faces[1], iterations=1,
                    overrides=sets, init=resolve_model("student-x4"))
    tuned = load_checkpoint(tmp_path / "run" / "model.pt")
    shipped = load_checkpoint(resolve_model("student-x4"))
    assert tuned["config"]["train"]["lr"] == 1e-9 and tuned["config"]["init"] == str(resolve_model("student-x4"))
    for k, v in shipped["model"].items():  # one step at lr 1e-9 leaves the weights where they were
        assert torch.allclose(tuned["model"][k].float(), v.float(), atol=1e-6), k


@pytest.mark.parametrize("init, why", [("teacher-x4", "'teacher' checkpoint"), ("bundle-x4", "is a folder")])
def test_a_wrong_init_fails_before_any_face_is_loaded(tmp_path, init, why):
    """Checked first: the data folder does not even exist, and the error is about --init."""
    with pytest.raises(CheckpointError, match=why):
        distill_student(CONFIGS / "student_x4.yaml", "teacher-x4", tmp_path / "no-data", tmp_path / "run",
                        init=resolve_model(init))


def test_cached_teacher_targets_are_reused_and_keyed_by_the_inputs(faces, tmp_path):
    """Seeds and controls of one recipe share the clean twins: the second run loads the first's targets
    (identical tensors, no teacher call), and other inputs get their own entry."""
    arrays = prepare_faces([FaceRecord(p) for p in sorted(faces[0].glob("*.jpg"))[:3]], 4, desc="train")
    teacher, critic = TorchBackend(resolve_model("teacher-x4")), build_fer_critic()
    first, second, other = (FaceSRDataset(arrays, "contours") for _ in range(3))
    attach_teacher_targets(first, teacher, arrays, critic, "contours", torch.device("cpu"), cache=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    calls = []
    teacher.model.register_forward_hook(lambda *a: calls.append(1))
    attach_teacher_targets(second, teacher, arrays, critic, "contours", torch.device("cpu"), cache=tmp_path)
    assert not calls
    for k, v in first.extras.items():
        assert torch.equal(v, second.extras[k]), k
    arrays.lr[0, 0, 0] ^= 1  # one LR pixel changes the key
    attach_teacher_targets(other, teacher, arrays, critic, "contours", torch.device("cpu"), cache=tmp_path)
    assert calls and len(list(tmp_path.glob("*.pt"))) == 2
