"""The live web view as a user sees it: ``edge-affectsr run`` in a real process on the built-in clip
(preview on by default), the page opened in a real headless Chromium; and the same daemon on a
folder (preview off by default) refusing every image. ``EDGE_AFFECTSR_WEB_SHOT=docs/web_view.png``
keeps the browser's screenshot (``make docs-web-view``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from _device_daemon import looping_builtin, start_daemon, wait_for
from _device_events import LABELS
from _headless_browser import Browser, require_chromium
from _http_get import get
from device_bundle import require_bundle
from edge_affectsr.device.capture.builtin import BuiltinSequence

SHOT_ENV = "EDGE_AFFECTSR_WEB_SHOT"
# the first face card, once both its images have loaded: what it shows
CARD = """(() => {
  const card = document.querySelector('.face-card');
  const lr = card && card.querySelector('img.lr'), sr = card && card.querySelector('img.sr');
  if (!lr || !sr || !lr.complete || !sr.complete || !lr.naturalWidth || !sr.naturalWidth) return null;
  return {expression: card.querySelector('.expression').textContent, lr: lr.naturalWidth, sr: sr.naturalWidth,
          cards: document.querySelectorAll('.face-card').length};
})()"""
# the frame canvas: how bright it is, and how many pixels have a box's colour (kept / changed)
CANVAS = """(() => {
  const c = document.getElementById('frame'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const near = (i, rgb) => rgb.every((v, k) => Math.abs(d[i + k] - v) <= 8);
  let sum = 0, box = 0;
  for (let i = 0; i < d.length; i += 4) {
    sum += d[i] + d[i + 1] + d[i + 2];
    if (near(i, [61, 220, 151]) || near(i, [255, 159, 28])) box++;
  }
  return {width: c.width, height: c.height, mean: sum / (d.length / 4) / 3, box};
})()"""


@pytest.fixture(scope="module")
def bundle() -> Path:
    return require_bundle()


def http_url(proc: subprocess.Popen, log: Path) -> str:
    return wait_for(lambda: next((line.split("HTTP API at ")[1].strip() for line in log.read_text().splitlines()
                                  if "HTTP API at " in line), None), what="the HTTP URL", proc=proc, log=log)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    finally:
        proc.kill()


@pytest.mark.slow
def test_the_page_shows_the_frame_and_faces_with_expressions_in_a_real_browser(tmp_path: Path, bundle: Path):
    chromium = require_chromium()
    proc, log = start_daemon(tmp_path, "--model", str(bundle), "--http", "127.0.0.1:0", config=looping_builtin(fps=8))
    try:
        url = http_url(proc, log)
        with Browser(chromium, tmp_path / "profile", size=(1280, 1100)) as browser:
            page = browser.open(url + "/")
            browser.wait_for(page, "document.getElementById('frame').dataset.frame", what="a frame drawn")
            card = browser.wait_for(page, CARD, what="a face card with both images")
            browser.wait_for(page, "document.querySelectorAll('.face-card').length >= 4 && "
                                   "document.querySelectorAll('#charts polyline').length >= 7", what="4 cards and a chart")
            canvas = browser.evaluate(page, CANVAS)
            status = browser.evaluate(page, "document.getElementById('status').textContent")
            fps = float(browser.evaluate(page, "document.getElementById('fps').textContent"))
            shot = browser.screenshot(page)
    finally:
        stop(proc)
    assert card["expression"] in LABELS and (card["lr"], card["sr"]) == (32, 128)
    assert (canvas["width"], canvas["height"]) == (640, 480) and canvas["mean"] > 60  # the clip's frame, not a blank
    assert canvas["box"] > 50, canvas  # a face box drawn over it in a verdict colour
    assert status == "live" and fps > 0
    image = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (1100, 1280) and image.std() > 20
    if os.environ.get(SHOT_ENV):
        Path(os.environ[SHOT_ENV]).write_bytes(shot)


@pytest.mark.slow
def test_with_preview_off_no_frame_or_face_image_is_served(tmp_path: Path, bundle: Path):
    folder = tmp_path / "photos"
    folder.mkdir()
    clip = BuiltinSequence(frames=12)
    for i in range(12):
        cv2.imwrite(str(folder / f"shot_{i:02d}.png"), clip.render(i))
    config = f"capture:\n  source: {{kind: folder, path: {folder}, loop: true}}\n  newest_frame_wins: true\n"
    proc, log = start_daemon(tmp_path, "--model", str(bundle), "--http", "127.0.0.1:0", config=config)
    try:
        url = http_url(proc, log)
        live = wait_for(lambda: (lambda m: m if m["faces"] else None)(json.loads(get(url + "/api/live")[2])),
                        what="a face in /api/live", proc=proc, log=log)
        frame_answer = get(url + "/api/live/frame.jpg")
        face_answers = [get(f"{url}/api/live/face.png?id={live['faces'][0]['id']}&kind={kind}") for kind in ("lr", "sr")]
        page = get(url + "/")
    finally:
        stop(proc)
    assert live["preview"] is False and live["frame"]["url"] is None
    assert all("lr" not in f and "sr" not in f for f in live["faces"])
    face = live["faces"][0]
    assert face["expression"] in LABELS and face["file"].startswith("shot_") and face["source"] == str(folder)
    for status, ctype, body in (frame_answer, *face_answers):
        assert status == 403 and ctype == "application/json" and b"preview is off" in body
    assert page[0] == 200 and page[1].startswith("text/html")  # the page itself still works: numbers only
    assert "preview off: no frames or faces" in log.read_text()
