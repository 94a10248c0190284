"""distill/data/dataset.py: face photos (variants of the built-in face, tests/synthetic_faces.py)
-> protocol pairs with landmarks, held in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edge_affectsr.distill.data.dataset import FaceSRDataset, prepare_faces, to_tensor_image, to_uint8_image
from edge_affectsr.runtime.degradation import PRESETS, degrade_face
from edge_affectsr.distill.data.landmarks import LandmarkCache, image_key
from edge_affectsr.distill.data.readers import face_set
from edge_affectsr import landmark_graph, protocol
from synthetic_faces import write_faces


@pytest.fixture(scope="module")
def face_dir(tmp_path_factory) -> Path:
    """Six face JPEGs and one corrupt JPEG in a plain folder."""
    d = tmp_path_factory.mktemp("faces")
    files = write_faces(d, 6)
    good = files[0].read_bytes()
    (d / "broken.jpg").write_bytes(good[: len(good) // 3])  # truncated mid-scan
    return d


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("landmarks")


@pytest.fixture(scope="module")
def prepared(face_dir, cache_root):
    return prepare_faces(face_set(face_dir), 4, cache=LandmarkCache(root=cache_root))



def test_corrupt_face_is_skipped_and_counted(prepared, face_dir):
    assert len(prepared) == 6
    assert [Path(s).name for s in prepared.skipped] == ["broken.jpg"]
    assert "broken.jpg" not in prepared.names
    assert sorted(prepared.names) == sorted(p.name for p in face_dir.glob("face*.jpg"))


def test_arrays_follow_the_protocol(prepared, face_dir):
    assert prepared.hr.shape == (6, 128, 128, 3) and prepared.hr.dtype == np.uint8
    assert prepared.lr.shape == (6, 32, 32, 3) and prepared.lr.dtype == np.uint8
    assert prepared.lm_hr.shape == prepared.lm_lr.shape == (6, 478, 2)
    for i, name in enumerate(prepared.names):
        hr = protocol.make_hr(Image.open(face_dir / name))
        np.testing.assert_array_equal(prepared.hr[i], hr)
        np.testing.assert_array_equal(prepared.lr[i], protocol.make_lr(hr, 4))


def test_landmarks_found_on_real_faces(prepared):
    assert prepared.found_hr.dtype == bool and prepared.found_hr.all()
    assert prepared.found_lr.all()  # x4 (32 px, upscaled) is still enough for FaceMesh on these faces
    # HR landmarks are FaceMesh's, not the mean-shape fallback, and agree with the LR-upscaled ones
    for i in range(len(prepared)):
        assert not np.array_equal(prepared.lm_hr[i], landmark_graph.mean_shape())
        assert np.abs(prepared.lm_hr[i] - prepared.lm_lr[i]).mean() < 0.02


def test_landmarks_are_those_of_the_hr_and_upscaled_lr_images(prepared, cache_root):
    """What prepare_faces stored is what the cache holds for exactly those two images."""
    for i in range(len(prepared)):
        for img, lm in ((prepared.hr[i], prepared.lm_hr[i]),
                        (protocol.bicubic_up(prepared.lr[i]), prepared.lm_lr[i])):
            key = image_key(img)
            np.testing.assert_array_equal(np.load(cache_root / key[:2] / f"{key}.npy"), lm)


def test_second_preparation_uses_the_disk_cache(prepared, face_dir, cache_root):
    cache = LandmarkCache(root=cache_root)
    again = prepare_faces(face_set(face_dir), 4, cache=cache)
    assert cache._detector is None
    for key in ("hr", "lr", "lm_hr", "lm_lr", "found_hr", "found_lr"):
        np.testing.assert_array_equal(getattr(again, key), getattr(prepared, key))


def test_grey_face_gets_the_mean_shape(tmp_path, cache_root):
    Image.new("RGB", (178, 218), (128, 128, 128)).save(tmp_path / "grey.jpg")
    faces = prepare_faces(face_set(tmp_path), 8, cache=LandmarkCache(root=cache_root))
    assert faces.lr.shape == (1, 16, 16, 3)
    assert not faces.found_hr[0] and not faces.found_lr[0]
    np.testing.assert_array_equal(faces.lm_hr[0], landmark_graph.mean_shape())
    np.testing.assert_array_equal(faces.lm_lr[0], landmark_graph.mean_shape())


def test_only_unreadable_images_raise(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff not really")
    (tmp_path / "b.jpg").write_text("text")
    with pytest.raises(FileNotFoundError, match="none of the 2 images"):
        prepare_faces(face_set(tmp_path), 4, cache=LandmarkCache(root=tmp_path / "lm"))


def test_camera_degradation_applies_to_lr_is_seeded_and_keeps_the_clean_twin(face_dir, cache_root):
    records = face_set(face_dir)[:3]
    assert records[0].path.name == "broken.jpg"  # sorts first; it is skipped but keeps index 0
    cfg = PRESETS["camera"].model_copy(update={"clean_p": 0.0})  # every face degraded (the preset keeps 10 % clean)
    a = prepare_faces(records, 4, cache=LandmarkCache(root=cache_root), degradation=cfg, seed=3, variants=2)
    b = prepare_faces(records, 4, cache=LandmarkCache(root=cache_root), degradation=cfg, seed=3, variants=2)
    assert len(a) == 4 and a.names[0] == a.names[1]  # two camera renderings of each readable face
    np.testing.assert_array_equal(a.lr, b.lr)
    for i in range(4):
        record, variant = divmod(i, 2)
        # each rendering's own draw, indexed by the record's position (skips keep their index) and the variant
        np.testing.assert_array_equal(a.lr[i], degrade_face(a.hr[i], cfg, 32, 3, (record + 1) * 2 + variant))
        np.testing.assert_array_equal(a.clean.lr[i], protocol.make_lr(a.hr[i], 4))
        assert not np.array_equal(a.lr[i], a.clean.lr[i])
    assert not np.array_equal(a.lr[0], a.lr[1])
    # the landmarks of the LR input were looked up on the degraded image, as a device would see it
    key = image_key(protocol.bicubic_up(a.lr[0]))
    assert (cache_root / key[:2] / f"{key}.npy").is_file()
    np.testing.assert_array_equal(a.clean.lm_lr[0], LandmarkCache(root=cache_root).get(protocol.bicubic_up(a.clean.lr[0]))[0])


def test_face_sr_dataset_items(prepared):
    ds = FaceSRDataset(prepared)
    assert len(ds) == 6
    item = ds[2]
    assert item["lr"].shape == (3, 32, 32) and item["hr"].shape == (3, 128, 128)
    assert item["lr"].dtype == torch.float32 and 0 <= item["hr"].min() and item["hr"].max() <= 1
    assert item["lm_lr"].shape == item["lm_hr"].shape == (478, 2)
    assert item["found_lr"].dtype == torch.bool and bool(item["found_lr"])
    # channels-first of the same pixels
    np.testing.assert_array_equal(to_uint8_image(item["hr"]), prepared.hr[2])
    np.testing.assert_allclose(item["lm_hr"].numpy(), prepared.lm_hr[2])

    contours = FaceSRDataset(prepared, subset="contours")
    nodes = landmark_graph.subset_nodes("contours")
    assert contours[2]["lm_lr"].shape == (len(nodes), 2)
    np.testing.assert_allclose(contours[2]["lm_lr"].numpy(), prepared.lm_lr[2][nodes])


def test_tensor_image_round_trip():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    t = to_tensor_image(img)
    assert t.shape == (2, 3, 5, 7) and t.dtype == torch.float32
    assert t[1, 2, 4, 6].item() == pytest.approx(img[1, 4, 6, 2] / 255.0, abs=1e-7)
    np.testing.assert_array_equal(to_uint8_image(t), img)
    out = to_uint8_image(torch.tensor([-0.5, 0.0, 0.5, 1.5]).view(1, 1, 4).expand(3, 1, 4))
    assert out[0, :, 0].tolist() == [0, 0, 128, 255]  # clipped, rounded half up from 127.5
