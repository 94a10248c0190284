"""edge_affectsr/landmark_graph.py: the face-mesh graph every stage shares, and the normalised
adjacency the student multiplies by, checked against torch-geometric's GCNConv (the teacher's)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from edge_affectsr import landmark_graph as lg

SUBSETS = ("full", "contours")


def dense_from_edge_index(ei: np.ndarray, n: int) -> np.ndarray:
    a = np.zeros((n, n))
    np.add.at(a, (ei[0], ei[1]), 1.0)
    return a


def kipf_normalised(a: np.ndarray) -> np.ndarray:
    """D^-1/2 (A + I) D^-1/2, written out with explicit matrices."""
    a_hat = a + np.eye(len(a))
    d_inv_sqrt = np.diag(1.0 / np.sqrt(a_hat.sum(axis=1)))
    return d_inv_sqrt @ a_hat @ d_inv_sqrt


def test_node_count_and_subsets():
    assert lg.NUM_LANDMARKS == 478
    full = lg.subset_nodes("full")
    assert np.array_equal(full, np.arange(478))
    contours = lg.subset_nodes("contours")
    assert set(contours) < set(full)  # strict subset
    assert np.all(np.diff(contours) > 0)  # sorted, no repeats
    assert set(contours) == {i for nodes in lg.regions().values() for i in nodes}
    for subset in SUBSETS:
        n = len(lg.subset_nodes(subset))
        assert lg.adjacency(subset).shape == (n, n)
        assert lg.mean_shape(subset).shape == (n, 2)


def test_unknown_subset_raises():
    for f in (lg.subset_nodes, lg.edges, lg.adjacency, lg.normalized_adjacency, lg.mean_shape):
        with pytest.raises(ValueError, match="unknown landmark subset"):
            f("eyes_only")


def test_full_graph_is_connected_and_contours_are_not_isolated_points():
    n_comp, _ = connected_components(sp.csr_matrix(lg.adjacency("full")), directed=False)
    assert n_comp == 1
    # every contour node has at least one neighbour inside its subset
    assert (lg.adjacency("contours").sum(axis=1) > 0).all()


@pytest.mark.parametrize("subset", SUBSETS)
def test_adjacency_symmetric_binary_no_self_loops(subset):
    a = lg.adjacency(subset)
    assert np.array_equal(a, a.T)
    assert set(np.unique(a)) == {0.0, 1.0}
    assert not np.diag(a).any()
    e = lg.edges(subset)
    assert (e[:, 0] != e[:, 1]).all()
    assert len({tuple(sorted(p)) for p in e.tolist()}) == len(e)  # each undirected edge once
    assert a.sum() == 2 * len(e)


@pytest.mark.parametrize("subset", SUBSETS)
def test_edge_index_has_both_directions(subset):
    e = lg.edges(subset)
    ei = lg.edge_index(subset)
    assert ei.shape == (2, 2 * len(e)) and ei.dtype == np.int64
    pairs = set(map(tuple, ei.T.tolist()))
    assert len(pairs) == ei.shape[1]
    assert all((b, a) in pairs for a, b in pairs)
    assert np.array_equal(dense_from_edge_index(ei, len(lg.subset_nodes(subset))), lg.adjacency(subset))


def test_contour_edges_are_the_induced_subgraph_of_the_full_mesh():
    nodes = lg.subset_nodes("contours")
    full_edges = {tuple(sorted(p)) for p in lg.edges("full").tolist()}
    keep = set(nodes.tolist())
    induced = {p for p in full_edges if p[0] in keep and p[1] in keep}
    local = {tuple(sorted((int(nodes[a]), int(nodes[b])))) for a, b in lg.edges("contours")}
    assert local == induced


@pytest.mark.parametrize("subset", SUBSETS)
def test_normalized_adjacency(subset):
    a_norm = lg.normalized_adjacency(subset)
    assert a_norm.dtype == np.float32
    ref = kipf_normalised(dense_from_edge_index(lg.edge_index(subset), len(lg.subset_nodes(subset))))
    np.testing.assert_allclose(a_norm, ref, atol=1e-6)
    assert np.allclose(a_norm, a_norm.T, atol=0)
    eig = np.linalg.eigvalsh(a_norm.astype(np.float64))
    assert np.abs(eig).max() <= 1 + 1e-5
    # the top eigenvalue of D^-1/2 (A+I) D^-1/2 is exactly 1 (eigenvector D^1/2 1)
    assert eig.max() == pytest.approx(1.0, abs=1e-5)


def test_regions_hold_the_expected_mediapipe_nodes():
    r = lg.regions()
    assert tuple(r) == lg.REGION_NAMES
    assert {0, 13, 14, 17, 61, 291} <= set(r["lips"])  # upper/lower lip centre, mouth corners
    assert 468 in r["right_iris"] and 473 in r["left_iris"]  # iris centres
    assert set(r["right_iris"]) == set(range(468, 473)) and set(r["left_iris"]) == set(range(473, 478))
    assert {33, 133} <= set(r["right_eye"]) and {263, 362} <= set(r["left_eye"])  # eye corners
    assert 1 in r["nose"] and {10, 152} <= set(r["face_oval"])  # nose tip, forehead top, chin
    for nodes in r.values():
        assert all(0 <= i < 478 for i in nodes)
    # the two eyes (and brows, irises) are mirror halves: disjoint and the same size
    for left, right in (("left_eye", "right_eye"), ("left_brow", "right_brow"), ("left_iris", "right_iris")):
        assert not set(r[left]) & set(r[right]) and len(r[left]) == len(r[right])


def test_adjacency_hash_is_stable_and_tells_subsets_apart():
    h = lg.adjacency_hash("full")
    assert re.fullmatch(r"[0-9a-f]{64}", h)
    assert lg.adjacency_hash("full") == h
    assert lg.adjacency_hash("contours") != h


def test_mean_shape_is_a_face():
    ms = lg.mean_shape()
    assert ms.dtype == np.float32
    assert ms.min() >= 0.0 and ms.max() <= 1.0
    r = lg.regions()
    x = lambda name: ms[r[name], 0].mean()  # noqa: E731
    y = lambda name: ms[r[name], 1].mean()  # noqa: E731
    # mediapipe's "left" is the subject's left: the image's right
    assert x("left_eye") > x("right_eye") and x("left_brow") > x("right_brow")
    assert x("left_iris") > x("right_iris")
    assert ms[473, 0] > ms[468, 0]
    # top to bottom: brows, eyes, nose tip, mouth, chin
    assert y("left_brow") < y("left_eye") < ms[1, 1] < y("lips") < ms[152, 1]
    # the iris centre sits inside its eye's bounding box
    for iris, eye in ((473, "left_eye"), (468, "right_eye")):
        pts = ms[r[eye]]
        assert (pts.min(axis=0) < ms[iris]).all() and (ms[iris] < pts.max(axis=0)).all()
    np.testing.assert_array_equal(lg.mean_shape("contours"), ms[lg.subset_nodes("contours")])


# --- the teacher's GCNConv computes the same constant ------------------------------------------------


@pytest.mark.parametrize("subset", SUBSETS)
def test_gcnconv_equals_dense_normalised_adjacency_product(subset):
    torch = pytest.importorskip("torch")
    gnn = pytest.importorskip("torch_geometric.nn")
    torch.manual_seed(0)
    n = len(lg.subset_nodes(subset))
    conv = gnn.GCNConv(6, 5)
    torch.nn.init.normal_(conv.bias)  # torch-geometric starts the bias at 0: make it count
    # landmark features: the mean shape plus per-face noise, and a few derived channels
    xy = torch.from_numpy(lg.mean_shape(subset))[None].repeat(3, 1, 1) + 0.01 * torch.randn(3, n, 2)
    x = torch.cat([xy, xy**2, xy.prod(-1, keepdim=True), torch.ones(3, n, 1)], dim=-1)  # [B, N, 6]
    out = conv(x, torch.from_numpy(lg.edge_index(subset)))
    a = torch.from_numpy(lg.normalized_adjacency(subset))
    dense = a @ (x @ conv.lin.weight.T) + conv.bias
    assert out.shape == (3, n, 5)
    assert torch.allclose(out, dense, atol=1e-5)


def test_teacher_landmark_gcn_layer_is_the_dense_formula():
    """The teacher's own residual GCN block, on the edge list it registers, against the constant."""
    torch = pytest.importorskip("torch")
    graph = pytest.importorskip("edge_affectsr.distill.archs.graph")
    torch.manual_seed(1)
    gcn = graph.LandmarkGCN(8, 1, torch.from_numpy(lg.edge_index("full")))
    for p in gcn.parameters():
        torch.nn.init.normal_(p, std=0.5)
    x = torch.from_numpy(lg.mean_shape()).repeat(1, 4)[None].expand(2, -1, -1) + 0.05 * torch.randn(2, 478, 8)
    conv = gcn.convs[0]
    a = torch.from_numpy(lg.normalized_adjacency("full"))
    expected = x + torch.relu(a @ (x @ conv.lin.weight.T) + conv.bias)
    assert torch.allclose(gcn(x), expected, atol=1e-5)
