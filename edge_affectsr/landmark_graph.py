"""The face-mesh landmark graph: the one definition every stage uses.

478 MediaPipe FaceMesh points (468 mesh + 10 iris), edges from the mesh tessellation, region
contours and iris rings, named regions, node subsets, and the GCN's normalised adjacency
``D^-1/2 (A + I) D^-1/2`` as a constant array (the student multiplies by it; the teacher's
torch-geometric ``GCNConv`` computes the same thing from the edge list).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np

NUM_LANDMARKS = 478
TOPOLOGY_PATH = Path(__file__).parent / "data" / "face_mesh_topology.json"
REGION_NAMES = (
    "left_brow", "right_brow", "left_eye", "right_eye", "left_iris", "right_iris", "nose", "lips", "face_oval",
)
# Node subsets a model can be built on: the whole mesh, or only the expressive contours.
SUBSETS = ("full", "contours")


@functools.lru_cache(maxsize=1)
def _topology() -> dict:
    if not TOPOLOGY_PATH.exists():
        raise FileNotFoundError(f"{TOPOLOGY_PATH} is missing: regenerate it with `python -m edge_affectsr.distill.topology`")
    return json.loads(TOPOLOGY_PATH.read_text())


def regions() -> dict[str, list[int]]:
    return {name: list(_topology()["regions"][name]) for name in REGION_NAMES}


def subset_nodes(subset: str = "full") -> np.ndarray:
    """Sorted node indices of a subset: ``full`` (all 478) or ``contours`` (brows, eyes, irises,
    nose, lips and face oval only)."""
    if subset == "full":
        return np.arange(NUM_LANDMARKS)
    if subset == "contours":
        return np.array(sorted({i for nodes in regions().values() for i in nodes}))
    raise ValueError(f"unknown landmark subset {subset!r}; choose one of {SUBSETS}")


def edges(subset: str = "full") -> np.ndarray:
    """Undirected edges ``[E, 2]`` of the subgraph induced by a subset, in subset-local indices."""
    nodes = subset_nodes(subset)
    local = {int(n): i for i, n in enumerate(nodes)}
    kept = [(local[a], local[b]) for a, b in _topology()["edges"] if a in local and b in local]
    return np.array(kept, dtype=np.int64)


def edge_index(subset: str = "full") -> np.ndarray:
    """Both directions of every edge, ``[2, 2E]``: the torch-geometric convention."""
    e = edges(subset)
    return np.concatenate([e.T, e[:, ::-1].T], axis=1)


def adjacency(subset: str = "full") -> np.ndarray:
    """Binary symmetric adjacency ``[N, N]`` without self loops."""
    n = len(subset_nodes(subset))
    a = np.zeros((n, n), dtype=np.float32)
    e = edges(subset)
    a[e[:, 0], e[:, 1]] = 1.0
    a[e[:, 1], e[:, 0]] = 1.0
    return a


def normalized_adjacency(subset: str = "full") -> np.ndarray:
    """``D^-1/2 (A + I) D^-1/2`` ``[N, N]`` float32, as in Kipf & Welling's GCN."""
    a = adjacency(subset) + np.eye(len(subset_nodes(subset)), dtype=np.float32)
    d = 1.0 / np.sqrt(a.sum(axis=1))
    return (a * d[:, None] * d[None, :]).astype(np.float32)


def adjacency_hash(subset: str = "full") -> str:
    """sha256 of the normalised adjacency: pins the topology a model was trained with."""
    return hashlib.sha256(normalized_adjacency(subset).tobytes()).hexdigest()


def mean_shape(subset: str = "full") -> np.ndarray:
    """Mean normalised ``(x, y)`` landmarks of CelebA-aligned faces ``[N, 2]``: the fallback
    when FaceMesh finds no face (common at 16 px)."""
    return np.asarray(_topology()["mean_shape"], dtype=np.float32)[subset_nodes(subset)]
