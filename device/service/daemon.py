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
- when no frame arrived for ``watchdog.no_frames_s`` it replaces the source with a new one that
  resumes it (a folder goes on after the last image taken, a camera's backoff keeps growing), and if
  that still delivers nothing after another period, the read is stuck in the driver: it exits
  non-zero. A camera that is waiting out its own reconnect backoff is left alone;
- when one frame has been in processing for ``watchdog.stuck_s`` (a wedged delegate or driver) it
  exits at once with ``watchdog.exit_code`` via ``os._exit``, so systemd's ``Restart=on-failure``
  brings up a fresh process. Events committed before stay in the database (WAL, see store.py).

Under systemd (``Type=notify``, ``deploy/edge-affectsr.service``) it sends ``READY=1`` once the
bundle passed its self-test and the outputs are open, ``WATCHDOG=1`` from the frame loop (and from
the supervisor while a camera waits out its backoff), ``RELOADING=1``/``READY=1`` around a SIGHUP
reload and ``STOPPING=1`` on the way out (``sd_notify.py``). Counters, health, /metrics and the MQTT
stats are ``telemetry.py``'s.

A finite input (the built-in clip, a file, a folder) ends the run with exit status 0, as does
``run.max_frames``; a camera that the capture layer gave up on ends it with status 1; an input that
cannot be used (a video file that cannot be opened or decoded) is a UserError: ``error: ...``, 2.
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
from edge_affectsr.device.inference.pipeline import Pipeline
from edge_affectsr.device.reporting.crops import CropSaver
from edge_affectsr.device.reporting.http_api import HttpApi
from edge_affectsr.device.reporting.jsonl import JsonlSink
from edge_affectsr.device.reporting.mqtt import MqttPublisher
from edge_affectsr.device.reporting.sinks import EventSinks
from edge_affectsr.device.reporting.store import EventStore
from edge_affectsr.device.service.outputs import FrameOutputs
from edge_affectsr.device.service.sd_notify import SystemdNotifier
from edge_affectsr.device.service.settings import DeviceConfig
from edge_affectsr.device.service.telemetry import Telemetry
from edge_affectsr.errors import UserError
from edge_affectsr.runtime.bundle_models import LoadedBundle, load_bundle

log = logging.getLogger(__name__)

STOP_GRACE_S = 1.5  # of the 2 s budget: the worker's last frame; the rest is closing the sinks


class Daemon:
    """``Daemon(config).run()`` -> exit status. Call ``run`` from the main thread (signal handlers)."""

    def __init__(self, config: DeviceConfig) -> None:
        self.config = config
        self.notifier = SystemdNotifier()
        self.telemetry = Telemetry(config, lambda: self.bundle, lambda: self._source, self.notifier)
        self.stats = self.telemetry.stats
        self.bundle: LoadedBundle | None = None
        self.sinks: EventSinks | None = None
        self.http: HttpApi | None = None
        self.crops: CropSaver | None = None
        self.outputs: FrameOutputs | None = None  # live view state, --save video, --report CSV
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
        self.telemetry.attach(self.sinks, self.crops)
        try:
            self.outputs = FrameOutputs.from_config(self.config, self.bundle.critic.classes)
            self.http = self._start_http()
            worker = threading.Thread(target=self._work, name="frame-loop", daemon=True)
            log.info("running: %s", self._describe_run())
            self.notifier.ready(f"running bundle {self.bundle.name} v{self.bundle.version}")
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
        return load_bundle(cfg.bundle.path, cfg.interpreter, cfg.detector, cfg.landmarks, cfg.bundle.self_test, cfg.trust)

    def _open_sinks(self) -> EventSinks:
        cfg = self.config
        store = EventStore(cfg.store) if cfg.store.enabled else None
        try:
            jsonl = JsonlSink.from_config(cfg.jsonl)
            mqtt = MqttPublisher.from_config(cfg.mqtt, self.telemetry.camera)
        except BaseException:
            if store is not None:
                store.close()
            raise
        return EventSinks(store, jsonl, mqtt)

    def _start_http(self) -> HttpApi | None:
        if not self.config.http.enabled:
            return None
        t = self.telemetry
        api = HttpApi(self.config.http, self.stats, self.sinks.store if self.sinks else None, t.info, t.sections(),
                      t.health, t.metrics)
        api.routes.update(self.outputs.web_routes(self.stats, t.info))
        api.start()
        if self.outputs.live is not None:
            log.info("live view at %s/ (preview %s)", api.url, "on" if self.config.preview else "off: no frames or faces")
        return api

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
        self.notifier.stopping()
        if self.outputs is not None:
            self.outputs.close()  # the live view's streams end, the video and the report are finished
        if self.http is not None:
            self.http.stop()
        if self.sinks is not None:
            self.sinks.close(timeout=0.3)
        reason = (self._stop_reason or ("failed" if self._worker_error is not None else None)
                  or (self._source.stop_reason if self._source else None) or "ended")
        snap = self.stats.snapshot()
        log.info("stopped (%s): %d frames, %d events, %d errors", reason, snap["counters"]["frames"],
                 self.sinks.written if self.sinks else 0, snap["counters"]["errors"])

    def _exit_status(self) -> int:
        if isinstance(self._worker_error, UserError):  # an input to fix: "error: ..." and 2, as at start-up
            raise self._worker_error
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
        """Until stop or the end of the input: wake every 0.25 s (or on an event), run the watchdog
        and the telemetry's tick."""
        while worker.is_alive():
            self._wake.wait(0.25)
            self._wake.clear()
            if self._stop.is_set():
                self.notifier.stopping()
                self._stop_source()
                return
            self._watchdog()
            self.telemetry.tick()

    def _watchdog(self) -> None:
        """A frame in processing past ``stuck_s``: exit. Otherwise the loop is waiting for a frame,
        which is systemd's sign of life; a silent source (not one waiting out its own backoff) is
        replaced, and one still silent after that means a read stuck in the driver: exit."""
        cfg, now = self.config.watchdog, time.monotonic()
        busy = self._busy_since
        if busy is not None:
            if now - busy > cfg.stuck_s:
                _hard_exit(f"watchdog: frame processing stuck for {now - busy:.0f} s (> watchdog.stuck_s "
                           f"{cfg.stuck_s:g}); exiting so the service manager restarts the daemon", cfg.exit_code)
            return  # the frame loop pings systemd itself when the frame is done
        self.notifier.watchdog()
        if self._source is not None and self._source.reconnecting:  # the camera's own backoff is at work
            self._last_activity = now
            return
        if now - self._last_activity <= cfg.no_frames_s:
            return
        if self._reconnect.is_set():
            _hard_exit(f"watchdog: source still silent {cfg.no_frames_s:g} s after reopening it (read stuck in the "
                       "driver); exiting so the service manager restarts the daemon", cfg.exit_code)
        log.warning("watchdog: no frame for %.0f s (> watchdog.no_frames_s); reopening the source", now - self._last_activity)
        self.reopen_source()

    def reopen_source(self) -> None:
        """Replace the source with a new one that resumes it, after the frame in progress (the
        watchdog's remedy for a silent source; any thread)."""
        self._last_activity = time.monotonic()
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
        self.notifier.reloading()
        try:
            new = self._load()
        except Exception as e:  # noqa: BLE001 - whatever broke, the running bundle must stay
            log.error("reload failed, keeping bundle %s v%s: %s", old.name if old else "?", old.version if old else "?", e)
            self.notifier.ready("reload failed; running the previous bundle")
            return
        with self._lock:
            self._pending = new
        self._wake.set()
        self.notifier.ready(f"reloaded: bundle {new.name} v{new.version}")

    # --- frame loop (worker thread) --------------------------------------------------------------

    def _work(self) -> None:
        cfg = self.config
        try:
            pipeline = Pipeline(self.bundle, cfg.pipeline, cfg.guard, cfg.align, cfg.tracker, cfg.roi,
                                stats=self.stats, crops=self.crops, budget=cfg.budget, smoothing=cfg.smoothing,
                                summaries=cfg.summaries)
            while not self._stop.is_set():
                source = open_source(cfg.capture.source, cfg.capture.limits, previous=self._source)
                with self._lock:
                    self._source = source
                self._reconnect.clear()
                self._last_activity = time.monotonic()
                self._consume(pipeline, source)
                if not self._reconnect.is_set():
                    break
                self.stats.inc("reconnects")
            self.sinks.write(pipeline.finish(self._source.name if self._source else ""))  # live tracks, last window
        except BaseException as e:  # noqa: BLE001 - reported by the supervisor as the exit status
            self._worker_error = e
            if not isinstance(e, UserError):  # a UserError is the CLI's one "error: ..." line
                log.error("frame loop failed: %s: %s", type(e).__name__, e)
        finally:
            self._wake.set()

    def _consume(self, pipeline: Pipeline, source: FrameSource) -> None:
        """Process frames until the source ends, a stop or reconnect is asked, or max_frames is reached."""
        frames = NewestFrame(source) if self.config.capture.newest_frame_wins else source
        dropped = 0  # this source's drops counted so far (a replaced source's count starts again at 0)
        try:
            for frame in frames:
                self._switch_bundle(pipeline)
                self._process(pipeline, frame, source.name)
                if isinstance(frames, NewestFrame) and frames.dropped > dropped:
                    self.stats.inc("drops", frames.dropped - dropped)
                    dropped = frames.dropped
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
            self.sinks.write(result.records)
            self.outputs.observe(frame, result, source_name)
        except Exception as e:  # noqa: BLE001 - one bad frame must not end the daemon
            self.stats.inc("errors")
            self._log_frame_error(frame.index, e)
        finally:
            self.notifier.watchdog()  # the loop is alive (a frame that failed still came round)
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

