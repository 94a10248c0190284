"""The edge student: dense GCN == torch-geometric GCNConv, teacher weights carry over, the
deployability rules and the budget hold, the spatial prior puts landmark information where the
landmarks are."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch_geometric.nn import GCNConv

from edge_affectsr import landmark_graph, protocol
from edge_affectsr.distill.archs.complexity import count_macs, count_params
from edge_affectsr.distill.archs.dense_gcn import DenseGCNLayer
from edge_affectsr.distill.archs.depth_to_space import depth_to_space_dcr
from edge_affectsr.distill.archs.student import StudentConfig, StudentSR
from edge_affectsr.distill.archs.student_graph import mean_shape_splat
from edge_affectsr.distill.archs.teacher import AffectSRNet, TeacherConfig

from conftest import shipped_student_model

STUDENTS = ("student_x4", "student_x4_nodistill", "student_x4_nograph")


def shipped(name: str = "student_x4") -> StudentConfig:
    return StudentConfig(**shipped_student_model(name))


@pytest.fixture(scope="module")
def real_landmarks() -> np.ndarray:
    """FaceMesh landmarks [478, 2] of a real face photo: the built-in one."""
    from PIL import Image

    from edge_affectsr.builtin_face import builtin_face
    from edge_affectsr.distill.data.landmarks import FaceMeshDetector

    det = FaceMeshDetector()
    pts = det(protocol.make_hr(Image.fromarray(builtin_face())))
    det.close()
    assert pts is not None and pts.shape == (478, 2)
    return pts


@pytest.mark.parametrize("subset", ["full", "contours"])
def test_dense_layer_equals_gcnconv_on_real_landmarks(real_landmarks, subset):
    torch.manual_seed(0)
    nodes = landmark_graph.subset_nodes(subset)
    x = torch.from_numpy(real_landmarks[nodes]).float()
    feats = torch.cat([x, torch.sin(7 * x), torch.cos(5 * x)], dim=1).unsqueeze(0)  # [1, N, 6]
    conv = GCNConv(6, 16)
    nn.init.normal_(conv.bias)
    dense = DenseGCNLayer(6, 16, subset)
    dense.load_from_gcnconv(conv)
    ref = conv(feats, torch.from_numpy(landmark_graph.edge_index(subset)))
    assert torch.allclose(dense(feats), ref, atol=1e-5)
    assert ref.abs().max() > 0.1  # a real, non-trivial output


def test_teacher_gcn_weights_carry_over_to_dense_layers(real_landmarks):
    torch.manual_seed(1)
    teacher = AffectSRNet(TeacherConfig(nf=8, gc=4, blocks=1, gcn_hidden=12, gcn_layers=2)).eval()
    x = torch.randn(2, 478, 12)
    for conv in teacher.gcn.convs:
        nn.init.normal_(conv.bias)
        dense = DenseGCNLayer(12, 12, "full")
        dense.load_from_gcnconv(conv)
        assert torch.allclose(dense(x), conv(x, teacher.gcn.edge_index), atol=1e-5)


def test_adjacency_is_a_frozen_constant():
    layer = DenseGCNLayer(4, 4, "contours")
    assert not layer.aggregate.weight.requires_grad
    np.testing.assert_array_equal(layer.aggregate.weight.numpy(), landmark_graph.normalized_adjacency("contours"))


def test_depth_to_space_is_dcr_and_anchor_is_nearest_upscale():
    lr = torch.rand(2, 3, 8, 8)
    up = depth_to_space_dcr(torch.cat([lr] * 16, dim=1), 4)
    assert torch.equal(up, nn.functional.interpolate(lr, scale_factor=4, mode="nearest"))
    # DCR: output pixel (h*r+i, w*r+j, c) comes from input channel (i*r + j)*C + c
    x = torch.randn(1, 12, 3, 3)
    y = depth_to_space_dcr(x, 2)
    assert torch.equal(y[0, 1, 2 * 1 + 1, 2 * 2 + 0], x[0, (1 * 2 + 0) * 3 + 1, 1, 2])


def test_depth_to_space_gradient_matches_autograd_of_reshape():
    x = torch.randn(1, 48, 4, 4, requires_grad=True)
    w = torch.randn(1, 3, 16, 16)
    (depth_to_space_dcr(x, 4) * w).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    (x2.view(1, 4, 4, 3, 4, 4).permute(0, 3, 4, 1, 5, 2).reshape(1, 3, 16, 16) * w).sum().backward()
    assert torch.allclose(x.grad, x2.grad)


@pytest.mark.parametrize("name", STUDENTS)
def test_shipped_students_meet_the_budget(name):
    cfg = shipped(name)
    model = StudentSR(cfg)
    params = count_params(model)
    n = len(landmark_graph.subset_nodes(cfg.landmark_subset))
    macs = count_macs(model, 32, n)
    assert params <= 100_000, params
    assert macs <= 150_000_000, macs


@pytest.mark.parametrize("cfg", [StudentConfig(), shipped()], ids=["film", "prior"])
def test_student_uses_only_deployable_layers(cfg):
    allowed = (nn.Conv2d, nn.ReLU, nn.Linear, nn.Sequential, nn.ModuleList)
    model = StudentSR(cfg)
    for name, m in model.named_modules():
        if m is model or type(m).__module__.startswith("edge_affectsr.distill."):
            continue
        assert isinstance(m, allowed), f"{name}: {type(m).__name__} is not int8/Edge-TPU friendly"


def test_splat_weighs_each_node_by_its_mean_shape_distance_to_the_cell():
    w = mean_shape_splat("contours", 8)  # [64 cells, 162 nodes], cells row-major
    centres = (np.stack(np.meshgrid(np.arange(8), np.arange(8), indexing="xy"), -1).reshape(-1, 2) + 0.5) / 8
    dist = np.linalg.norm(centres[:, None] - landmark_graph.mean_shape("contours")[None], axis=-1)
    for cell in range(64):  # within a cell, nearer nodes weigh more
        by_distance = w[cell, np.argsort(dist[cell])]
        assert (np.diff(by_distance) <= 1e-9).all(), cell
    assert w.sum(1).min() < 0.05 < 0.5 < w.sum(1).max()  # cells far from the face stay near 0


def test_prior_puts_a_landmark_change_where_the_landmark_is(real_landmarks):
    """Moving the lips changes the prior in the lower part of the face only: the image branch is
    told where, not just whether (which a pooled, global gate cannot do)."""
    torch.manual_seed(0)
    cfg = shipped()
    model = StudentSR(cfg).eval()
    nn.init.normal_(model.prior.proj.weight, std=0.5)
    nodes = landmark_graph.subset_nodes(cfg.landmark_subset)
    lips = np.isin(nodes, landmark_graph.regions()["lips"])
    lm = torch.from_numpy(real_landmarks[nodes]).float()[None]
    moved = lm.clone()
    moved[0, torch.from_numpy(lips), 1] += 0.03  # mouth opens downwards by ~4 HR pixels
    with torch.no_grad():
        maps = [model.prior(model.graph(x)[2]) for x in (lm, moved)]
    change = (maps[1] - maps[0]).pow(2).sum(dim=(0, 1))  # [32, 32]
    lower = change[20:].sum() / change.sum()
    assert change.sum() > 0 and lower > 0.9, float(lower)


def test_the_student_adds_the_prior_to_its_features(real_landmarks):
    """Through ``forward``: with the prior's projection trained (here: random), where the landmarks
    are changes the SR; at its zero start it does not."""
    torch.manual_seed(3)
    cfg = shipped()
    model = StudentSR(cfg).eval()
    lm = torch.from_numpy(real_landmarks[landmark_graph.subset_nodes(cfg.landmark_subset)]).float()[None]
    lr = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(lr, lm).sr, model(lr, lm + 0.02).sr)  # the prior starts at zero
        nn.init.normal_(model.prior.proj.weight, std=0.5)
        assert (model(lr, lm).sr - model(lr, lm + 0.02).sr).abs().max() > 1e-3


def test_an_added_prior_starts_as_the_identity():
    """A prior added to a trained student (``--init``) leaves its output unchanged at first."""
    torch.manual_seed(2)
    plain = StudentSR(StudentConfig()).eval()
    with_prior = StudentSR(StudentConfig(prior_grid=8)).eval()
    missing = with_prior.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["prior.proj.bias", "prior.proj.weight", "prior.splat.weight"]
    lr, lm = torch.rand(2, 3, 32, 32), torch.rand(2, 162, 2)
    with torch.no_grad():
        assert torch.equal(with_prior(lr, lm).sr, plain(lr, lm).sr)


def test_checkpoints_that_call_the_graph_branch_gate_still_load():
    model = StudentSR(StudentConfig())
    old = {k.replace("graph.", "gate.", 1): v for k, v in model.state_dict().items()}
    assert any(k.startswith("gate.") for k in old)
    StudentSR(StudentConfig()).load_state_dict(old)  # strict: every key found under its new name


@pytest.mark.parametrize("bad, match", [(dict(prior_grid=5), "must divide the LR size 32"),
                                        (dict(film_gate=False), "film_gate or prior_grid")])
def test_inconsistent_graph_settings_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        StudentSR(StudentConfig(**bad))


def test_student_output_is_clipped_and_sized():
    model = StudentSR(StudentConfig())
    out = model(torch.rand(2, 3, 32, 32), torch.rand(2, len(landmark_graph.subset_nodes("contours")), 2))
    assert out.sr.shape == (2, 3, 128, 128)
    assert out.sr.min() >= 0 and out.sr.max() <= 1
    assert out.nodes.shape[:2] == (2, 162)


def test_untrained_student_is_the_nearest_neighbour_anchor_when_tail_is_zero():
    model = StudentSR(StudentConfig())
    nn.init.zeros_(model.tail.weight)
    nn.init.zeros_(model.tail.bias)
    lr = torch.rand(1, 3, 32, 32)
    out = model(lr, torch.rand(1, 162, 2)).sr
    assert torch.allclose(out, nn.functional.interpolate(lr, scale_factor=4, mode="nearest"))
