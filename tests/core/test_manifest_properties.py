"""Property tests (hypothesis) for reading a manifest: whatever a bundle's author writes into
manifest.json (random bytes, any JSON, a valid manifest with any part replaced), reading it gives a
valid Manifest or a BundleError, never another exception; and every path a valid manifest names
stays inside the bundle folder."""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_affectsr.bundle import MANIFEST, BundleError, Manifest, bundle_relpath, read_manifest

from tiny_bundle import make_bundle

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                    max_leaves=12)
PATHS = st.text(alphabet=st.sampled_from(list("ab./\\\x00\n~ ")), max_size=12) | st.text(max_size=12)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> tuple[Path, dict]:
    bundle = make_bundle(tmp_path_factory.mktemp("m") / "b")
    return bundle, json.loads((bundle / MANIFEST).read_text())


def _read(bundle: Path, data: bytes) -> Manifest | None:
    (bundle / MANIFEST).write_bytes(data)
    try:
        return read_manifest(bundle)
    except BundleError as e:
        assert str(e)
        return None


def _paths(manifest: Manifest) -> list[str]:
    golden = manifest.golden
    return [*manifest.files, *(m.file for m in manifest.models.values()), golden.lr, golden.lm, golden.expected_sr]


def _inside(rel: str) -> bool:
    return not rel.startswith("/") and not posixpath.normpath("root/" + rel).startswith(("..", "/")) \
        and posixpath.normpath("root/" + rel).startswith("root/")


@SETTINGS
@given(data=st.binary(max_size=200))
def test_any_bytes_are_a_manifest_or_a_bundle_error(valid, data):
    _read(valid[0], data)


@pytest.mark.parametrize("data", [b"[" * 100_000, b'{"a": ' * 50_000, b"\xff\xfe{}", b"", b"null", b"1e999"])
def test_pathological_manifests_are_bundle_errors(valid, data):
    assert _read(valid[0], data) is None


@SETTINGS
@given(doc=JSON)
def test_any_json_is_a_manifest_or_a_bundle_error(valid, doc):
    _read(valid[0], json.dumps(doc).encode())


@SETTINGS
@given(where=st.lists(st.sampled_from(["files", "models", "golden", "source", "landmarks", "preprocessing", "sr_int8",
                                       "file", "lr", "nodes", "lr_size", "schema_version", "version"]), min_size=1,
                      max_size=3), value=JSON | PATHS)
def test_a_valid_manifest_with_any_part_replaced(valid, where, value):
    """Walk the valid manifest along ``where`` as far as it goes, and replace what is found there."""
    doc = json.loads(json.dumps(valid[1]))
    node = doc
    for key in where[:-1]:
        if isinstance(node, dict) and isinstance(node.get(key), dict):
            node = node[key]
    if isinstance(node, dict):
        node[where[-1]] = value
    manifest = _read(valid[0], json.dumps(doc).encode())
    if manifest is not None:
        assert all(_inside(rel) for rel in _paths(manifest))


@SETTINGS
@given(rel=PATHS, digest=st.sampled_from(["0" * 64, "f" * 64]))
def test_any_file_path_is_inside_the_bundle_or_refused(valid, rel, digest):
    doc = json.loads(json.dumps(valid[1]))
    doc["files"][rel] = digest
    manifest = _read(valid[0], json.dumps(doc).encode())
    if manifest is not None:
        assert _inside(rel) and rel in manifest.files


@settings(max_examples=1000, deadline=None)
@given(rel=PATHS)
def test_bundle_relpath_accepts_only_normalised_relative_paths(rel):
    try:
        assert bundle_relpath(rel) == rel
    except ValueError:
        return
    assert _inside(rel) and posixpath.normpath(rel) == rel and "\\" not in rel and "\x00" not in rel
