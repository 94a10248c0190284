"""edge_affectsr/bundle.py: the typed manifest, verification and the clean BundleError for every way a
bundle can be broken. A tiny synthetic bundle (made by write_bundle) stands in for a real one; the
shipped bundle-x4 must still validate unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_affectsr.bundle import (
    MANIFEST, SCHEMA_VERSION, BundleError, Golden, Preprocessing, read_manifest, staging_dir, verify_bundle, write_bundle,
)

SHIPPED = Path(__file__).resolve().parents[2] / "edge_affectsr" / "models" / "bundle-x4"


def make_bundle(out: Path) -> Path:
    """A bundle with one model file and the three golden files (contents are placeholders)."""
    stage = staging_dir(out)
    for name in ("sr_int8.tflite", "golden_lr.npy", "golden_lm.npy", "golden_sr.npy"):
        (stage / name).write_bytes(name.encode())
    return write_bundle(stage, out, {
        "name": "tiny", "version": "1", "scale": 4, "created": "2026-01-01T00:00:00+00:00",
        "source": {"checkpoint": "s.pt", "checkpoint_sha256": "0" * 64, "git_commit": None, "teacher": None, "target": "all"},
        "models": {"sr_int8": {"file": "sr_int8.tflite", "format": "tflite-int8"}},
        "preprocessing": Preprocessing(lr_size=32).model_dump(),
        "landmarks": {"subset": "contours", "nodes": [0, 1], "adjacency_sha256": "a" * 64},
        "golden": Golden(lr="golden_lr.npy", lm="golden_lm.npy", expected_sr="golden_sr.npy").model_dump(),
    })


def edit_manifest(bundle: Path, change) -> None:
    doc = json.loads((bundle / MANIFEST).read_text())
    change(doc)
    (bundle / MANIFEST).write_text(json.dumps(doc))


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "b")


def test_a_written_bundle_verifies_into_typed_sections(bundle: Path):
    manifest = verify_bundle(bundle)
    assert manifest.schema_version == SCHEMA_VERSION and set(manifest.files) == {
        "sr_int8.tflite", "golden_lr.npy", "golden_lm.npy", "golden_sr.npy"}
    assert manifest.golden.expected_sr == "golden_sr.npy" and manifest.golden.min_psnr_db == 45.0
    assert manifest.preprocessing.lr_size == 32 and manifest.landmarks.nodes == [0, 1]
    assert manifest.source.git_commit is None and manifest.verification == {}


def test_the_shipped_manifest_validates_unchanged():
    raw = json.loads((SHIPPED / MANIFEST).read_text())
    manifest = verify_bundle(SHIPPED)
    dumped = manifest.model_dump(mode="json")
    for section in ("source", "preprocessing", "landmarks", "golden", "verification", "files"):
        assert dumped[section] == raw[section], section  # nothing dropped, renamed or defaulted differently


def test_a_listed_but_missing_file_is_named(bundle: Path):
    (bundle / "golden_lm.npy").unlink()
    with pytest.raises(BundleError, match=r"golden_lm\.npy is listed in the manifest but missing"):
        verify_bundle(bundle)


def test_a_changed_file_is_named(bundle: Path):
    (bundle / "golden_sr.npy").write_bytes(b"other")
    with pytest.raises(BundleError, match=r"golden_sr\.npy does not match its sha256"):
        verify_bundle(bundle)


def test_every_model_must_be_covered_by_a_hash(bundle: Path):
    """A model file the ``files`` table does not list could be swapped unnoticed: refused."""
    edit_manifest(bundle, lambda doc: doc["files"].pop("sr_int8.tflite"))
    with pytest.raises(BundleError, match=r"model sr_int8 \(sr_int8\.tflite\) is not covered by a hash"):
        verify_bundle(bundle)


def test_invalid_json_is_a_bundle_error(bundle: Path):
    (bundle / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_manifest(bundle)


def test_a_folder_without_a_manifest_is_not_a_bundle(tmp_path: Path):
    with pytest.raises(BundleError, match=f"{MANIFEST} is missing"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("change", [lambda doc: doc.pop("schema_version"), lambda doc: doc.update(schema_version="1")])
def test_a_missing_schema_version_is_named(bundle: Path, change):
    edit_manifest(bundle, change)
    with pytest.raises(BundleError, match="no schema_version"):
        read_manifest(bundle)


def test_a_newer_schema_is_refused_before_its_keys_are_read(bundle: Path):
    edit_manifest(bundle, lambda doc: doc.update(schema_version=SCHEMA_VERSION + 1, new_section={}))
    with pytest.raises(BundleError, match=f"schema {SCHEMA_VERSION + 1} is newer"):
        read_manifest(bundle)


@pytest.mark.parametrize("change, key", [
    (lambda doc: doc["golden"].update(tolerance=1), "golden.tolerance: unknown key"),
    (lambda doc: doc["source"].update(branch="main"), "source.branch: unknown key"),
    (lambda doc: doc.update(extras={}), "extras: unknown key"),
    (lambda doc: doc["golden"].pop("expected_sr"), "golden.expected_sr: Field required"),
    (lambda doc: doc["preprocessing"].update(lr_size="big"), "preprocessing.lr_size"),
    (lambda doc: doc["landmarks"].update(nodes="all"), "landmarks.nodes"),
])
def test_a_bad_key_is_a_bundle_error_naming_it(bundle: Path, change, key: str):
    edit_manifest(bundle, change)
    with pytest.raises(BundleError, match="invalid manifest") as info:
        read_manifest(bundle)
    assert key in str(info.value)


def test_write_bundle_refuses_an_invalid_manifest_and_an_existing_output(tmp_path: Path):
    make_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match="already exists"):
        make_bundle(tmp_path / "b")
    stage = staging_dir(tmp_path / "c")
    with pytest.raises(BundleError, match="name: Field required"):
        write_bundle(stage, tmp_path / "c", {"version": "1"})
    assert not (tmp_path / "c").exists()
