"""The architecture registry (distill/archs/): a config's and a checkpoint's ``kind`` names a
registered network; a wrong name fails when the config is read; shipped checkpoints still build."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from edge_affectsr import landmark_graph
from edge_affectsr.config import ConfigError, load_config
from edge_affectsr.distill.archs.build import build_sr_model
from edge_affectsr.distill.archs.registry import ARCH_REGISTRY
from edge_affectsr.distill.archs.student import StudentConfig
from edge_affectsr.distill.archs.teacher import TeacherConfig
from edge_affectsr.distill.checkpoints import load_checkpoint
from edge_affectsr.distill.train_student import StudentTrainingConfig, distill_student
from edge_affectsr.distill.train_teacher import TeacherTrainingConfig
from edge_affectsr.models import SHIPPED_DIR
from edge_affectsr.registry import RegistryError

CONFIGS = Path(__file__).resolve().parents[2] / "distill" / "configs"


def test_the_registered_architectures():
    assert list(ARCH_REGISTRY) == ["student", "teacher"]
    assert ARCH_REGISTRY.get("teacher").config_class is TeacherConfig
    assert ARCH_REGISTRY.get("student").config_class is StudentConfig


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(RegistryError, match=r"unknown architecture 'teachr' \(known: student, teacher\)"):
        build_sr_model("teachr", {})


@pytest.mark.parametrize("path", sorted(SHIPPED_DIR.glob("*.pt")) + sorted(SHIPPED_DIR.glob("seeds/*.pt")),
                         ids=lambda p: p.stem)
def test_shipped_checkpoints_build_from_their_kind_and_load_strictly(path):
    ckpt = load_checkpoint(path)
    model = build_sr_model(ckpt["kind"], ckpt["config"]["model"])
    model.load_state_dict(ckpt["model"], strict=True)


@pytest.mark.parametrize("kind, cfg", [("teacher", dict(nf=8, gc=4, blocks=1, gcn_hidden=8, gcn_layers=1)),
                                       ("teacher", dict(nf=8, gc=4, blocks=1, use_graph=False)),
                                       ("student", {}), ("student", dict(use_graph=False, film_gate=False))])
def test_outputs_say_what_the_forward_fills(kind, cfg):
    """The loss checks rely on ``outputs``: it must match what the network returns."""
    model = build_sr_model(kind, cfg).eval()
    n = len(landmark_graph.subset_nodes(model.cfg.landmark_subset))
    with torch.no_grad():
        out = model(torch.rand(1, 3, 32, 32), torch.rand(1, n, 2))
    filled = {f for f in ("features", "nodes", "lm_pred") if getattr(out, f) is not None}
    assert filled == model.cfg.outputs


@pytest.mark.parametrize("schema, base, kind, why", [
    (TeacherTrainingConfig, "teacher_x4.yaml", "teachr", r"kind: .*unknown architecture 'teachr' \(known: student, teacher\)"),
    (TeacherTrainingConfig, "teacher_x4.yaml", "student", "this command trains the 'teacher' architecture, not 'student'"),
    (StudentTrainingConfig, "student_x4.yaml", "teacher", "this command trains the 'student' architecture, not 'teacher'"),
])
def test_a_wrong_kind_is_a_config_error(tmp_path, schema, base, kind, why):
    cfg = yaml.safe_load((CONFIGS / base).read_text()) | {"kind": kind}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=why):
        load_config(tmp_path / "c.yaml", schema)


def test_a_kind_typo_fails_before_any_face_is_loaded(tmp_path):
    """The data folder does not even exist: the config is checked first."""
    cfg = yaml.safe_load((CONFIGS / "student_x4.yaml").read_text()) | {"kind": "studnet"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="unknown architecture 'studnet'"):
        distill_student(tmp_path / "c.yaml", "teacher-x4", tmp_path / "no-data", tmp_path / "run")
