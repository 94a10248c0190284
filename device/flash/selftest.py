"""What ``selftest`` runs on the target: verify, load and golden-check a bundle, in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_affectsr.device.flash.errors import one_line
from edge_affectsr.errors import UserError


def selftest(path: str | Path, config: Path | None = None, trust: list[str] | None = None,
             overrides: dict[str, Any] | None = None) -> tuple[bool, str]:
    """Verify (signed by a key of ``trust``, else of the config's ``trust.keys``, when either names
    any), load and golden-check a bundle here: ``(passed, one line)``. ``overrides`` (dotted keys,
    from ``--set``) apply to the device config as in ``run``; a bad one is a FAIL line, like a bad
    config file. Never raises."""
    try:
        from edge_affectsr.runtime.bundle_models import load_bundle  # noqa: PLC0415 - loads the TFLite runtime
        from edge_affectsr.signing import TrustConfig  # noqa: PLC0415

        interpreter, keys = None, TrustConfig(keys=list(trust or []))
        if config is not None or overrides:
            from edge_affectsr.device.service.settings import load_device_config  # noqa: PLC0415

            device = load_device_config(config, overrides)
            interpreter, keys = device.interpreter, keys if trust else device.trust
        bundle = load_bundle(path, interpreter=interpreter, self_test=False, trust=keys)
        result = bundle.self_test()
    except UserError as e:
        return False, f"FAIL: {one_line(e)}"
    except Exception as e:  # noqa: BLE001 - a crash in a model is a failed self-test, said in one line
        return False, f"FAIL: {path}: {type(e).__name__}: {one_line(e)}"
    return True, (f"ok: {bundle.name} v{bundle.version} at {path}: golden PSNR {result.psnr_db:.1f} dB "
                  f">= {result.min_psnr_db:.1f} dB on {bundle.delegate.delegate} ({result.ms:.1f} ms)")
