"""GET over real HTTP for the device tests: status, content type and body, 4xx/5xx returned, not raised."""

from __future__ import annotations

import urllib.error
import urllib.request


def get(url: str, timeout: float = 10) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()
