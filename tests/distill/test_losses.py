"""The loss terms (distill/losses/): a config's ``loss:`` section names registered terms with
weights; the shipped configs and checkpoints keep their meaning; a term that the model or the
command cannot feed is refused when the config is read; the critic runs once per input and step."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from pydantic import TypeAdapter
from torch import nn

from edge_affectsr.config import ConfigError, load_config
from edge_affectsr.distill.archs.output import SROutput
from edge_affectsr.distill.checkpoints import load_checkpoint
from edge_affectsr.distill.losses.config import LossWeights, loss_needs
from edge_affectsr.distill.losses.weighted import WeightedLoss
from edge_affectsr.distill.train_student import StudentTrainingConfig
from edge_affectsr.distill.train_teacher import TeacherTrainingConfig
from edge_affectsr.models import SHIPPED_DIR

CONFIGS = Path(__file__).resolve().parents[2] / "distill" / "configs"
SCHEMAS = {"teacher": TeacherTrainingConfig, "student": StudentTrainingConfig}
LOSS = TypeAdapter(LossWeights)


def write(tmp_path: Path, base: str, loss: dict | None = None, **top) -> Path:
    cfg = yaml.safe_load((CONFIGS / base).read_text())
    if loss is not None:
        cfg["loss"] = loss
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**cfg, **top}, sort_keys=False))
    return path


# --- the old layout: configs and checkpoints written before the registry --------------------------------


def test_old_layout_becomes_terms_in_the_same_order():
    old = {"pixel": 1.0, "pixel_type": "charbonnier", "perceptual": 0.01, "landmark": 1.0, "expression": 0.05}
    assert list(LOSS.validate_python(old).items()) == [
        ("pixel", 1.0), ("perceptual", 0.01), ("landmark", 1.0), ("expression_hr", 0.05)]
    assert LOSS.validate_python({"pixel": 2.0, "pixel_type": "l1", "output": 0.5}) == {"pixel_l1": 2.0, "output": 0.5}


@pytest.mark.parametrize("loss, why", [
    ({"pixel": 1.0, "pixel_type": "l2"}, "pixel_type must be 'charbonnier' or 'l1', got 'l2'"),
    ({"expression": 0.1, "expression_hr": 0.2}, "'expression_hr' is given twice"),
    ({"pixle": 1.0}, r"unknown loss 'pixle' \(known: expression_hr, expression_teacher, feature, graph,"),
])
def test_bad_loss_sections_are_refused(loss, why):
    with pytest.raises(ValueError, match=why):
        LOSS.validate_python(loss)


def shipped_checkpoints() -> list[Path]:
    return sorted(SHIPPED_DIR.glob("*.pt")) + sorted(SHIPPED_DIR.glob("seeds/*.pt"))


@pytest.mark.parametrize("path", shipped_checkpoints(), ids=lambda p: p.stem)
def test_shipped_checkpoints_configs_load_and_mean_what_their_yaml_says(path):
    """Each shipped model's stored config (old loss layout) validates with its command's schema, and
    its loss is the one its shipped YAML now gives: the same terms, weights and order."""
    ckpt = load_checkpoint(path)
    stored = {k: v for k, v in ckpt["config"].items() if k not in ("teacher", "init")}  # added by the command
    cfg = SCHEMAS[ckpt["kind"]].model_validate(stored)
    # seed replicas (student-x4-clean-s1), the clean family and the camera fine-tune were trained from the same YAMLs
    yaml_name = re.sub(r"(-clean|-camera)?(-s\d+)?$", "", path.stem).replace("-", "_")
    shipped = load_config(CONFIGS / f"{yaml_name}.yaml", SCHEMAS[ckpt["kind"]])
    assert list(cfg.loss.items()) == list(shipped.loss.items())
    assert cfg.model == shipped.model


def test_the_old_set_keys_still_work(tmp_path):
    """``--set loss.pixel_type=l1`` on a new-layout file: the pixel term becomes L1, in its place."""
    cfg = load_config(CONFIGS / "teacher_x4.yaml", TeacherTrainingConfig, ["loss.pixel_type=l1", "loss.style=0.5"])
    assert list(cfg.loss) == ["pixel_l1", "perceptual", "style", "landmark", "expression_hr"]
    assert cfg.loss["style"] == 0.5


# --- what a term needs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("base, loss, why", [
    ("teacher_x4.yaml", {"pixel": 1.0, "output": 0.5}, "loss.output needs the teacher's targets"),
    ("student_x4.yaml", {"pixel": 1.0, "landmark": 1.0}, "loss.landmark needs landmark predictions"),
    ("student_x4_nograph.yaml", {"pixel": 1.0, "graph": 0.2}, r"loss.graph needs .*model.use_graph: true"),
    ("teacher_x4_ablation.yaml", {"pixel": 1.0, "landmark": 1.0}, "loss.landmark needs landmark predictions"),
])
def test_a_term_the_run_cannot_feed_is_a_config_error(tmp_path, base, loss, why):
    with pytest.raises(ConfigError, match=why):
        load_config(write(tmp_path, base, loss), SCHEMAS[base.split("_")[0]])


def test_a_term_at_weight_zero_needs_nothing(tmp_path):
    cfg = load_config(write(tmp_path, "teacher_x4_ablation.yaml", {"pixel": 1.0, "landmark": 0.0}), TeacherTrainingConfig)
    assert cfg.loss == {"pixel": 1.0, "landmark": 0.0} and loss_needs(cfg.loss) == frozenset()


def test_what_the_shipped_configs_need():
    needs = {p.stem: loss_needs(yaml.safe_load(p.read_text())["loss"]) for p in CONFIGS.glob("*.yaml")}
    assert needs == {"teacher_x4": {"critic", "lm_pred"}, "teacher_x4_ablation": {"critic"},
                     "student_x4": {"critic", "teacher", "features", "nodes"},
                     "student_x4_nograph": {"critic", "teacher", "features"}, "student_x4_nodistill": {"critic"}}


# --- the weighted sum ---------------------------------------------------------------------------------------


class CountingCritic(nn.Module):
    """A stand-in FER critic (logits from the mean colour, two pooled maps as features) that counts
    its forwards."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 7)
        self.calls: Counter = Counter()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls["logits"] += 1
        return self.fc(x.mean(dim=(2, 3)))

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).softmax(dim=1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.calls["features"] += 1
        return [F.avg_pool2d(x, 2), F.avg_pool2d(x, 4)]


def test_terms_share_the_critics_outputs_and_sum_with_their_weights():
    torch.manual_seed(0)
    critic = CountingCritic()
    weights = {"pixel": 1.0, "expression_teacher": 0.05, "expression_hr": 0.1, "perceptual": 0.01, "style": 2.0}
    sr = torch.rand(2, 3, 16, 16, requires_grad=True)
    batch = {"hr": torch.rand(2, 3, 16, 16), "t_probs": torch.rand(2, 7).softmax(1), "hr_probs": torch.rand(2, 7).softmax(1)}
    total, parts = WeightedLoss(weights, critic)(SROutput(sr=sr), batch)
    assert list(parts) == list(weights)
    assert critic.calls == {"logits": 1, "features": 2}  # SR logits once for both KLs; SR and HR features
    assert total.item() == pytest.approx(sum(w * parts[k] for k, w in weights.items()), rel=1e-6)
    assert parts["pixel"] == pytest.approx(torch.sqrt((sr - batch["hr"]) ** 2 + 1e-6).mean().item())
    total.backward()
    assert sr.grad.abs().sum() > 0


def test_hr_probs_are_computed_where_the_batch_has_none():
    """The teacher's batches: the critic on HR (no gradient) and on SR, once each."""
    critic = CountingCritic()
    sr = torch.rand(2, 3, 16, 16, requires_grad=True)
    hr = torch.rand(2, 3, 16, 16)
    _, parts = WeightedLoss({"expression_hr": 1.0}, critic)(SROutput(sr=sr), {"hr": hr})
    assert critic.calls == {"logits": 2}
    with torch.no_grad():
        expected = F.kl_div(critic(sr).log_softmax(1), critic.probs(hr), reduction="batchmean")
    assert parts["expression_hr"] == pytest.approx(expected.item(), rel=1e-6)


def test_zero_weights_are_left_out_unless_kept():
    loss = WeightedLoss({"pixel": 1.0, "output": 0.0, "landmark": 0.0}, keep=("landmark",))
    assert list(loss.terms) == ["pixel", "landmark"]


def test_critic_terms_need_the_critic():
    with pytest.raises(ValueError, match="perceptual, expression_hr need the FER critic"):
        WeightedLoss({"pixel": 1.0, "perceptual": 0.1, "expression_hr": 0.1})
