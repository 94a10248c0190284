"""distill/data/readers.py: the dataset layouts on disk, built in temp folders from JPEGs of the
built-in face's variants (tests/synthetic_faces.py), so they run without any data set."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_affectsr.distill.data.readers import expression_set, face_set, find_images, read_image
from synthetic_faces import face_variants


@pytest.fixture(scope="module")
def faces() -> list[Image.Image]:
    return face_variants(6)


def save_jpeg(img: Image.Image, path: Path, size: int | None = 48) -> Path:
    """A small real JPEG: the face's centre, shrunk so the tests stay fast."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (img.resize((size, size)) if size else img).save(path, quality=90)
    return path


def test_plain_folder_is_searched_recursively(tmp_path, faces):
    expected = [
        save_jpeg(faces[0], tmp_path / "a.jpg"),
        save_jpeg(faces[1], tmp_path / "00000" / "b.JPG"),
        save_jpeg(faces[2], tmp_path / "00000" / "deeper" / "c.jpeg"),
    ]
    faces[3].resize((40, 40)).save(tmp_path / "d.png")
    expected.append(tmp_path / "d.png")
    (tmp_path / "notes.txt").write_text("not a face")
    (tmp_path / "fake.jpg").mkdir()  # a folder with an image suffix is not a file
    records = face_set(tmp_path)
    assert sorted(r.path for r in records) == sorted(expected)
    assert all(r.label is None and r.box is None for r in records)
    assert [r.path for r in records] == find_images(tmp_path)  # sorted, stable order
    for r in records:
        assert read_image(r.path).mode == "RGB"


def test_celeba_layout_with_split_filtering(tmp_path, faces):
    img_dir = tmp_path / "img_align_celeba"
    for i in range(1, 6):
        save_jpeg(faces[i - 1], img_dir / f"{i:06d}.jpg")
    # 000006.jpg is listed but missing on disk; 000003 is test; the last line is blank
    (tmp_path / "list_eval_partition.txt").write_text(
        "000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n000004.jpg 0\n000005.jpg 1\n000006.jpg 0\n\n")
    names = lambda split: [r.path.name for r in face_set(tmp_path, split=split)]  # noqa: E731
    assert names("train") == ["000001.jpg", "000004.jpg"]
    assert names("val") == ["000002.jpg", "000005.jpg"]
    assert names("test") == ["000003.jpg"]
    assert names(None) == [f"{i:06d}.jpg" for i in range(1, 6)]
    with pytest.raises((ValueError, FileNotFoundError), match="split must be one of"):
        face_set(tmp_path, split="validation")
    assert all(r.path.parent == img_dir for r in face_set(tmp_path, split="train"))


def test_celeba_layout_without_partition_file_uses_every_image(tmp_path, faces):
    for i in range(3):
        save_jpeg(faces[i], tmp_path / "img_align_celeba" / f"{i + 1:06d}.jpg")
    assert len(face_set(tmp_path, split="train")) == 3


def test_helen_layout_crops_to_the_annotated_face(tmp_path, faces):
    save_jpeg(faces[0], tmp_path / "helen_1" / "100032540_1.jpg", size=None)  # 190 x 190
    save_jpeg(faces[1], tmp_path / "helen_1" / "232194_1.jpg", size=None)
    ann = tmp_path / "annotation"
    ann.mkdir()
    # Helen: first line the image stem, then "x , y" per landmark
    (ann / "1.txt").write_text("100032540_1\n40.0 , 50.0\n80.0 , 50.0\n60.5 , 110.0\n")
    (ann / "2.txt").write_text("missing_image\n10 , 10\n20 , 20\n")  # no such image: skipped
    records = face_set(tmp_path)
    assert [r.path.name for r in records] == ["100032540_1.jpg"]
    # points span x 40..80, y 50..110: side = 60 * 1.5 = 90 around the centre (60, 80)
    assert records[0].box == (15, 35, 105, 125)
    img = read_image(records[0].path, records[0].box)
    assert img.size == (90, 90)
    full = np.asarray(read_image(records[0].path))
    np.testing.assert_array_equal(np.asarray(img), full[35:125, 15:105])


def test_expression_set_labels_from_folders(tmp_path, faces):
    save_jpeg(faces[0], tmp_path / "happy" / "a.jpg")
    save_jpeg(faces[1], tmp_path / "happy" / "b.jpg")
    save_jpeg(faces[2], tmp_path / "sadness" / "c.jpg")
    save_jpeg(faces[3], tmp_path / "surprise" / "sub" / "d.jpg")  # label: the top-level folder
    save_jpeg(faces[4], tmp_path / "loose.jpg")  # not in a class folder: ignored
    records = expression_set(tmp_path)
    assert [(r.path.name, r.label) for r in records] == [
        ("a.jpg", "happy"), ("b.jpg", "happy"), ("c.jpg", "sadness"), ("d.jpg", "surprise")]


@pytest.mark.data
def test_expression_set_on_the_shared_data(shared_data):
    records = expression_set(shared_data / "expressions")
    labels = {r.label for r in records}
    assert labels == {"anger", "contempt", "disgust", "fear", "happy", "neutral", "sadness", "surprise"}
    assert len(records) == 3062  # as shared/data/README.md counts them
    assert sum(r.label == "contempt" for r in records) == 18
    assert all(r.path.parent.name == r.label for r in records)


def test_read_image_returns_none_for_damaged_files(tmp_path, faces):
    good = save_jpeg(faces[0], tmp_path / "good.jpg", size=None)
    data = good.read_bytes()
    (tmp_path / "random.jpg").write_bytes(np.random.default_rng(0).bytes(4000))
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("this is a text file, not a JPEG\n")
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert read_image(good) is not None and read_image(good).size == faces[0].size
    for name in ("random.jpg", "truncated.jpg", "text.jpg", "empty.jpg"):
        assert read_image(tmp_path / name) is None, name
    assert read_image(tmp_path / "does_not_exist.jpg") is None


def test_corrupt_files_are_listed_but_unreadable(tmp_path, faces):
    """face_set lists files by name; read_image is where damage is caught (prepare_faces counts it)."""
    save_jpeg(faces[0], tmp_path / "ok.jpg")
    (tmp_path / "bad.jpg").write_bytes(os.urandom(100))
    records = face_set(tmp_path)
    assert [r.path.name for r in records] == ["bad.jpg", "ok.jpg"]
    assert [read_image(r.path) is None for r in records] == [True, False]


def test_empty_or_missing_folders_raise(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError):
        face_set(empty)
    with pytest.raises(FileNotFoundError):
        expression_set(empty)
    with pytest.raises(FileNotFoundError):
        face_set(tmp_path / "missing")
    Image.new("RGB", (8, 8)).save(empty / "loose.jpg")
    with pytest.raises(FileNotFoundError):
        expression_set(empty)  # images but no class folders
