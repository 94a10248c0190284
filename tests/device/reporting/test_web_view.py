"""device/reporting/web_view.py and live_state.py: the live view's endpoints on the real HTTP server
(loopback, ephemeral port), fed with the real pipeline's results on the built-in clip: images only
with preview on, the event stream's deltas, bad queries, the viewer limit, the end of a run."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.request

import cv2
import numpy as np
import pytest

from _device_events import LABELS
from _http_get import get
from device_bundle import require_bundle
from edge_affectsr.device.capture.builtin import BuiltinSequence
from edge_affectsr.device.capture.frame import Frame
from edge_affectsr.device.inference.pipeline import EXTRA_COUNTERS, Pipeline
from edge_affectsr.device.reporting.http_api import HttpApi, HttpConfig
from edge_affectsr.device.reporting.live_state import FRAMES_KEPT, LiveState, ShownFace
from edge_affectsr.device.reporting.stats import Stats
from edge_affectsr.device.reporting.web_view import WebConfig, WebView
from edge_affectsr.runtime.bundle_models import load_bundle
from edge_affectsr.runtime.interpreter import InterpreterConfig

FRAMES = 12


@pytest.fixture(scope="module")
def processed() -> list[tuple[Frame, list[ShownFace]]]:
    """The first frames of the built-in clip and the faces the real pipeline upscaled in them, up to
    the last frame with a face."""
    pipeline = Pipeline(load_bundle(require_bundle(), InterpreterConfig(delegate_order=["cpu"])),
                        stats=Stats(extra_counters=EXTRA_COUNTERS))
    clip, out = BuiltinSequence(frames=FRAMES), []
    for i in range(FRAMES):
        frame = Frame(i, i / 25, clip.render(i))
        result = pipeline.process(frame, "builtin")
        out.append((frame, [ShownFace(f.event, f.aligned.lr, f.verdict.image) for f in result.faces]))
    assert sum(len(faces) for _, faces in out) >= 3, "the clip's face should be upscaled in most frames"
    while not out[-1][1]:
        out.pop()
    return out


def serve(preview: bool, **web) -> tuple[HttpApi, LiveState]:
    config = WebConfig(**web)
    state = LiveState(preview, config.faces, config.tracks, config.history)
    api = HttpApi(HttpConfig(port=0), Stats())
    api.routes.update(WebView(config, state, api.stats, lambda: {"model": "bundle-x4"}).routes())
    api.start()
    return api, state


def feed(state: LiveState, processed, frames: range) -> None:
    for i in frames:
        frame, faces = processed[i]
        state.observe(frame.index, frame.image, faces, "builtin", None)


def decode(body: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)


def sse_messages(api: HttpApi, until, timeout: float = 10) -> list[dict]:
    """The data messages of /api/live/stream up to the first for which ``until(message)`` is true, or
    to the end of the stream."""
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=timeout)
    conn.request("GET", "/api/live/stream")
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/event-stream")
    messages: list[dict] = []
    try:
        while not (messages and until(messages[-1])):
            line = response.readline()
            if not line:
                break
            if line.startswith(b"data: "):
                messages.append(json.loads(line[6:]))
    finally:
        conn.close()
    return messages


def test_with_preview_on_the_page_its_frame_and_face_images_are_served(processed):
    api, state = serve(preview=True)
    try:
        page = get(api.url + "/")
        assert page[0] == 200 and page[1].startswith("text/html") and b'src="/app.js"' in page[2]
        assert get(api.url + "/app.js")[0] == 200 and get(api.url + "/style.css")[1].startswith("text/css")
        assert get(api.url + "/api/live/frame.jpg")[0] == 404  # no frame yet
        last = len(processed) - 1
        assert last >= FRAMES_KEPT
        feed(state, processed, range(last + 1))
        _, _, body = get(api.url + "/api/live")
        live = json.loads(body)
        face = live["faces"][0]
        frame_status, frame_type, jpeg = get(api.url + live["frame"]["url"])
        lr, sr = (decode(get(api.url + face[kind])[2]) for kind in ("lr", "sr"))
        gone = get(api.url + "/api/live/frame.jpg?index=0")  # an old frame: refused, never another one instead
    finally:
        api.stop()
    assert live["preview"] and live["frame"]["index"] == last and face["expression"] in LABELS
    assert set(face["probabilities"]) == set(LABELS) and "preserved" in face["guard"]
    assert live["boxes"] and live["boxes"][0]["track_id"] == face["track_id"] and live["classes"] == list(LABELS)
    assert frame_status == 200 and frame_type == "image/jpeg" and decode(jpeg).shape == (480, 640, 3)
    assert lr.shape == (32, 32, 3) and sr.shape == (128, 128, 3)
    newest_sr = processed[face["frame"]][1][-1].sr  # RGB, what the guard reported
    assert np.abs(sr[..., ::-1].astype(int) - newest_sr).max() == 0  # PNG: the very pixels
    assert gone[0] == 404 and b"no longer kept" in gone[2]
    assert live["history"] and all(len(p[2]) == len(LABELS) for points in live["history"].values() for p in points)


def test_with_preview_off_no_image_is_kept_or_served(processed):
    api, state = serve(preview=False)
    try:
        feed(state, processed, range(len(processed)))
        live = json.loads(get(api.url + "/api/live")[2])
        answers = [get(api.url + "/api/live/frame.jpg"), get(api.url + "/api/live/frame.jpg?index=1"),
                   *(get(f"{api.url}/api/live/face.png?id={f['id']}&kind={k}") for f in live["faces"] for k in ("lr", "sr"))]
    finally:
        api.stop()
    assert live["faces"] and all("lr" not in f and "sr" not in f for f in live["faces"]) and live["frame"]["url"] is None
    assert live["boxes"] and live["faces"][0]["expression"] in LABELS  # the numbers are still there
    assert all(status == 403 and b"preview is off" in body for status, _, body in answers)
    assert state.frame_jpeg() is None and all(state.face_png(f["id"], "sr") is None for f in live["faces"])


def test_the_stream_sends_the_state_then_only_new_history(processed):
    api, state = serve(preview=True, interval_s=0.02)
    feed(state, processed, range(3))
    try:
        feeder = threading.Timer(0.5, feed, (state, processed, range(3, len(processed))))
        feeder.start()
        first, *later = sse_messages(api, lambda m: m["frame"]["index"] == len(processed) - 1)
        feeder.join()
    finally:
        api.stop()
    old = {p[0] for points in first["history"].values() for p in points}
    assert first["frame"]["index"] == 2 and old and first["stats"]["latency_ms"] == {}
    newer = [p[0] for m in later for points in m["history"].values() for p in points]
    assert newer and min(newer) > max(old)  # after the first message, each point is sent once
    assert later[-1]["seq"] > first["seq"] and later[-1]["faces"][0]["id"] > first["faces"][0]["id"]


def test_bad_queries_are_400_and_the_viewer_limit_holds(processed):
    api, state = serve(preview=True, max_viewers=1)
    feed(state, processed, range(2))
    try:
        bad = [get(api.url + q) for q in ("/api/live/face.png?id=x&kind=sr", "/api/live/face.png?id=1&kind=hr",
                                          "/api/live/face.png?kind=sr", "/api/live/frame.jpg?index=-1")]
        missing = get(api.url + "/api/live/face.png?id=99999&kind=sr")
        conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
        conn.request("GET", "/api/live/stream")  # the one viewer allowed, held open
        first = conn.getresponse()
        assert first.readline() == b"retry: 3000\n"
        second = urllib.request.urlopen(api.url + "/api/live/stream", timeout=10).read()  # refused: ends at once
        conn.close()
    finally:
        api.stop()
    assert all(status == 400 for status, _, _ in bad), bad
    assert missing[0] == 404 and b"no longer kept" in missing[2]
    assert b"event: busy" in second and b"web.max_viewers" in second


def test_a_stream_ends_with_a_last_message_when_the_run_ends(processed):
    api, state = serve(preview=True)
    feed(state, processed, range(2))
    try:
        threading.Timer(0.5, state.close).start()
        messages = sse_messages(api, lambda m: False)  # read to the end of the stream
    finally:
        api.stop()
    assert messages and messages[-1]["closed"] is True and not any(m["closed"] for m in messages[:-1])
