"""distill/data/landmarks.py: FaceMesh landmarks on face photos (variants of the built-in face,
tests/synthetic_faces.py), cached on disk by image content.

FaceMesh is slow to build (~1 s) and each call costs ~10 ms, so one cache (one detector) is shared
by the module and the tests use a handful of images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_affectsr import landmark_graph, protocol
from edge_affectsr.distill.data.landmarks import LandmarkCache, image_key
from synthetic_faces import face_variants


@pytest.fixture(scope="module")
def hr_faces() -> list[np.ndarray]:
    return [protocol.make_hr(face) for face in face_variants(3)]


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("landmark_cache")


@pytest.fixture(scope="module")
def detected(hr_faces, cache_root):
    """First lookups (FaceMesh runs) of the faces and of a flat grey image."""
    cache = LandmarkCache(root=cache_root)
    grey = np.full((128, 128, 3), 128, np.uint8)
    faces = [cache.get(img) for img in hr_faces]
    return {"cache": cache, "faces": faces, "grey": grey, "grey_result": cache.get(grey)}


def npy_path(root: Path, img: np.ndarray) -> Path:
    key = image_key(img)
    return root / key[:2] / f"{key}.npy"


def test_image_key_depends_on_pixels_and_shape():
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[3, 4, 1] = 1
    assert image_key(a) == image_key(a.copy())
    assert image_key(a) != image_key(b)
    assert image_key(a) != image_key(a.reshape(4, 16, 3))  # same bytes, other shape
    assert len(image_key(a)) == 64


def test_cache_root_is_respected(tmp_path):
    assert LandmarkCache(root=tmp_path).root == tmp_path
    assert LandmarkCache(root=tmp_path)._detector is None  # built lazily, on the first miss


def test_real_faces_are_found(detected):
    for pts, found in detected["faces"]:
        assert found
        assert pts.shape == (478, 2) and pts.dtype == np.float32
        assert np.isfinite(pts).all()
        assert (pts > -0.05).all() and (pts < 1.05).all()
        # a face framed like a CelebA HR crop lands near the CelebA mean shape, the right way round
        assert np.abs(pts - landmark_graph.mean_shape()).mean() < 0.05
        r = landmark_graph.regions()
        assert pts[r["left_eye"], 0].mean() > pts[r["right_eye"], 0].mean()
        assert pts[r["left_eye"], 1].mean() < pts[r["lips"], 1].mean()


def test_flat_image_gives_the_mean_shape(detected):
    pts, found = detected["grey_result"]
    assert found is False
    np.testing.assert_array_equal(pts, landmark_graph.mean_shape())


def test_results_are_written_to_disk(detected, hr_faces, cache_root):
    for img, (pts, _) in zip(hr_faces, detected["faces"]):
        path = npy_path(cache_root, img)
        assert path.is_file()
        np.testing.assert_array_equal(np.load(path), pts)
    assert np.isnan(np.load(npy_path(cache_root, detected["grey"]))).all()  # "not found" is cached too
    assert not list(cache_root.rglob("*.tmp*"))


def test_second_lookup_is_served_from_disk(detected, hr_faces, cache_root):
    fresh = LandmarkCache(root=cache_root)
    for img, (pts, found) in zip(hr_faces, detected["faces"]):
        again, found_again = fresh.get(img)
        assert found_again == found
        np.testing.assert_array_equal(again, pts)
    assert fresh.get(detected["grey"])[1] is False
    assert fresh._detector is None  # FaceMesh was never built: every answer came from the .npy files


def test_landmarks_on_the_bicubic_upscale_are_close_to_the_hr_ones(detected, hr_faces):
    cache = detected["cache"]
    for img, (pts_hr, _) in zip(hr_faces, detected["faces"]):
        pts_lr, found = cache.get(protocol.bicubic_up(protocol.make_lr(img, 4)))
        assert found
        assert np.abs(pts_lr - pts_hr).mean() < 0.02  # under 3 px at 128 px
