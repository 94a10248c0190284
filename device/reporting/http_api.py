"""The daemon's HTTP API: health, stats, Prometheus metrics, recent events. Read-only, loopback by default.

Why the stdlib server: four GET endpoints with small JSON bodies need no framework, and a device
install should not pull one in. Each request runs on its own daemon thread
(``ThreadingHTTPServer``); the handlers only read from :class:`~edge_affectsr.device.reporting.stats.Stats` and the
store's read connection, so a slow client never stalls the frame loop. There is no
authentication: bind to anything but loopback only behind a firewall or a reverse proxy (a warning
is logged when you do).

Every answer is JSON except ``/metrics`` (Prometheus text, ``device/reporting/metrics.py``). A bad
query is a 400 with ``{"error": ...}``, an unknown path a 404, a failure inside a handler a logged
500 with a short JSON body: a client never sees a traceback. ``/healthz`` is 200 only while the
daemon is healthy; 503 ``starting`` before the first frame and 503 ``degraded`` with the reasons
(no frame, events lost, a delegate fallback: ``device/reporting/health.py``) otherwise. HEAD works
wherever GET does. The live view (``device/reporting/web_view.py``) adds its page, images and
server-sent events to ``routes``; a :class:`Response` with ``stream`` writes on until it returns.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr.device.reporting.health import Health
from edge_affectsr.device.reporting.metrics import CONTENT_TYPE as PROMETHEUS
from edge_affectsr.device.reporting.metrics import Metrics
from edge_affectsr.device.reporting.stats import Stats
from edge_affectsr.device.reporting.store import MAX_LIMIT, EventStore, SinceError, StoreError, parse_since
from edge_affectsr.errors import UserError

log = logging.getLogger(__name__)

JSON = "application/json"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class HttpError(UserError):
    """The API cannot listen where configured (port in use, address not on this machine)."""


class BadRequest(ValueError):
    """A query the client must fix; becomes a 400 with the message."""


class HttpConfig(BaseModel):
    """The ``http:`` section of the device config."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="serve /healthz, /api/stats, /metrics and /api/events")
    host: str = Field("127.0.0.1", description="address to listen on (127.0.0.1: this machine only)")
    port: int = Field(8080, ge=0, le=65535, description="port; 0: any free port (tests)")
    watchdog_s: float = Field(10.0, gt=0, description="/healthz is 503 when no frame was processed for this long")
    loss_window_s: float = Field(
        60.0, gt=0, description="/healthz is 503 while events were lost (store, JSON lines, MQTT) within this long")
    max_events: int = Field(1000, ge=1, le=MAX_LIMIT, description="largest ?limit= for /api/events")
    default_events: int = Field(100, ge=1, le=MAX_LIMIT, description="events /api/events returns without ?limit=")


@dataclass(frozen=True)
class Response:
    """``stream``, when set, writes more of the body after ``body`` until it returns (server-sent
    events of the live view, ``device/reporting/web_view.py``): no Content-Length, GET only."""

    status: int
    body: bytes
    content_type: str = JSON
    stream: Callable[[Callable[[bytes], None]], None] | None = None


def json_response(status: int, data: Any) -> Response:
    return Response(status, json.dumps(data, allow_nan=False, default=str).encode() + b"\n")


