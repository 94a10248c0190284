"""Regenerate the core's face-mesh topology asset from the installed mediapipe 0.10.21.

``python -m edge_affectsr.distill.topology --faces DIR`` writes ``edge_affectsr/data/face_mesh_topology.json``:
the mesh edges (tessellation + region contours + irises), the named regions, and the mean landmark
shape of the faces in DIR (the fallback for faces FaceMesh cannot find). The mesh connectivity is
mediapipe's (Apache-2.0); mediapipe links no iris point to the rest of the mesh, so each iris ring
point is joined to its two nearest eye-contour points on the mean shape.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge_affectsr import protocol
from edge_affectsr.distill.data.landmarks import FaceMeshDetector
from edge_affectsr.distill.data.readers import find_images, read_image
from edge_affectsr.landmark_graph import NUM_LANDMARKS, TOPOLOGY_PATH

IRISES = {"right_iris": (468, [469, 470, 471, 472], "right_eye"), "left_iris": (473, [474, 475, 476, 477], "left_eye")}


def _nodes(conns) -> list[int]:
    return sorted({int(i) for e in conns for i in e})


def mediapipe_regions() -> tuple[dict[str, list[int]], set[tuple[int, int]]]:
    from mediapipe.python.solutions import face_mesh_connections as c

    sets = {
        "left_brow": c.FACEMESH_LEFT_EYEBROW, "right_brow": c.FACEMESH_RIGHT_EYEBROW,
        "left_eye": c.FACEMESH_LEFT_EYE, "right_eye": c.FACEMESH_RIGHT_EYE,
        "nose": c.FACEMESH_NOSE, "lips": c.FACEMESH_LIPS, "face_oval": c.FACEMESH_FACE_OVAL,
    }
    regions = {name: _nodes(conns) for name, conns in sets.items()}
    edges = {tuple(sorted(map(int, e))) for e in c.FACEMESH_TESSELATION | c.FACEMESH_CONTOURS | c.FACEMESH_IRISES}
    return regions, edges


def mean_face_shape(face_dir: Path, limit: int) -> np.ndarray:
    det, shapes = FaceMeshDetector(), []
    for path in tqdm(find_images(face_dir)[:limit], desc="mean shape", unit="face"):
        img = read_image(path)
        pts = det(protocol.make_hr(img)) if img is not None else None
        if pts is not None:
            shapes.append(pts)
    det.close()
    if not shapes:
        raise SystemExit(f"no face found in {face_dir}")
    return np.mean(shapes, axis=0)


def link_irises(regions, edges, mean: np.ndarray) -> None:
    for name, (centre, ring, eye) in IRISES.items():
        regions[name] = [centre, *ring]
        eye_nodes = np.array(regions[eye])
        for r in ring:
            edges.add(tuple(sorted((centre, r))))
            d = np.linalg.norm(mean[eye_nodes] - mean[r], axis=1)
            for e in eye_nodes[np.argsort(d)[:2]]:
                edges.add(tuple(sorted((int(e), r))))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=Path, required=True, help="folder of face photos for the mean shape")
    ap.add_argument("--limit", type=int, default=1000, help="use at most this many faces")
    ap.add_argument("--out", type=Path, default=TOPOLOGY_PATH)
    args = ap.parse_args(argv)
    regions, edges = mediapipe_regions()
    mean = mean_face_shape(args.faces, args.limit)
    link_irises(regions, edges, mean)
    doc = {
        "source": "mediapipe 0.10.21 face_mesh_connections (Apache-2.0); irises linked by distill/topology.py",
        "num_landmarks": NUM_LANDMARKS,
        "edges": sorted(edges),
        "regions": regions,
        "mean_shape": np.round(mean, 5).tolist(),
    }
    args.out.write_text(json.dumps(doc, separators=(",", ":")))
    print(f"wrote {args.out}: {len(edges)} edges, {len(regions)} regions")


if __name__ == "__main__":
    main()
