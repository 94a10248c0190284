"""The on-camera daemon: one frame loop, one supervisor, signals, watchdog, reload.

Why two threads: the frame loop (worker thread) may sit in a model call or in a blocked camera
read for a long time, but signals are delivered to the main thread, and the watchdog must be able
to act exactly when the frame loop cannot. So the main thread only supervises: it waits on an
event with a short timeout, and

- on SIGTERM/SIGINT stops the source, lets the worker finish the frame it is on, flushes and closes
  the sinks (the database last, which checkpoints its WAL) and returns, all within ~2 s; a second
  signal exits at once;
- on SIGHUP loads the bundle again on a helper thread (verify every hash, self-test), and hands it
  to the worker, which switches between two frames; on any failure the old bundle stays and the
  log says why;
- when no frame arrived for ``watchdog.no_frames_s`` it reopens the source (and if the source still
  delivers nothing after another period, the read is stuck in the driver: it exits non-zero);
- when one frame has been in processing for ``watchdog.stuck_s`` (a wedged delegate or driver) it
  exits at once with ``watchdog.exit_code`` via ``os._exit``, so systemd's ``Restart=on-failure``
  brings up a fresh process. Events committed before stay in the database (WAL, see store.py).

A finite input (the built-in clip, a file, a folder) ends the run with exit status 0, as does
``run.max_frames``; a camera that the capture layer gave up on ends it with status 1.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from edge_affectsr.device.capture.frame import FrameSource
from edge_affectsr.device.capture.newest import NewestFrame
from edge_affectsr.device.capture.sources import open_source
from edge_affectsr.device.inference.pipeline import EXTRA_COUNTERS, Pipeline
from edge_affectsr.device.reporting.crops import CropSaver
from edge_affectsr.device.reporting.http_api import HttpApi
from edge_affectsr.device.reporting.jsonl import JsonlSink
from edge_affectsr.device.reporting.mqtt import MqttPublisher
from edge_affectsr.device.reporting.sinks import EventSinks
from edge_affectsr.device.reporting.stats import Stats
from edge_affectsr.device.reporting.store import EventStore
from edge_affectsr.device.service.settings import DeviceConfig
from edge_affectsr.runtime.bundle_models import LoadedBundle, load_bundle

log = logging.getLogger(__name__)

STOP_GRACE_S = 1.5  # of the 2 s budget: the worker's last frame; the rest is closing the sinks
DAEMON_COUNTERS = {**EXTRA_COUNTERS, "reloads": "Bundles reloaded on SIGHUP.",
                   "reconnects": "Times the watchdog reopened a silent source."}


class Daemon:
    """``Daemon(config).run()`` -> exit status. Call ``run`` from the main thread (signal handlers)."""

    def __init__(self, config: DeviceConfig) -> None:
        self.config = config
        self.stats = Stats(config.stats, extra_counters=DAEMON_COUNTERS)
        self.bundle: LoadedBundle | None = None
        self.sinks: EventSinks | None = None
        self.http: HttpApi | None = None
        self.crops: CropSaver | None = None
        self.processed = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._reconnect = threading.Event()
        self._lock = threading.Lock()
        self._pending: LoadedBundle | None = None
        self._source: FrameSource | None = None
        self._busy_since: float | None = None
        self._last_activity = time.monotonic()
        self._stop_reason: str | None = None
        self._stop_at: float | None = None
        self._worker_error: BaseException | None = None
        self._errors_logged = 0

    # --- lifecycle -------------------------------------------------------------------------------

    def run(self) -> int:
        """Start everything, process until the input ends or a signal arrives, shut down; the exit status."""
        self._install_signals()
        self.bundle = self._load()
        self.crops = CropSaver(self.config.crops) if self.config.crops.enabled else None
        self.sinks = self._open_sinks()
        try:
            self.http = self._start_http()
            worker = threading.Thread(target=self._work, name="frame-loop", daemon=True)
            log.info("running: %s", self._describe_run())
            worker.start()
            self._supervise(worker)
            worker.join(max(0.0, (self._stop_at or time.monotonic()) + STOP_GRACE_S - time.monotonic()))
            if worker.is_alive():
                log.warning("the frame in progress did not finish within %.1f s; closing anyway", STOP_GRACE_S)
        finally:
            self._close()
        return self._exit_status()

    def _load(self) -> LoadedBundle:
        cfg = self.config
        return load_bundle(cfg.bundle.path, cfg.interpreter, cfg.detector, cfg.landmarks, cfg.bundle.self_test)

    def _open_sinks(self) -> EventSinks:
        cfg = self.config
        store = EventStore(cfg.store) if cfg.store.enabled else None
        try:
            jsonl = JsonlSink.from_config(cfg.jsonl)
            mqtt = MqttPublisher.from_config(cfg.mqtt)
        except BaseException:
            if store is not None:
                store.close()
            raise
        return EventSinks(store, jsonl, mqtt)

    def _start_http(self) -> HttpApi | None:
        if not self.config.http.enabled:
            return None
        api = HttpApi(self.config.http, self.stats, self.sinks.store if self.sinks else None, self.info)
        api.start()
        return api

    def info(self) -> dict[str, Any]:
        """Fields that can change while running, for /healthz, /api/stats and /metrics."""
        bundle, source = self.bundle, self._source
        out: dict[str, Any] = {"model": bundle.name, "model_version": bundle.version,
                               "delegate": bundle.delegate.delegate} if bundle else {}
        out["source"] = source.name if source else None
        if self.crops is not None:
            out["crops"] = self.crops.summary()
        if self.sinks is not None and self.sinks.mqtt is not None:
            out["mqtt"] = self.sinks.mqtt.summary()
        return out

    def _describe_run(self) -> str:
        cfg = self.config
        outs = [("stdout" if cfg.jsonl.path == "-" else cfg.jsonl.path) if cfg.jsonl.enabled else None,
                str(cfg.store.path) if cfg.store.enabled else None,
                f"mqtt {cfg.mqtt.host}:{cfg.mqtt.port}" if cfg.mqtt.enabled else None]
        limit = f", at most {cfg.run.max_frames} frames" if cfg.run.max_frames else ""
        http = self.http.url if self.http else "off"
        return (f"source {cfg.capture.source.kind}{limit}; events -> {', '.join(o for o in outs if o) or 'nowhere'}; "
                f"HTTP {http}; report per {cfg.pipeline.report}")

    def _close(self) -> None:
        if self.http is not None:
            self.http.stop()
        if self.sinks is not None:
            self.sinks.close(timeout=0.3)
        reason = self._stop_reason or (self._source.stop_reason if self._source else None) or "ended"
        snap = self.stats.snapshot()
        log.info("stopped (%s): %d frames, %d events, %d errors", reason, snap["counters"]["frames"],
                 self.sinks.written if self.sinks else 0, snap["counters"]["errors"])

    def _exit_status(self) -> int:
        if self._worker_error is not None:
            return 1
        gave_up = self._source is not None and (self._source.stop_reason or "").startswith("gave up")
        return 1 if gave_up and not self._stop_reason else 0

    # --- signals ---------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            log.debug("not on the main thread: no signal handlers (stop() to end the run)")
            return
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._on_reload_signal)

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        if self._stop.is_set() and self._stop_reason and self._stop_reason.startswith("SIG"):
            _hard_exit(f"second {signal.Signals(signum).name}: exiting now", 1)
        self.stop(signal.Signals(signum).name)

    def _on_reload_signal(self, signum: int, frame: Any) -> None:
        threading.Thread(target=self._reload, name="bundle-reload", daemon=True).start()

    def stop(self, reason: str = "stopped") -> None:
        """Ask the daemon to finish the current frame and shut down (any thread, or a signal handler)."""
        if not self._stop.is_set():
            self._stop_reason, self._stop_at = reason, time.monotonic()
        self._stop.set()
        self._wake.set()

    # --- supervisor (main thread) ----------------------------------------------------------------

    def _supervise(self, worker: threading.Thread) -> None:
        """Until stop or the end of the input: wake every 0.25 s (or on an event) and run the watchdog."""
        while worker.is_alive():
            self._wake.wait(0.25)
            self._wake.clear()
            if self._stop.is_set():
                self._stop_source()
                return
            self._watchdog()

    def _watchdog(self) -> None:
        cfg, now = self.config.watchdog, time.monotonic()
        busy = self._busy_since
        if busy is not None and now - busy > cfg.stuck_s:
            _hard_exit(f"watchdog: frame processing stuck for {now - busy:.0f} s (> watchdog.stuck_s {cfg.stuck_s:g}); "
                       "exiting so the service manager restarts the daemon", cfg.exit_code)
        if busy is not None or now - self._last_activity <= cfg.no_frames_s:
            return
        if self._reconnect.is_set():
            _hard_exit(f"watchdog: source still silent {cfg.no_frames_s:g} s after reopening it (read stuck in the "
                       "driver); exiting so the service manager restarts the daemon", cfg.exit_code)
        log.warning("watchdog: no frame for %.0f s (> watchdog.no_frames_s); reopening the source", now - self._last_activity)
        self._last_activity = now
        self._reconnect.set()
        self._stop_source()

    def _stop_source(self) -> None:
        with self._lock:
            source = self._source
        if source is not None:
            source.stop()

    def _reload(self) -> None:
        """SIGHUP: load and self-test the bundle again; hand it to the frame loop, or keep the old one."""
        old = self.bundle
        try:
            new = self._load()
        except Exception as e:  # noqa: BLE001 - whatever broke, the running bundle must stay
            log.error("reload failed, keeping bundle %s v%s: %s", old.name if old else "?", old.version if old else "?", e)
            return
        with self._lock:
            self._pending = new
        self._wake.set()

    # --- frame loop (worker thread) --------------------------------------------------------------

    def _work(self) -> None:
        cfg = self.config
        try:
            pipeline = Pipeline(self.bundle, cfg.pipeline, cfg.guard, cfg.align, cfg.tracker, cfg.roi,
                                stats=self.stats, crops=self.crops)
            while not self._stop.is_set():
                source = open_source(cfg.capture.source)
                with self._lock:
                    self._source = source
                self._reconnect.clear()
                self._last_activity = time.monotonic()
                self._consume(pipeline, source)
                if not self._reconnect.is_set():
                    break
                self.stats.inc("reconnects")
        except BaseException as e:  # noqa: BLE001 - reported by the supervisor as the exit status
            self._worker_error = e
            log.error("frame loop failed: %s: %s", type(e).__name__, e)
        finally:
            self._wake.set()

    def _consume(self, pipeline: Pipeline, source: FrameSource) -> None:
        """Process frames until the source ends, a stop or reconnect is asked, or max_frames is reached."""
        frames = NewestFrame(source) if self.config.capture.newest_frame_wins else source
        try:
            for frame in frames:
                self._switch_bundle(pipeline)
                self._process(pipeline, frame, source.name)
                if isinstance(frames, NewestFrame):
                    self.stats.set_counter("drops", frames.dropped)
                if self._reached_max_frames() or self._stop.is_set() or self._reconnect.is_set():
                    break
        finally:
            if isinstance(frames, NewestFrame):
                frames.stop(timeout=0.5)
            else:
                source.stop()
                source.close()

    def _process(self, pipeline: Pipeline, frame, source_name: str) -> None:
        self._busy_since = self._last_activity = time.monotonic()
        try:
            result = pipeline.process(frame, source_name)
            self.sinks.write(result.events)
        except Exception as e:  # noqa: BLE001 - one bad frame must not end the daemon
            self.stats.inc("errors")
            self._log_frame_error(frame.index, e)
        finally:
            self._busy_since = None
            self._last_activity = time.monotonic()
            self.processed += 1

    def _log_frame_error(self, index: int, error: Exception) -> None:
        """The first 10 failures with a traceback, then one line per 1000 (no log flood)."""
        self._errors_logged += 1
        n = self._errors_logged
        if n <= 10:
            log.exception("frame %d failed (%d so far)", index, n)
        elif n % 1000 == 0:
            log.error("frame %d failed (%d so far): %s: %s", index, n, type(error).__name__, error)

    def _switch_bundle(self, pipeline: Pipeline) -> None:
        with self._lock:
            new, self._pending = self._pending, None
        if new is None:
            return
        old, self.bundle = self.bundle, new
        pipeline.use_bundle(new)
        self.stats.inc("reloads")
        log.info("reloaded: now running bundle %s v%s (was %s v%s)", new.name, new.version, old.name, old.version)

    def _reached_max_frames(self) -> bool:
        limit = self.config.run.max_frames
        if limit is not None and self.processed >= limit:
            self.stop(f"max frames ({limit})")
            return True
        return False


def _hard_exit(message: str, status: int) -> None:
    """Log, flush, and leave without cleanup (threads may be wedged): systemd restarts us."""
    log.critical(message)
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001 - exiting regardless
            pass
    sys.stdout.flush()
    os._exit(status)


def run_daemon(config: DeviceConfig) -> int:
    """Entry point for ``edge-affectsr run``."""
    return Daemon(config).run()