class HttpApi:
    """``start()`` serves on a daemon thread and returns the URL; ``stop()`` ends it (bounded).

    ``info`` is called per request for the fields that can change while running (model name and
    version after a SIGHUP reload, the delegate in use), e.g. ``lambda: {"model": ..., "delegate": ...}``;
    flat strings, as they are also the labels of ``edge_affectsr_info`` in /metrics. ``sections`` adds
    named blocks to /api/stats only, e.g. ``{"mqtt": publisher.summary, "crops": saver.summary}``.
    ``health`` and ``metrics`` default to ones built on ``stats`` alone (frames only, no loss counts).
    """

    def __init__(self, config: HttpConfig | None = None, stats: Stats | None = None, store: EventStore | None = None,
                 info: Callable[[], Mapping[str, Any]] | None = None,
                 sections: Mapping[str, Callable[[], Any]] | None = None, health: Health | None = None,
                 metrics: Metrics | None = None) -> None:
        self.config = config or HttpConfig()
        self.stats = stats or Stats()
        self.store = store
        self.info = info or dict
        self.sections = dict(sections or {})
        self.health = health or Health(self.stats, self.config.watchdog_s, self.config.loss_window_s)
        self.metrics = metrics or Metrics(self.stats, socket.gethostname(), lambda: self.info(), self.health.check)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.routes: dict[str, Callable[[dict[str, list[str]]], Response]] = {
            "/healthz": self.healthz, "/api/stats": self.api_stats, "/metrics": self.prometheus, "/api/events": self.api_events,
        }

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> str:
        """Bind and serve in the background; the base URL. HttpError when the address cannot be used."""
        host, port = self.config.host, self.config.port
        try:
            server = _server_class(host)((host, port), _Handler)
        except OSError as e:
            raise HttpError(f"cannot serve the HTTP API on {host}:{port}: {e.strerror or e}; "
                            "set http.port (or http.enabled: false)") from None
        server.api = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="http-api", daemon=True)
        self._thread.start()
        if host not in LOOPBACK:
            log.warning("HTTP API on %s: reachable from the network, with no authentication", host)
        log.info("HTTP API at %s", self.url)
        return self.url

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self.config.port

    @property
    def url(self) -> str:
        host = self.config.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def stop(self) -> None:
        """Stop accepting requests and close the socket (within ~0.2 s; running requests finish on their own)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(2.0)
        log.info("HTTP API stopped")

    def __enter__(self) -> "HttpApi":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- endpoints -------------------------------------------------------------------------------

    def handle(self, path: str) -> Response:
        """Route one GET request path (with its query) to a response; never raises."""
        try:
            url = urlsplit(path)
            query = parse_qs(url.query, keep_blank_values=True, max_num_fields=20)
        except ValueError as e:  # more than 20 fields, a malformed "//[host" target
            return json_response(400, {"error": f"bad request target: {e}"})
        route = self.routes.get(url.path.rstrip("/") or "/")
        if route is None:
            return json_response(404, {"error": f"no such endpoint: {url.path}", "endpoints": sorted(self.routes)})
        try:
            return route(query)
        except (BadRequest, SinceError) as e:
            return json_response(400, {"error": str(e)})
        except StoreError as e:
            return json_response(503, {"error": str(e)})
        except Exception:  # noqa: BLE001 - the client gets a 500, the log gets the traceback
            log.exception("HTTP API: %s failed", url.path)
            return json_response(500, {"error": "internal error; see the daemon's log"})

    def healthz(self, query: dict[str, list[str]]) -> Response:
        """200 ``ok``; 503 ``starting`` before the first frame, 503 ``degraded`` with ``reasons``."""
        report = self.health.check()
        age = self.stats.last_frame_age()
        body = {"status": report.status, "reasons": list(report.reasons),
                "last_frame_age_s": None if age is None else round(age, 3), "watchdog_s": self.config.watchdog_s,
                "frames": self.stats.counter("frames"), "events_lost_in_window": report.lost_in_window, **self.info()}
        return json_response(200 if report.healthy else 503, body)

    def api_stats(self, query: dict[str, list[str]]) -> Response:
        report = self.health.check()
        body = {**self.info(), **self.stats.snapshot(), "health": {"status": report.status, "reasons": list(report.reasons)}}
        if self.store is not None:
            body["store"] = self.store.summary()
        body.update({name: section() for name, section in self.sections.items()})
        return json_response(200, body)

    def prometheus(self, query: dict[str, list[str]]) -> Response:
        return Response(200, self.metrics.render(), PROMETHEUS)

    def api_events(self, query: dict[str, list[str]]) -> Response:
        """``?since=<id|ISO time>&limit=N``: events after an id or from a time, oldest first."""
        if self.store is None:
            return json_response(404, {"error": "the event store is disabled (store.enabled: false)"})
        unknown = sorted(set(query) - {"since", "limit"})
        if unknown:
            raise BadRequest(f"unknown query parameter(s) {', '.join(unknown)}; use since and limit")
        since_text, limit_text = _single(query, "since"), _single(query, "limit")
        since = parse_since(since_text) if since_text is not None else None
        limit = _limit(limit_text, self.config.default_events, self.config.max_events)
        events = self.store.events_since(since, limit)
        next_since = events[-1]["id"] if events else since if isinstance(since, int) else None
        return json_response(200, {"events": events, "count": len(events), "next_since": next_since})


def _single(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if values is None:
        return None
    if len(values) != 1 or not values[0].strip():
        raise BadRequest(f"give {name} once, with a value")
    return values[0]


def _limit(text: str | None, default: int, maximum: int) -> int:
    if text is None:
        return default
    digits = text.strip()
    if (not (digits.isascii() and digits.isdigit()) or len(digits) > len(str(maximum))  # "²".isdigit() is True
            or not 1 <= int(digits) <= maximum):
        raise BadRequest(f"limit={text!r} must be a whole number from 1 to {maximum}")
    return int(text)


def _server_class(host: str) -> type[ThreadingHTTPServer]:
    if ":" not in host:
        return ThreadingHTTPServer

    class _V6(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    return _V6


class _Handler(BaseHTTPRequestHandler):
    """Hands GETs to the server's :class:`HttpApi`; logs requests at DEBUG, not to stderr."""

    server_version = "edge-affectsr"
    timeout = 10  # a client that stalls mid-request frees its thread after this many seconds

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(with_body=True)

    def do_HEAD(self) -> None:  # noqa: N802 - HEAD-based health checks: GET's status and headers, no body
        self._answer(with_body=False)

    def _answer(self, with_body: bool) -> None:
        response = self.server.api.handle(self.path)  # type: ignore[attr-defined]
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            if response.stream is None:
                self.send_header("Content-Length", str(len(response.body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if with_body:
                self.wfile.write(response.body)
                if response.stream is not None:
                    response.stream(self._write_now)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            log.debug("HTTP client went away before the answer to %s", self.path)

    def _write_now(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        log.debug("%s %s", self.address_string(), format % args)
