"""Poll the daemon's health URL until it answers 200: what ``healthcheck`` runs on the target."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request

from edge_affectsr.device.flash.errors import FlashError, HealthCheckError, one_line


def poll_health(url: str, timeout: float = 60.0, interval: float = 0.5) -> str:
    """Poll ``url`` until it answers 200 (then a short line) or ``timeout`` passes (HealthCheckError).
    A refused connection or a 503 (``/healthz`` says ``starting`` until the first frame) is retried."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise FlashError(f"--health-url must be an http(s) URL, got {url!r}")
    start = time.monotonic()
    deadline = start + timeout
    last = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=max(0.5, min(5.0, remaining))) as r:
                status, body = r.status, r.read(4096)
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read(4096)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            status, body = None, b""
            last = f"no answer ({one_line(getattr(e, 'reason', e))})"
        if status is not None:
            last = f"HTTP {status}{_status_field(body)}"
            if status == 200:
                return f"{url} {last} after {time.monotonic() - start:.1f} s"
        if time.monotonic() >= deadline:
            raise HealthCheckError(f"{url} not healthy within {timeout:g} s (last: {last})")
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))


def _status_field(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    return f" {doc['status']}" if isinstance(doc, dict) and "status" in doc else ""
