"""The live web view at ``/``: the page, its assets, and the endpoints it reads, mounted on the
daemon's HTTP API (same host and port; none of it exists when ``http.enabled`` is false).

Why server-sent events: one long GET per browser carries every update as a line of JSON, which
the stdlib server can write and any browser reads with ``EventSource`` (it reconnects by itself);
the frame and face images are separate small GETs the page makes only for what it shows, so a
view costs the camera nothing when nobody watches and little when someone does. No build step, no
CDN: the page is three files shipped in the package (``device/reporting/web/``) and works offline.

Endpoints (all GET):

- ``/``, ``/app.js``, ``/style.css``: the page.
- ``/api/live``: the current state once, as JSON (:meth:`LiveState.message`).
- ``/api/live/stream``: the same as server-sent events, at most one every ``web.interval_s``, a
  comment every 15 s when nothing happens; only new history points after the first.
- ``/api/live/frame.jpg?index=N``, ``/api/live/face.png?id=N&kind=lr|sr``: the images, 403 when
  ``preview`` is off (privacy: nothing is kept to serve, see :mod:`~edge_affectsr.device.reporting.live_state`).
"""

from __future__ import annotations

import json
import threading
from importlib import resources
from typing import Any, Callable, Mapping

from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr.device.reporting.http_api import BadRequest, Response, json_response
from edge_affectsr.device.reporting.live_state import IMAGE_KINDS, LiveState
from edge_affectsr.device.reporting.stats import Stats
from edge_affectsr.errors import UserError

ASSETS = {"/": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8")}
SSE = "text/event-stream; charset=utf-8"
KEEPALIVE_S = 15.0
PREVIEW_OFF = "preview is off: frames and faces are not shown (set preview: true in the device config to see them)"

Route = Callable[[dict[str, list[str]]], Response]


class WebConfig(BaseModel):
    """The ``web:`` section of the device config: the live view the HTTP API serves at ``/``."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="serve the live view at / (needs http.enabled; images only with preview: true)")
    faces: int = Field(12, ge=1, le=100, description="the last faces shown as LR | SR cards")
    tracks: int = Field(6, ge=1, le=50, description="tracks with an expression chart (the most recently seen)")
    history: int = Field(90, ge=2, le=1000, description="upscales per track in its chart")
    interval_s: float = Field(0.2, ge=0.02, le=10, description="shortest time between two updates sent to a browser")
    max_viewers: int = Field(4, ge=1, le=64, description="browsers served at once (each holds one connection open)")


class WebView:
    """The page and its endpoints over a :class:`LiveState`; ``routes()`` is mounted on the HTTP API.

    ``info`` is the daemon's per-request info (model, version, delegate, source), shown in the header.
    """

    def __init__(self, config: WebConfig, state: LiveState, stats: Stats,
                 info: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.config, self.state, self.stats = config, state, stats
        self.info = info or dict
        self._assets = {route: (_asset(name), ctype) for route, (name, ctype) in ASSETS.items()}
        self._viewers = threading.BoundedSemaphore(config.max_viewers)

    def routes(self) -> dict[str, Route]:
        static = {route: self._static(route) for route in self._assets}
        return {**static, "/api/live": self.live, "/api/live/stream": self.stream,
                "/api/live/frame.jpg": self.frame, "/api/live/face.png": self.face}

    def _static(self, route: str) -> Route:
        body, ctype = self._assets[route]
        return lambda query: Response(200, body, ctype)

    def live(self, query: dict[str, list[str]]) -> Response:
        return json_response(200, self.update(0))

    def update(self, since: int) -> dict[str, Any]:
        """One message: the state (history after ``since``), the stats and the run's info."""
        snap = self.stats.snapshot()
        stats = {"fps": snap["fps"], "frames": snap["counters"].get("frames", 0),
                 "faces": snap["counters"].get("faces", 0),
                 "latency_ms": {stage: s["p50"] for stage, s in snap["latency_ms"].items()}}
        return {**self.state.message(since), "stats": stats, "info": dict(self.info()), "closed": self.state.closed}

    def stream(self, query: dict[str, list[str]]) -> Response:
        return Response(200, b"retry: 3000\n\n", SSE, stream=self._send_updates)

    def _send_updates(self, write: Callable[[bytes], None]) -> None:
        """Write updates until the run ends or the browser leaves (``write`` raises). Over
        ``max_viewers`` one ``busy`` event, and the page says so."""
        if not self._viewers.acquire(blocking=False):
            busy = {"error": f"{self.config.max_viewers} browsers are watching already (web.max_viewers)"}
            write(b"event: busy\ndata: " + json.dumps(busy).encode() + b"\n\n")
            return
        try:
            sent = 0
            while True:
                message = self.update(sent)
                sent = message["seq"]
                write(b"data: " + json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n\n")
                if message["closed"]:
                    return
                self.state.pause(self.config.interval_s)  # at most one update per interval
                while not self.state.wait_newer(sent, KEEPALIVE_S) and not self.state.closed:
                    write(b": keep-alive\n\n")
        finally:
            self._viewers.release()

    def frame(self, query: dict[str, list[str]]) -> Response:
        if not self.state.preview:
            return json_response(403, {"error": PREVIEW_OFF})
        index = _int(query, "index", required=False)
        found = self.state.frame_jpeg(index)
        if found is None:
            return json_response(404, {"error": "no frame yet" if index is None else f"frame {index} is no longer kept"})
        return Response(200, found[1], "image/jpeg")

    def face(self, query: dict[str, list[str]]) -> Response:
        if not self.state.preview:
            return json_response(403, {"error": PREVIEW_OFF})
        face_id, kind = _int(query, "id"), _text(query, "kind")
        if kind not in IMAGE_KINDS:
            raise BadRequest(f"kind={kind!r}: use one of {', '.join(IMAGE_KINDS)}")
        png = self.state.face_png(face_id, kind)
        if png is None:
            return json_response(404, {"error": f"face {face_id} is no longer kept (the last {self.config.faces} are)"})
        return Response(200, png, "image/png")


def _asset(name: str) -> bytes:
    try:
        return resources.files("edge_affectsr.device.reporting").joinpath("web", name).read_bytes()
    except (FileNotFoundError, OSError) as e:
        raise UserError(f"the web view's {name} is missing from the installed package ({e}); reinstall "
                        "edge-affectsr, or set web.enabled: false") from None


def _text(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    if not values or len(values) != 1:
        raise BadRequest(f"give {name} once")
    return values[0]


def _int(query: dict[str, list[str]], name: str, required: bool = True) -> int | None:
    if name not in query and not required:
        return None
    text = _text(query, name).strip()
    if not (text.isascii() and text.isdigit() and len(text) < 19):
        raise BadRequest(f"{name}={text!r} must be a whole number")
    return int(text)
