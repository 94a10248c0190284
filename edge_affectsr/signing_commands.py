"""The ``keygen`` and ``sign`` sub-commands: they need only the core, so they live here, not in a stage.

Light imports only at the top (the cryptography package loads in ``run()``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_affectsr.cli_args import add_model


class Keygen:
    """Make an Ed25519 key pair for signing bundles: the private key at KEY (mode 0600; keep it off the
    repository and off the cameras) and the public key beside it as KEY with the suffix .pub (or
    --public), which is what cameras and `flash --trust` are given. An existing file is never
    overwritten."""

    help = "make an Ed25519 key pair for signing bundles (private KEY, public KEY.pub)"
    examples = ("edge-affectsr keygen ~/keys/release.key",)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("key", type=Path, help="where to write the private key, e.g. ~/keys/release.key")
        p.add_argument("--public", type=Path, help="where to write the public key (default: KEY with the suffix .pub)")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.errors import UserError  # noqa: PLC0415
        from edge_affectsr.signing import generate_keypair  # noqa: PLC0415

        public = args.public or args.key.with_suffix(".pub")
        if public.resolve() == args.key.resolve():
            raise UserError(f"the public key would overwrite the private one ({public}); pass --public")
        kid = generate_keypair(args.key, public)
        print(f"key {kid}: private {args.key} (keep it secret), public {public} (give it to the cameras: trust.keys)")
        return 0


class Sign:
    """Sign an existing bundle: check every file's sha256 against its manifest, then write
    manifest.sig (an Ed25519 signature over manifest.json) into the bundle folder, replacing an older
    one. Cameras and `flash` with trusted keys (trust.keys, --trust) refuse bundles that are unsigned,
    signed by a key they do not trust, or changed after signing."""

    help = "sign a bundle's manifest with an Ed25519 private key (writes BUNDLE/manifest.sig)"
    examples = ("edge-affectsr sign --model out/bundle-x4 --key ~/keys/release.key",)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        add_model(p, "the bundle to sign: a bundle folder or a shipped bundle's name, e.g. bundle-x4; required",
                  old="BUNDLE", required=True)
        p.add_argument("--key", type=Path, required=True, help="the private key (from `edge-affectsr keygen`); required")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.bundle import verify_bundle  # noqa: PLC0415
        from edge_affectsr.models import resolve_model  # noqa: PLC0415
        from edge_affectsr.signing import SigningKey, TrustedKeys  # noqa: PLC0415

        key = SigningKey.load(args.key)
        bundle = resolve_model(args.model)
        manifest = verify_bundle(bundle)  # sign only what its hashes vouch for
        out = key.sign_bundle(bundle)
        verify_bundle(bundle, TrustedKeys({key.key_id: (key.key.public_key(), args.key)}))
        print(f"signed {manifest.name} v{manifest.version} ({bundle}) with key {key.key_id}: {out}")
        return 0
