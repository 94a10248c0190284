"""edge_affectsr/signing.py and the ``keygen``/``sign`` commands: Ed25519 signatures over a bundle's
manifest. Keys are made per test in tmp (the project's private key never enters the repository);
the bundle is the small synthetic one of test_bundle.py, the shipped one for the project key."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge_affectsr.bundle import MANIFEST, SIGNATURE, BundleError, verify_bundle
from edge_affectsr.signing import (
    PROJECT_KEY, KeyFileError, SignatureError, SigningKey, TrustedKeys, generate_keypair,
)

from tiny_bundle import SHIPPED, edit_manifest, make_bundle

CLI = [sys.executable, "-m", "edge_affectsr.cli"]


def keypair(folder: Path, name: str) -> tuple[SigningKey, Path]:
    generate_keypair(folder / f"{name}.key", folder / f"{name}.pub")
    return SigningKey.load(folder / f"{name}.key"), folder / f"{name}.pub"


@pytest.fixture
def keys(tmp_path: Path) -> dict:
    (tmp_path / "keys").mkdir()
    release, release_pub = keypair(tmp_path / "keys", "release")
    other, other_pub = keypair(tmp_path / "keys", "other")
    return {"release": release, "release_pub": release_pub, "other": other, "other_pub": other_pub}


@pytest.fixture
def signed(tmp_path: Path, keys) -> Path:
    bundle = make_bundle(tmp_path / "b")
    keys["release"].sign_bundle(bundle)
    return bundle


def trust(*paths: Path | str) -> TrustedKeys:
    return TrustedKeys.load([str(p) for p in paths])


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(tmp_path: Path):
    old = os.umask(0)  # the most permissive umask: the private key must still be 0600
    try:
        kid = generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k.pub").stat().st_mode) == 0o644
    assert b"PRIVATE KEY" in (tmp_path / "k.key").read_bytes() and b"PUBLIC KEY" in (tmp_path / "k.pub").read_bytes()
    assert SigningKey.load(tmp_path / "k.key").key_id == kid == next(iter(trust(tmp_path / "k.pub").keys))
    before = (tmp_path / "k.key").read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        generate_keypair(tmp_path / "k.key", tmp_path / "k2.pub")
    assert (tmp_path / "k.key").read_bytes() == before and not (tmp_path / "k2.pub").exists()


def test_a_signed_bundle_verifies_against_its_key(signed: Path, keys):
    doc = json.loads((signed / SIGNATURE).read_text())
    assert doc["algorithm"] == "ed25519" and doc["key_id"] == keys["release"].key_id
    assert stat.S_IMODE((signed / SIGNATURE).stat().st_mode) == 0o644
    assert verify_bundle(signed, trust(keys["release_pub"])).name == "tiny"
    assert verify_bundle(signed, trust(keys["other_pub"], keys["release_pub"])).name == "tiny"  # any trusted key
    assert verify_bundle(signed, trust(keys["release_pub"].parent)).name == "tiny"  # a folder of *.pub


def test_without_trusted_keys_signatures_are_not_required(tmp_path: Path, signed: Path):
    unsigned = make_bundle(tmp_path / "unsigned")
    assert verify_bundle(unsigned).name == verify_bundle(unsigned, trust()).name == "tiny"
    (signed / SIGNATURE).write_text("garbage")  # not read at all without keys
    assert verify_bundle(signed).name == "tiny"


def test_an_unsigned_bundle_is_refused_when_keys_are_configured(tmp_path: Path, keys):
    unsigned = make_bundle(tmp_path / "unsigned")
    with pytest.raises(SignatureError, match=r"not signed \(manifest\.sig is missing\).*edge-affectsr sign"):
        verify_bundle(unsigned, trust(keys["release_pub"]))


def test_a_bundle_signed_by_another_key_is_refused_naming_it(signed: Path, keys):
    with pytest.raises(SignatureError, match=f"signed by key {keys['release'].key_id}, which is not trusted") as err:
        verify_bundle(signed, trust(keys["other_pub"]))
    assert keys["other"].key_id in str(err.value)  # and says which keys are trusted


def test_a_manifest_changed_after_signing_is_refused(signed: Path, keys):
    """A re-hashed tampering (file and manifest hash changed together) passes the hashes, not the signature."""
    (signed / "sr_int8.tflite").write_bytes(b"a different model")
    digest = hashlib.sha256(b"a different model").hexdigest()
    edit_manifest(signed, lambda doc: doc["files"].update({"sr_int8.tflite": digest}))
    assert verify_bundle(signed).name == "tiny"  # the hashes alone are satisfied
    with pytest.raises(SignatureError, match="does not match manifest.json"):
        verify_bundle(signed, trust(keys["release_pub"]))


def test_a_signature_copied_from_another_key_id_is_refused(signed: Path, keys):
    """The key id only names the signer: relabelling a signature made by an untrusted key fails the check."""
    keys["other"].sign_bundle(signed)
    doc = json.loads((signed / SIGNATURE).read_text())
    doc["key_id"] = keys["release"].key_id
    (signed / SIGNATURE).write_text(json.dumps(doc))
    with pytest.raises(SignatureError, match="does not match"):
        verify_bundle(signed, trust(keys["release_pub"]))


@pytest.mark.parametrize("text, why", [
    ("not json", "malformed"),
    ('{"algorithm": "rsa", "key_id": "x", "signature": ""}', "algorithm is not ed25519"),
    ('{"algorithm": "ed25519", "signature": "AAAA"}', "KeyError"),
    ('{"algorithm": "ed25519", "key_id": "x", "signature": "***"}', "malformed"),
    ('{"algorithm": "ed25519", "key_id": "x", "signature": "' + base64.b64encode(b"short").decode() + '"}', "64 bytes"),
    ('[1, 2]', "malformed"),
])
def test_a_malformed_signature_file_is_refused(signed: Path, keys, text: str, why: str):
    (signed / SIGNATURE).write_text(text)
    with pytest.raises(SignatureError, match=why):
        verify_bundle(signed, trust(keys["release_pub"]))


def test_bad_key_files_are_user_errors_naming_the_file(tmp_path: Path, keys):
    with pytest.raises(KeyFileError, match="not found"):
        trust(tmp_path / "missing.pub")
    with pytest.raises(KeyFileError, match=r"that is a private key: trust its \.pub half"):
        trust(tmp_path / "keys" / "release.key")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KeyFileError, match="holds no"):
        trust(tmp_path / "empty")
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        SigningKey.load(keys["release_pub"])


def test_the_shipped_bundle_is_signed_with_the_project_key():
    """`project` names the public key shipped in the package; the shipped bundle passes it."""
    assert trust("project").keys == trust(PROJECT_KEY).keys
    assert verify_bundle(SHIPPED, trust("project")).name == "bundle-x4"


def test_sign_and_keygen_commands(tmp_path: Path):
    bundle = make_bundle(tmp_path / "b")
    done = subprocess.run([*CLI, "keygen", str(tmp_path / "k" / "rel.key")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and (tmp_path / "k" / "rel.pub").is_file(), done.stderr
    done = subprocess.run([*CLI, "sign", "--model", str(bundle), "--key", str(tmp_path / "k" / "rel.key")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("signed tiny v1"), done.stderr
    verify_bundle(bundle, trust(tmp_path / "k" / "rel.pub"))

    (bundle / "golden_lr.npy").write_bytes(b"tampered")  # sign refuses what its hashes do not vouch for
    done = subprocess.run([*CLI, "sign", "--model", str(bundle), "--key", str(tmp_path / "k" / "rel.key")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "golden_lr.npy does not match" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([*CLI, "keygen", str(tmp_path / "k" / "rel.key")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "already exists" in done.stderr


def test_convert_refuses_a_bad_signing_key_before_any_work(tmp_path: Path):
    """--sign is checked first: a typo costs a second, not a conversion (and no output folder)."""
    done = subprocess.run([*CLI, "convert", "--model", "student-x4", "--data", str(tmp_path), "--out", str(tmp_path / "out"),
                           "--sign", str(tmp_path / "no-such.key")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cannot read the signing key" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_write_bundle_signs_before_the_bundle_appears(tmp_path: Path, keys):
    from edge_affectsr.bundle import write_bundle

    bundle = make_bundle(tmp_path / "plain")
    stage = tmp_path / "stage"
    stage.mkdir()
    for rel in json.loads((bundle / MANIFEST).read_text())["files"]:
        (stage / rel).write_bytes((bundle / rel).read_bytes())
    doc = {k: v for k, v in json.loads((bundle / MANIFEST).read_text()).items() if k not in ("schema_version", "files")}
    out = write_bundle(stage, tmp_path / "signed", doc, keys["release"])
    assert SIGNATURE not in verify_bundle(out).files  # the signature is beside the manifest, not listed in it
    verify_bundle(out, trust(keys["release_pub"]))
    with pytest.raises(BundleError):
        verify_bundle(out, trust(keys["other_pub"]))
