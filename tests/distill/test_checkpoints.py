"""distill/checkpoints.py: atomic writes and clear refusals of the wrong file."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from edge_affectsr.distill.checkpoints import (
    FORMAT,
    VERSION,
    CheckpointError,
    inference_checkpoint,
    load_checkpoint,
    save_atomic,
)
from edge_affectsr.distill.checkpoints import main as checkpoints_main


def checkpoint(kind: str = "teacher", **extra) -> dict:
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(lin.parameters())
    lin(torch.randn(2, 4)).sum().backward()
    opt.step()
    return {"format": FORMAT, "version": VERSION, "kind": kind, "config": {"model": {"nf": 4}},
            "model": lin.state_dict(), "iteration": 7, "metrics": {"val_psnr": 25.0},
            "train_state": {"optimizer": opt.state_dict(), "numpy_rng": np.random.get_state()}, **extra}


def test_round_trip(tmp_path):
    ckpt = checkpoint()
    save_atomic(ckpt, tmp_path / "sub" / "last.pt")  # creates the folder
    back = load_checkpoint(tmp_path / "sub" / "last.pt")
    assert back["kind"] == "teacher" and back["iteration"] == 7 and back["config"] == ckpt["config"]
    for k, v in ckpt["model"].items():
        assert torch.equal(back["model"][k], v)
    assert back["train_state"]["optimizer"]["state"][0]["step"] == 1
    assert load_checkpoint(tmp_path / "sub" / "last.pt", kinds=("teacher",))["kind"] == "teacher"


def test_save_leaves_no_temp_files(tmp_path):
    path = tmp_path / "model.pt"
    for i in range(3):  # overwriting too
        save_atomic(checkpoint(iteration=i), path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    assert load_checkpoint(path)["iteration"] == 2


def test_interrupted_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "last.pt"
    save_atomic(checkpoint(), path)
    before = path.read_bytes()
    broken = checkpoint(iteration=8, hook=lambda x: x)  # a lambda cannot be pickled
    with pytest.raises((pickle.PicklingError, AttributeError), match="pickle"):
        save_atomic(broken, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert load_checkpoint(path)["iteration"] == 7


def test_interrupted_first_save_leaves_nothing(tmp_path):
    with pytest.raises((pickle.PicklingError, AttributeError), match="pickle"):
        save_atomic({"bad": lambda: 0}, tmp_path / "new.pt")
    assert list(tmp_path.iterdir()) == []


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a folder .a model bundle.., not a checkpoint file"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("obj", [{"model": {}}, torch.zeros(3), {"format": "something-else", "kind": "teacher"}],
                         ids=["plain-dict", "tensor", "other-format"])
def test_torch_file_that_is_not_a_checkpoint(tmp_path, obj):
    torch.save(obj, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not an edge-affectsr checkpoint"):
        load_checkpoint(tmp_path / "x.pt")


def test_wrong_kind(tmp_path):
    save_atomic(checkpoint(kind="student"), tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="'student' checkpoint"):
        load_checkpoint(tmp_path / "s.pt", kinds=("teacher",))
    assert load_checkpoint(tmp_path / "s.pt")["kind"] == "student"  # the default accepts both


def test_newer_version(tmp_path):
    save_atomic(checkpoint(version=VERSION + 1), tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(tmp_path / "future.pt")


@pytest.mark.parametrize("data", [b"", b"garbage" * 100, np.random.default_rng(0).bytes(5000)],
                         ids=["empty", "text", "random"])
def test_garbage_bytes(tmp_path, data):
    (tmp_path / "g.pt").write_bytes(data)
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_checkpoint(tmp_path / "g.pt")


def test_truncated_checkpoint(tmp_path):
    save_atomic(checkpoint(), tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "half.pt")


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


def test_inference_checkpoint_drops_only_the_train_state():
    ckpt = checkpoint()
    shipped = inference_checkpoint(ckpt)
    assert "train_state" not in shipped
    assert set(shipped) == set(ckpt) - {"train_state"}
    assert shipped["model"] is ckpt["model"] and "train_state" in ckpt  # the original is untouched


def test_half_precision_checkpoint_loads_into_the_fp32_model(tmp_path):
    model = torch.nn.Conv2d(3, 4, 3)
    ckpt = {"format": FORMAT, "version": VERSION, "kind": "teacher", "model": model.state_dict(),
            "train_state": {"optimizer": 1}}
    src, dst = tmp_path / "full.pt", tmp_path / "half.pt"
    save_atomic(ckpt, src)
    checkpoints_main([str(src), str(dst)])
    half = load_checkpoint(dst)
    assert "train_state" not in half and half["model"]["weight"].dtype == torch.float16
    fresh = torch.nn.Conv2d(3, 4, 3)
    fresh.load_state_dict(half["model"])
    assert fresh.weight.dtype == torch.float32
    assert torch.allclose(fresh.weight, model.weight, atol=1e-3)
