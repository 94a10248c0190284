"""Signed bundles: an Ed25519 signature over a bundle's manifest, and the public keys that are trusted.

Why the manifest (as RAUC and Mender sign update artifacts): it holds every file's sha256, so one
signature over its exact bytes covers the whole bundle. The hashes alone only prove that the files
match *some* manifest, and whoever hands over a bundle can rewrite that. The signature is detached,
in ``manifest.sig`` beside ``manifest.json``: signing an existing bundle changes no file the
manifest lists, and a release's name (from sha256 of manifest.json) stays the same.

``manifest.sig`` is JSON ``{"algorithm": "ed25519", "key_id": "<16 hex>", "signature": "<base64>"}``.
The signed message is :data:`DOMAIN` followed by the manifest's bytes, so that a signature the same
key made for anything else can never pass as a bundle signature. ``key_id`` (the first 16 hex digits
of sha256 of the raw 32-byte public key) only names the signer in messages; nothing is trusted by it.

Keys are PEM files: the private key PKCS#8 (written mode 0600), the public key SubjectPublicKeyInfo
(what ``openssl pkey -pubout`` prints). Trust is a list of public key files, folders of ``*.pub``
files, or ``project`` (the key edge-affectsr's shipped bundles are signed with, in
``edge_affectsr/keys/``). No trusted keys: no signature check, a bundle is verified by its hashes
alone. With keys, an unsigned bundle, one signed by a key not trusted, or one whose manifest changed
after signing is refused, and the message says which.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr.bundle import MANIFEST, SIGNATURE, BundleError
from edge_affectsr.errors import UserError
from edge_affectsr.reports import write_text

DOMAIN = b"edge-affectsr bundle manifest v1\n"
ALGORITHM = "ed25519"
PROJECT_KEY_NAME = "project"
PROJECT_KEY = Path(__file__).parent / "keys" / "edge-affectsr-project.pub"


class SignatureError(BundleError):
    """A bundle whose signature does not satisfy the trusted keys; the message says why."""


class KeyFileError(UserError):
    """A key file that cannot be used (missing, not PEM, not Ed25519, the wrong half)."""


class TrustConfig(BaseModel):
    """The ``trust:`` section of the device config: whose bundles the camera runs."""

    model_config = ConfigDict(extra="forbid")
    keys: list[str] = Field(default_factory=list, description=(
        "public key files (PEM) or folders of *.pub files whose signatures are accepted; 'project': the key "
        "the shipped bundles are signed with. Empty: bundles need no signature (hashes are still checked); "
        "with keys, an unsigned or wrongly signed bundle is refused at start, on SIGHUP reload and by flash"))


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def generate_keypair(private_path: Path, public_path: Path) -> str:
    """A new key pair: the private key at ``private_path`` (mode 0600, created exclusively: an
    existing key is never overwritten), the public key at ``public_path``; its key id."""
    private_path, public_path = Path(private_path), Path(public_path)
    for path in (private_path, public_path):
        if path.exists():
            raise KeyFileError(f"{path} already exists; choose another name or remove it")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)  # whatever the umask
        fh.write(pem)
    write_text(public_path, _public_pem(key.public_key()))
    os.chmod(public_path, 0o644)
    return key_id(key.public_key())


def _read_pem(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read the {what} {path}: {e.strerror or e}") from None


@dataclass(frozen=True)
class SigningKey:
    """A private key that signs bundles (``SigningKey.load(path)``; the path is only for messages)."""

    key: Ed25519PrivateKey
    path: Path

    @classmethod
    def load(cls, path: Path) -> "SigningKey":
        data = _read_pem(path, "signing key")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as e:
            raise KeyFileError(f"{path} is not an unencrypted PEM private key ({e}); make one with "
                               "`edge-affectsr keygen`") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path} is not an Ed25519 key; make one with `edge-affectsr keygen`")
        return cls(key, Path(path))

    @property
    def key_id(self) -> str:
        return key_id(self.key.public_key())

    def sign_bundle(self, bundle: Path) -> Path:
        """Write ``manifest.sig`` for ``bundle``'s manifest as it is now (atomically, mode 0644)."""
        manifest = Path(bundle) / MANIFEST
        try:
            data = manifest.read_bytes()
        except OSError as e:
            raise BundleError(f"{bundle}: cannot read {MANIFEST}: {e.strerror or e}") from None
        doc = {"algorithm": ALGORITHM, "key_id": self.key_id,
               "signature": base64.b64encode(self.key.sign(DOMAIN + data)).decode()}
        out = Path(bundle) / SIGNATURE
        write_text(out, json.dumps(doc, indent=2) + "\n")
        os.chmod(out, 0o644)
        return out


