"""edge_affectsr/bundle.py: the typed manifest, verification and the clean BundleError for every way a
bundle can be broken. A tiny synthetic bundle (tests/tiny_bundle.py, made by write_bundle) stands in
for a real one; the shipped bundle-x4 must still validate unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from edge_affectsr.bundle import (
    MANIFEST, SCHEMA_VERSION, BundleError, read_manifest, staging_dir, verify_bundle, write_bundle,
)

from tiny_bundle import SHIPPED, edit_manifest, make_bundle


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


def _add_entry(bundle: Path, rel: str, target: Path) -> None:
    """List ``rel`` in the manifest with ``target``'s real sha256: what a hostile bundle's author does."""
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    edit_manifest(bundle, lambda doc: doc["files"].update({rel: digest}))


@pytest.mark.parametrize("rel, why", [
    ("../../outside.txt", "leaves the bundle folder"),
    ("a/../../outside.txt", "leaves the bundle folder"),
    ("ABSOLUTE", "is absolute"),
    ("./sr_int8.tflite", "not normalised"),
    ("models//x", "not normalised"),
    ("models/", "not normalised"),
    ("..\\outside.txt", "backslash"),
    ("a\nb", "control character"),
    ("", "empty path"),
])
def test_a_manifest_path_outside_the_bundle_is_refused(tmp_path: Path, rel: str, why: str):
    """Before: the file ``../../outside.txt`` (re-hashed) verified, and flash wrote it outside its target."""
    outside = tmp_path / "outside.txt"
    outside.write_text("not part of the bundle")
    bundle = make_bundle(tmp_path / "deep" / "er" / "b")
    _add_entry(bundle, str(outside) if rel == "ABSOLUTE" else rel, outside)
    with pytest.raises(BundleError, match="invalid manifest") as err:
        verify_bundle(bundle)
    assert f"invalid manifest: files: {'' if rel == '' else 'path '}" in str(err.value) and why in str(err.value)


@pytest.mark.parametrize("section", ["model", "golden"])
def test_model_and_golden_paths_must_stay_inside_too(bundle: Path, section: str):
    change = ((lambda doc: doc["models"]["sr_int8"].update(file="/etc/passwd")) if section == "model"
              else (lambda doc: doc["golden"].update(lr="../golden_lr.npy")))
    edit_manifest(bundle, change)
    with pytest.raises(BundleError, match=r"(models\.sr_int8\.file|golden\.lr): path .* (is absolute|leaves)"):
        read_manifest(bundle)


def test_a_listed_file_that_links_out_of_the_bundle_is_refused(bundle: Path, tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("elsewhere")
    (bundle / "link.bin").symlink_to(secret)
    _add_entry(bundle, "link.bin", secret)
    with pytest.raises(BundleError, match="link.bin is a link that leads out of the bundle"):
        verify_bundle(bundle)


def test_golden_files_must_be_covered_by_a_hash(bundle: Path):
    edit_manifest(bundle, lambda doc: doc["files"].pop("golden_sr.npy"))
    with pytest.raises(BundleError, match=r"golden expected_sr \(golden_sr\.npy\) is not covered by a hash"):
        verify_bundle(bundle)


@pytest.mark.parametrize("digest", ["0" * 63, "G" * 64, "A" * 64, 7])
def test_a_malformed_hash_is_refused(bundle: Path, digest):
    edit_manifest(bundle, lambda doc: doc["files"].update({"sr_int8.tflite": digest}))
    with pytest.raises(BundleError, match=r"files\.sr_int8\.tflite"):
        read_manifest(bundle)


def test_a_bundle_is_readable_by_others_whatever_the_umask(tmp_path: Path):
    """Before: the staging folder came from mkdtemp (0700), so a bundle made by one user could not be
    read by the service user it was copied for."""
    old = os.umask(0o077)
    try:
        stage = staging_dir(tmp_path / "out" / "b")
        (stage / "sub").mkdir()
        for rel in ("sr_int8.tflite", "golden_lr.npy", "golden_lm.npy", "golden_sr.npy", "sub/notes.txt"):
            (stage / rel).write_bytes(rel.encode())
        src = json.loads((make_bundle(tmp_path / "ref") / MANIFEST).read_text())
        out = write_bundle(stage, tmp_path / "out" / "b", {k: v for k, v in src.items() if k not in ("schema_version", "files")})
    finally:
        os.umask(old)
    modes = {str(p.relative_to(out)): stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}
    assert modes.pop(".") == modes.pop("sub") == 0o755
    assert set(modes.values()) == {0o644}, modes
