"""device/capture/: folder, video file, failing cameras (backoff, clean stop), newest-frame-wins; inputs
that cannot be decoded or are too large (issue 17: each reproduced on real files first)."""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_affectsr.config import ConfigError, load_config
from edge_affectsr.device.capture.builtin import BuiltinSequence
from edge_affectsr.device.capture.config import CaptureConfig, ReconnectConfig
from edge_affectsr.device.capture.frame import CaptureError, Frame
from edge_affectsr.device.capture.newest import NewestFrame
from edge_affectsr.device.capture.backoff import Backoff
from edge_affectsr.device.capture.sources import FolderSource, PiCameraSource, VideoSource, open_source

FAST = ReconnectConfig(initial_s=0.02, factor=2.0, max_s=1.0, max_attempts=3)


def image(value: int, size=(120, 160)) -> np.ndarray:
    img = np.zeros((*size, 3), np.uint8)
    img[..., 0] = value  # blue: BGR order must survive
    return img


@pytest.fixture
def video(tmp_path) -> Path:
    """A 20-frame 160x120 MJPG file whose frame i has blue = 10 * i."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    assert writer.isOpened()
    for i in range(20):
        writer.write(image(10 * i))
    writer.release()
    return path


def reconnect_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if re.search(r"reconnect attempt \d", r.getMessage())]


# --- folder -------------------------------------------------------------------------------------------


def test_folder_skips_corrupt_files_and_counts_them(tmp_path, caplog):
    for i, name in enumerate(["b.png", "a.jpg", "d.png"]):
        cv2.imwrite(str(tmp_path / name), image(50 * (i + 1)))
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (tmp_path / "e.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    source = FolderSource(tmp_path)
    with caplog.at_level(logging.WARNING, logger="edge_affectsr.device.capture.sources"):
        frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2]
    assert [int(f.image[0, 0, 0]) for f in frames] == [100, 50, 150]  # sorted: a.jpg, b.png, d.png
    assert all(f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8 for f in frames)
    assert abs(int(frames[0].image[0, 0, 2]) - 0) < 3  # red stays 0: BGR, not RGB
    assert source.read == 3 and source.unreadable == 2 and source.stop_reason == "end of input"
    skipped = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(skipped) == 2 and "c.jpg" in skipped[0] and "e.png" in skipped[1]
    assert frames[0].timestamp <= frames[1].timestamp <= frames[2].timestamp


def test_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(CaptureError, match="not found"):
        FolderSource(tmp_path / "nope")


# --- video file -----------------------------------------------------------------------------------------


def test_video_file_yields_every_frame_then_ends(video):
    source = VideoSource(str(video))
    frames = list(source)
    assert len(frames) == 20 and [f.index for f in frames] == list(range(20))
    assert frames[0].image.shape == (120, 160, 3)
    blues = [int(np.median(f.image[..., 0])) for f in frames]
    assert all(abs(b - 10 * i) <= 3 for i, b in enumerate(blues))
    assert source.stop_reason == "end of file" and source.reconnects == 0


def test_looping_file_stops_cleanly_on_request(video):
    source = VideoSource(str(video), loop=True)
    got = []
    for frame in source:
        got.append(frame)
        if len(got) == 45:
            source.stop()
    assert len(got) == 45 and source.stop_reason == "stopped"


def test_a_missing_video_file_is_an_error_naming_it_not_a_retry(video):
    video.unlink()
    start = time.monotonic()
    with pytest.raises(CaptureError, match=f"video file not found: {re.escape(str(video))}"):
        list(VideoSource(str(video), reconnect=FAST))
    assert time.monotonic() - start < 1.0


def test_bogus_camera_backs_off_until_stopped(caplog):
    """A camera that never appears, retried forever, still stops within a bounded time."""
    source = VideoSource("/dev/video99", reconnect=ReconnectConfig(initial_s=0.02, max_s=0.1))
    frames: list[Frame] = []
    worker = threading.Thread(target=lambda: frames.extend(source))
    with caplog.at_level(logging.WARNING, logger="edge_affectsr.device.capture.sources"):
        worker.start()
        time.sleep(0.5)
        start = time.monotonic()
        source.stop()
        worker.join(2.0)
    assert not worker.is_alive() and time.monotonic() - start < 0.5
    assert frames == [] and source.stop_reason == "stopped"
    delays = [float(re.search(r"in ([\d.]+) s", line).group(1)) for line in reconnect_lines(caplog)]
    assert len(delays) >= 4 and delays[:4] == [0.02, 0.04, 0.08, 0.1]  # doubling, capped at max_s
    assert all("/dev/video99" in line and "unlimited" in line for line in reconnect_lines(caplog))


@pytest.mark.parametrize("uri, name", [("97", "camera 97"), ("rtsp://127.0.0.1:1/stream", "rtsp://127.0.0.1:1/stream")])
def test_camera_or_stream_that_does_not_answer_gives_up(uri, name, caplog):
    source = VideoSource(uri, reconnect=FAST)
    assert source.name == name and not source.is_file
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="edge_affectsr.device.capture.sources"):
        assert list(source) == []
    assert len(reconnect_lines(caplog)) == 3 and source.reconnects == 3
    assert time.monotonic() - start < 5.0


def test_backoff_schedule():
    backoff = Backoff(ReconnectConfig(initial_s=0.5, factor=2, max_s=3, max_attempts=5))
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1, 2, 3, 3, None]
    backoff.reset()  # a frame arrived: the next outage starts small again
    assert backoff.next_delay() == 0.5
    endless = Backoff(ReconnectConfig(initial_s=0.5, factor=2, max_s=30))
    endless.attempts = 10**6  # months of outage: no float overflow, still max_s
    assert endless.next_delay() == 30 and endless.limit == "unlimited"


# --- newest frame wins -----------------------------------------------------------------------------------


def test_slow_consumer_gets_the_newest_frames_and_drops_are_counted():
    source = BuiltinSequence(frames=40, fps=200.0)  # a "camera" at 200 fps
    newest = NewestFrame(source)
    got = []
    for frame in newest:
        got.append(frame.index)
        time.sleep(0.02)  # a 50 fps consumer
    assert got == sorted(got) and got[-1] == 39  # in order, and the last frame arrives
    assert newest.dropped > 10
    assert newest.delivered + newest.dropped == 40 == source.read


def test_stopping_the_wrapper_stops_the_reader():
    newest = NewestFrame(BuiltinSequence(frames=10, fps=100.0, loop=True))
    count = 0
    start = time.monotonic()
    for _ in newest:
        count += 1
        if count == 5:
            newest.stop()
    assert time.monotonic() - start < 2.0 and not newest._thread.is_alive()


# --- configuration -------------------------------------------------------------------------------------


def test_sources_come_from_config_files(tmp_path, video):
    path = tmp_path / "capture.yaml"
    path.write_text(f"source:\n  kind: video\n  uri: {video}\n  reconnect:\n    max_attempts: 2\n")
    cfg = load_config(path, CaptureConfig)
    source = open_source(cfg.source)
    assert isinstance(source, VideoSource) and source.reconnect.max_attempts == 2 and cfg.newest_frame_wins
    path.write_text(f'[source]\nkind = "folder"\npath = "{tmp_path}"\n')
    assert isinstance(open_source(load_config(path.rename(tmp_path / "c.toml"), CaptureConfig).source), FolderSource)
    (tmp_path / "bad.yaml").write_text("source:\n  kind: folder\n  path: x\n  recursive: true\n")
    with pytest.raises(ConfigError, match="recursive: unknown key"):
        load_config(tmp_path / "bad.yaml", CaptureConfig)


def test_picamera_off_a_pi_says_what_to_install():
    with pytest.raises(CaptureError, match="Raspberry Pi OS"):
        PiCameraSource()