def _load_public(path: Path) -> Ed25519PublicKey:
    data = _read_pem(path, "trusted key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        hint = " (that is a private key: trust its .pub half)" if b"PRIVATE KEY" in data else ""
        raise KeyFileError(f"{path} is not a PEM public key{hint} ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path} is not an Ed25519 public key")
    return key


def _key_files(entry: str | Path) -> list[Path]:
    """The public key files one trust entry names: a file, every ``*.pub`` in a folder, or the project key."""
    if str(entry) == PROJECT_KEY_NAME:
        return [PROJECT_KEY]
    path = Path(entry).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.pub"))
        if not files:
            raise KeyFileError(f"trusted key folder {path} holds no *.pub file")
        return files
    if not path.is_file():
        raise KeyFileError(f"trusted key {path} not found (a .pub file, a folder of them, or {PROJECT_KEY_NAME!r})")
    return [path]


@dataclass(frozen=True)
class TrustedKeys:
    """The public keys whose signatures are accepted, by key id; empty: signatures are not checked."""

    keys: dict[str, tuple[Ed25519PublicKey, Path]]

    @classmethod
    def load(cls, entries: list[str] | tuple[str | Path, ...] | None) -> "TrustedKeys":
        """From trust entries (files, folders, ``project``); read again at each load, so a SIGHUP
        reload sees keys added or removed since the start."""
        keys: dict[str, tuple[Ed25519PublicKey, Path]] = {}
        for entry in entries or ():
            for path in _key_files(entry):
                public = _load_public(path)
                keys[key_id(public)] = (public, path)
        return cls(keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def describe(self) -> str:
        return ", ".join(f"{kid} ({path.name})" for kid, (_, path) in self.keys.items()) or "none"

    def check(self, bundle: Path, manifest_bytes: bytes) -> str:
        """The trusted key id that signed ``manifest_bytes`` (the bytes the caller goes on to parse);
        SignatureError naming why not."""
        where = f"{bundle}: refusing the bundle:"
        sig_path = Path(bundle) / SIGNATURE
        if not sig_path.is_file():
            raise SignatureError(f"{where} it is not signed ({SIGNATURE} is missing) and trusted keys are configured; "
                                 "sign it with `edge-affectsr sign --model BUNDLE --key KEY`")
        kid, signature = _read_signature(sig_path, where)
        if kid not in self.keys:
            raise SignatureError(f"{where} it is signed by key {kid}, which is not trusted here "
                                 f"(trusted: {self.describe()})")
        try:
            self.keys[kid][0].verify(signature, DOMAIN + manifest_bytes)
        except InvalidSignature:
            raise SignatureError(f"{where} the signature of key {kid} does not match {MANIFEST} "
                                 "(changed after signing, or the signature was forged)") from None
        return kid


def _read_signature(path: Path, where: str) -> tuple[str, bytes]:
    """``(key_id, raw signature)`` from ``manifest.sig``; SignatureError when it is malformed."""
    try:
        doc = json.loads(path.read_bytes())
        if not isinstance(doc, dict) or doc.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm is not {ALGORITHM}")
        kid, text = doc["key_id"], doc["signature"]
        if not isinstance(kid, str) or not isinstance(text, str):
            raise ValueError("key_id and signature must be strings")
        signature = base64.b64decode(text, validate=True)
    except (OSError, ValueError, KeyError, binascii.Error) as e:
        raise SignatureError(f"{where} {SIGNATURE} is malformed ({type(e).__name__}: {e})") from None
    if len(signature) != 64:
        raise SignatureError(f"{where} {SIGNATURE} is malformed (an Ed25519 signature has 64 bytes, not {len(signature)})")
    return kid, signature
