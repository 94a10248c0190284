"""``edge-affectsr bench``: the whole device pipeline on a video, timed like the daemon runs it.

Why a video and not in-memory frames: "end to end" on a camera includes getting the frame, so the
benchmark decodes every frame with OpenCV (as ``VideoSource`` does for a file or stream), runs the
pipeline exactly as the daemon configures it (same detector tiles, ROI tracking, guard) and
commits each frame's events to a real SQLite store in a temporary folder. fps = processed frames /
wall time after a warm-up; per-stage p50/p95 come from the same :class:`~edge_affectsr.device.reporting.stats.Stats` the
daemon serves on ``/api/stats``. Each thread count gets a freshly loaded bundle (interpreters are
built with their thread count).

Soak mode runs the same loop for minutes and samples the resident set size every few seconds;
growth is the median RSS of the last tenth of the run against the median of the first tenth after
warm-up, in percent (a leak shows as steady growth; allocator noise as a few %).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from edge_affectsr.device.capture.builtin import BuiltinSequence
from edge_affectsr.device.capture.sources import VideoSource
from edge_affectsr.device.inference.pipeline import EXTRA_COUNTERS, STAGES, Pipeline
from edge_affectsr.device.service.batch_timing import per_face_ms
from edge_affectsr.device.reporting.stats import Stats, StatsConfig
from edge_affectsr.device.reporting.store import EventStore, StoreConfig
from edge_affectsr.device.service.settings import DeviceConfig
from edge_affectsr.errors import UserError
from edge_affectsr.reports import write_json
from edge_affectsr.runtime.bundle_models import load_bundle

WARMUP_FRAMES = 10


class BenchError(UserError):
    """A benchmark input that cannot be used (missing or unreadable video)."""


def write_builtin_video(path: Path, frames: int = 120, fps: float = 25.0) -> Path:
    """The built-in clip (640x480, one small moving face) as an MJPG AVI: OpenCV can always write and read it."""
    seq = BuiltinSequence(frames)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, seq.size)
    if not writer.isOpened():
        raise BenchError(f"OpenCV cannot write {path} (MJPG); pass --source VIDEO")
    try:
        for i in range(frames):
            writer.write(seq.render(i))
    finally:
        writer.release()
    return path


def probe_video(path: Path) -> None:
    """Decode the first frame before any model loads: a file that cannot be opened or decoded is a
    CaptureError naming it at once (it used to be retried forever, so ``--seconds`` never came)."""
    source = VideoSource(str(path))
    try:
        next(iter(source), None)
    finally:
        source.stop()
        source.close()


def rss_bytes() -> int:
    """Resident set size of this process (psutil when installed, else /proc/self/statm)."""
    try:
        import psutil  # noqa: PLC0415 - optional

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class BenchLoop:
    """One loaded bundle + pipeline + store, fed from a looping video."""

    def __init__(self, config: DeviceConfig, bundle_path: str | None, video: Path, threads: int, db: Path,
                 keep_all_samples: bool = True) -> None:
        self.config = config.model_copy(update={"interpreter": config.interpreter.model_copy(update={"threads": threads})})
        cfg = self.config
        self.bundle = load_bundle(bundle_path, cfg.interpreter, cfg.detector, cfg.landmarks, self_test=True)
        self.store = EventStore(StoreConfig(path=db, retention_days=None, max_size_mb=None))
        # timing runs keep every sample (exact quantiles); the soak keeps the daemon's rolling window,
        # so its memory is the daemon's and not a growing list of samples
        self._stats_config = StatsConfig(window=1_000_000, fps_window_s=3600) if keep_all_samples else cfg.stats
        self.pipeline = Pipeline(self.bundle, cfg.pipeline, cfg.guard, cfg.align, cfg.tracker, cfg.roi,
                                 stats=self._fresh_stats(), budget=cfg.budget, smoothing=cfg.smoothing,
                                 summaries=cfg.summaries)
        self.source = VideoSource(str(video), loop=True)
        self._frames = iter(self.source)
        self.faces = 0

    def _fresh_stats(self) -> Stats:
        return Stats(self._stats_config, extra_counters=EXTRA_COUNTERS)

    def step(self) -> None:
        """Decode one frame, process it, commit its events."""
        frame = next(self._frames)
        result = self.pipeline.process(frame, self.source.name)
        self.store.insert_many(result.records)
        self.faces += len(result.faces)

    def reset_stats(self) -> None:
        self.pipeline.stats = self._fresh_stats()
        self.faces = 0

    def close(self) -> None:
        self.source.stop()
        self.source.close()
        self.store.close()


def run_for(loop: BenchLoop, seconds: float, every: Callable[[float], None] | None = None) -> tuple[int, float]:
    """Step for ``seconds`` of wall time; (frames, elapsed). ``every(elapsed)`` is called after each frame."""
    start = time.perf_counter()
    frames = 0
    while (elapsed := time.perf_counter() - start) < seconds:
        loop.step()
        frames += 1
        if every is not None:
            every(elapsed)
    return frames, time.perf_counter() - start


def bench_threads(config: DeviceConfig, bundle: str | None, video: Path, threads: int, seconds: float) -> dict[str, Any]:
    """fps and per-stage p50/p95 ms for one thread count."""
    with tempfile.TemporaryDirectory(prefix="edge-affectsr-bench-") as tmp:
        loop = BenchLoop(config, bundle, video, threads, Path(tmp) / "events.db")
        try:
            for _ in range(WARMUP_FRAMES):
                loop.step()
            loop.reset_stats()
            frames, elapsed = run_for(loop, seconds)
            snap = loop.pipeline.stats.snapshot()
            faces = loop.faces
            per_face = per_face_ms(loop.bundle)
        finally:
            loop.close()
    stages = {k: {"p50": v["p50"], "p95": v["p95"]} for k, v in snap["latency_ms"].items()}
    return {"threads": threads, "frames": frames, "seconds": round(elapsed, 2), "fps": round(frames / elapsed, 2),
            "faces_per_frame": round(faces / max(frames, 1), 3), "latency_ms": stages,
            "counters": snap["counters"], "delegate": loop.bundle.delegate.delegate, "per_face_ms": per_face}


def soak(config: DeviceConfig, bundle: str | None, video: Path, minutes: float, threads: int = 2,
         sample_s: float = 5.0) -> dict[str, Any]:
    """RSS over a long run; growth % between the first and last tenth (after warm-up)."""
    samples: list[tuple[float, int]] = []
    next_sample = [0.0]

    def sample(elapsed: float) -> None:
        if elapsed >= next_sample[0]:
            samples.append((round(elapsed, 1), rss_bytes()))
            next_sample[0] += sample_s

    with tempfile.TemporaryDirectory(prefix="edge-affectsr-soak-") as tmp:
        loop = BenchLoop(config, bundle, video, threads, Path(tmp) / "events.db", keep_all_samples=False)
        try:
            for _ in range(WARMUP_FRAMES):
                loop.step()
            frames, elapsed = run_for(loop, minutes * 60, sample)
        finally:
            loop.close()
    rss = np.array([r for _, r in samples], dtype=np.float64)
    tenth = max(1, len(rss) // 10)
    first, last = float(np.median(rss[:tenth])), float(np.median(rss[-tenth:]))
    return {"minutes": round(elapsed / 60, 2), "frames": frames, "fps": round(frames / elapsed, 2), "threads": threads,
            "rss_mb_first": round(first / 1e6, 1), "rss_mb_last": round(last / 1e6, 1),
            "rss_mb_max": round(float(rss.max()) / 1e6, 1), "growth_pct": round(100 * (last - first) / first, 2),
            "samples": [{"t_s": t, "rss_mb": round(r / 1e6, 2)} for t, r in samples]}


def markdown(results: list[dict[str, Any]], soak_result: dict[str, Any] | None = None) -> str:
    """The tables ``bench`` prints: one row per thread count, p50 / p95 ms per stage."""
    stages = [s for s in (*STAGES, "frame") if any(s in r["latency_ms"] for r in results)]
    head = "| threads | fps | faces/frame | " + " | ".join(f"{s} p50 / p95 ms" for s in stages) + " |"
    rule = "|" + "---|" * (3 + len(stages))
    rows = [f"| {r['threads']} | {r['fps']:.1f} | {r['faces_per_frame']:.2f} | "
            + " | ".join(_cell(r["latency_ms"].get(s)) for s in stages) + " |" for r in results]
    text = "\n".join([head, rule, *rows, "", per_face_table(results)])
    if soak_result:
        s = soak_result
        text += ("\n\n| soak minutes | threads | fps | RSS first MB | RSS last MB | RSS max MB | growth % |\n|---|---|---|---|---|---|---|\n"
                 f"| {s['minutes']} | {s['threads']} | {s['fps']:.1f} | {s['rss_mb_first']} | {s['rss_mb_last']} | "
                 f"{s['rss_mb_max']} | {s['growth_pct']:+.2f} |")
    return text


def per_face_table(results: list[dict[str, Any]]) -> str:
    """SR and critic ms per face, one call each against one call for all a frame's faces (batch_timing.py)."""
    head = ("| threads | faces | SR float conversion, 1 call/face | SR 1 call/face | SR 1 call/frame | "
            "critic 1 call/face | critic 1 call/frame |\n|---|---|---|---|---|---|---|")
    rows = [f"| {r['threads']} | {p['faces']} | {p['sr_float']:.2f} | {p['sr_one']:.2f} | {p['sr_batch']:.2f}"
            f"{'' if p['sr_batched'] else ' (1 invoke/face)'} | {p['critic_one']:.2f} | {p['critic_batch']:.2f} |"
            for r in results for p in [r["per_face_ms"]]]
    return "\n".join([head, *rows])


def _cell(stage: dict[str, float] | None) -> str:
    return "-" if stage is None else f"{stage['p50']:.2f} / {stage['p95']:.2f}"


def run_bench(config: DeviceConfig, bundle: str | None, video: Path | None, seconds: float,
              threads: list[int], soak_minutes: float | None, json_path: Path | None) -> dict[str, Any]:
    """Everything ``edge-affectsr bench`` does; prints the tables, returns (and optionally writes) the JSON."""
    with tempfile.TemporaryDirectory(prefix="edge-affectsr-video-") as tmp:
        if video is None:
            video = write_builtin_video(Path(tmp) / "builtin_640x480.avi")
        elif not Path(video).is_file():
            raise BenchError(f"--source {video}: no such file")
        else:
            probe_video(Path(video))
        results = [bench_threads(config, bundle, Path(video), t, seconds) for t in threads]
        soak_result = soak(config, bundle, Path(video), soak_minutes) if soak_minutes else None
    report = {"video": str(video), "results": results, "soak": soak_result,
              "machine": {"cpus": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()]}}
    print(markdown(results, soak_result))
    if json_path is not None:
        write_json(json_path, report)
    return report
