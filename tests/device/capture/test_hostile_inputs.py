"""device/capture/ against inputs a hostile but fair user hands it (issue 17), each made for real:
a video file that cannot be opened or decoded, a PNG whose header declares 20000x20000 px, video
frames over the limits, a camera whose outage outlasts the watchdog's reopens, a folder replaced
half-way through."""

from __future__ import annotations

import json
import logging
import re
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_affectsr.config import ConfigError, validate
from edge_affectsr.device.capture.config import CaptureConfig, FolderSourceConfig, ReconnectConfig, VideoSourceConfig
from edge_affectsr.device.capture.frame import CaptureError
from edge_affectsr.device.capture.limits import FrameLimits, Oversized, Unreadable, check_image
from edge_affectsr.device.capture.sources import FolderSource, VideoSource, open_source

ROOT = Path(__file__).resolve().parents[3]


def write_clip(path: Path, frames: int = 10, size: tuple[int, int] = (160, 120)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 20 * i, np.uint8))
    writer.release()
    return path


def undecodable_clip(path: Path) -> Path:
    """A real AVI whose container parses (OpenCV opens it) but whose frame data is garbage."""
    data = bytearray(write_clip(path).read_bytes())
    data[300:] = b"\x5a" * (len(data) - 300)
    path.write_bytes(bytes(data))
    return path


def bomb_png(path: Path, side: int = 20_000) -> Path:
    """A valid 8-bit grey PNG of side x side black pixels: about 0.4 MB on disk, 1.2 GB decoded as BGR."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte 0 + the row's pixels
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


# --- video files that cannot be used: an error naming them, not a retry loop -------------------------


def test_a_video_file_that_cannot_be_opened_is_an_error_naming_it(tmp_path):
    """It used to be retried forever ('corrupt.mp4: cannot open; reconnect attempt N/unlimited')."""
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(5000))
    start = time.monotonic()
    with pytest.raises(CaptureError, match=r"cannot open the video file .*corrupt\.mp4: not a video OpenCV can read"):
        list(VideoSource(str(corrupt)))
    assert time.monotonic() - start < 2.0


def test_a_video_file_whose_frames_cannot_be_decoded_is_an_error_naming_it(tmp_path):
    clip = undecodable_clip(tmp_path / "broken.avi")
    assert cv2.VideoCapture(str(clip)).isOpened()  # the container is fine: only decoding shows the fault
    with pytest.raises(CaptureError, match=r"broken\.avi: no frame could be decoded"):
        list(VideoSource(str(clip), loop=True))  # looping must not turn it into an endless retry either


def test_video_frames_over_the_limit_are_refused_before_the_first_decode(tmp_path):
    clip = write_clip(tmp_path / "wide.avi", size=(320, 120))
    source = VideoSource(str(clip), limits=FrameLimits(max_side=200))
    with pytest.raises(CaptureError, match=r"wide\.avi: frames of 320x120 px is over capture.limits.max_side \(200\)"):
        list(source)
    assert source.read == 0


# --- images too large: skipped before decoding, counted ---------------------------------------------


def test_limits_read_the_header_only():
    limits = FrameLimits(max_side=1000, max_pixels=500_000)
    assert limits.problem(1000, 500) is None
    assert "max_side (1000)" in limits.problem(1001, 10) and "max_pixels (500,000)" in limits.problem(800, 700)
    with pytest.raises(ConfigError, match="max_pixels"):
        validate({"limits": {"max_pixels": 0}}, CaptureConfig)
    assert CaptureConfig().limits.max_pixels == 4096 * 4096


def test_check_image_refuses_a_bomb_and_names_unreadable_files(tmp_path):
    bomb = bomb_png(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(Oversized, match=r"over Pillow's decompression-bomb limit \(Image size \(400000000 pixels\)"):
        check_image(bomb, FrameLimits(max_side=100_000, max_pixels=10**12))  # Pillow refuses above ~179 MP itself
    wide = bomb_png(tmp_path / "wide.png", side=9000)  # 81 MP: below Pillow's limits, above ours
    with pytest.raises(Oversized, match="9000x9000 px is over capture.limits.max_side"):
        check_image(wide, FrameLimits())
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(Unreadable):
        check_image(tmp_path / "empty.png", FrameLimits())


# Peak RSS from /proc/self/status's VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across
# fork + exec, so a child of a big pytest process would report its parent's peak.
FOLDER_RSS = """
import json, re, sys
from pathlib import Path
from edge_affectsr.device.capture.sources import FolderSource
source = FolderSource(sys.argv[1])
frames = [f.image.shape for f in source]
hwm_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(json.dumps({"shapes": frames, "oversized": source.oversized, "unreadable": source.unreadable,
                  "max_rss_mb": hwm_kb / 1024}))
"""


def test_a_20000_px_png_is_skipped_before_decoding_and_memory_stays_small(tmp_path):
    """A 0.4 MB PNG declaring 20000x20000 px took the daemon to 2.47 GB RSS; now it is never decoded."""
    bomb_png(tmp_path / "b_bomb.png")
    cv2.imwrite(str(tmp_path / "a_ok.png"), np.full((48, 64, 3), 90, np.uint8))
    cv2.imwrite(str(tmp_path / "c_ok.png"), np.full((48, 64, 3), 30, np.uint8))
    done = subprocess.run([sys.executable, "-c", FOLDER_RSS, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["shapes"] == [[48, 64, 3], [48, 64, 3]] and result["oversized"] == 1 and result["unreadable"] == 0
    assert result["max_rss_mb"] < 400, result  # decoding it would take 1,200 MB
    assert "skipping b_bomb.png: over Pillow's decompression-bomb limit" in done.stderr


# --- the watchdog replaces a source: the new one resumes it -------------------------------------------


def test_a_resumed_folder_goes_on_after_the_last_image_taken(tmp_path):
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((24, 32, 3), 40 * i, np.uint8))
    config = FolderSourceConfig(kind="folder", path=tmp_path)
    first = open_source(config)
    taken = []
    for frame in first:
        taken.append((frame.index, int(frame.image[0, 0, 0])))
        if len(taken) == 2:
            first.stop()  # what the watchdog does to a silent source
    second = open_source(config, previous=first)
    taken += [(f.index, int(f.image[0, 0, 0])) for f in second]
    assert taken == [(i, 40 * i) for i in range(5)]  # each image once, numbered on
    assert isinstance(second, FolderSource) and second.read == 5


def reconnect_delays(caplog) -> list[float]:
    return [float(m.group(1)) for r in caplog.records if (m := re.search(r"reconnect attempt \d+/\S+ in ([\d.]+) s", r.getMessage()))]


def test_a_cameras_backoff_keeps_growing_across_the_watchdogs_reopens(caplog):
    """The watchdog replaced a dead camera every 10 s and the waits started again at 0.5 s each time,
    so reconnect.max_s was never reached. The replacement takes over the backoff."""
    config = VideoSourceConfig(kind="video", uri="/dev/video99",
                               reconnect=ReconnectConfig(initial_s=0.01, factor=2.0, max_s=0.08))
    source = None
    with caplog.at_level(logging.WARNING, logger="edge_affectsr.device.capture.sources"):
        for _ in range(3):  # three watchdog periods
            source = open_source(config, previous=source)
            before = source.reconnects
            worker = threading.Thread(target=lambda s=source: list(s))
            worker.start()
            deadline = time.monotonic() + 5
            while source.reconnects < before + 2 and time.monotonic() < deadline:
                time.sleep(0.005)
            assert source.reconnecting  # in its backoff: the daemon's watchdog leaves such a source alone
            source.stop()
            worker.join(2)
            assert not worker.is_alive()
    delays = reconnect_delays(caplog)
    assert delays == sorted(delays) and delays[0] == 0.01 and delays.count(0.01) == 1  # never back to the start
    assert delays[-1] == 0.08 and len(delays) >= 6  # max_s reached, across three sources
