"""device/reporting/jsonl.py: one flushed JSON line per event, to stdout or appended to a file."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _device_events import make_event
from edge_affectsr.config import ConfigError, validate
from edge_affectsr.device.reporting.events import FaceEvent
from edge_affectsr.device.reporting.jsonl import JsonlConfig, JsonlError, JsonlSink

ROOT = Path(__file__).resolve().parents[3]


def test_file_is_appended_and_each_line_is_on_disk_at_once(tmp_path):
    path = tmp_path / "logs" / "events.jsonl"
    sink = JsonlSink(path)
    sink.write(make_event(0))
    # flushed per event: another reader sees the line before close
    assert [json.loads(line)["frame"] for line in path.read_text().splitlines()] == [0]
    sink.close()
    with JsonlSink(str(path)) as again:  # a restart appends, never truncates
        again.write(make_event(1))
        again.write(make_event(2))
        assert again.written == 2
    events = [FaceEvent.from_json(line) for line in path.read_text().splitlines()]
    assert [e.frame for e in events] == [0, 1, 2]


def test_stdout_gets_pure_json_lines(capsys):
    sink = JsonlSink("-")
    for i in range(3):
        assert sink.write(make_event(i))
    sink.close()  # stdout is not ours to close
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["frame"] for line in out] == [0, 1, 2]
    assert not sys.stdout.closed


def test_a_reader_that_goes_away_turns_the_sink_off_without_crashing(caplog):
    read, write = os.pipe()
    os.close(read)  # the consumer is gone: writes fail with EPIPE
    stream = os.fdopen(write, "w", buffering=1)
    sink = JsonlSink(stream)
    with caplog.at_level(logging.ERROR, logger="edge_affectsr.device.reporting.jsonl"):
        assert sink.write(make_event(0)) is False
        assert sink.write(make_event(1)) is False
    assert sink.failed == 2 and sink.written == 0
    assert len([r for r in caplog.records if "failed" in r.getMessage()]) == 1  # said once
    stream.close()  # the unsent line is discarded: the dead pipe now points at /dev/null


def test_unwritable_path_is_a_user_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(JsonlError, match="not-a-dir"):
        JsonlSink(blocker / "events.jsonl")


def test_config():
    assert JsonlSink.from_config(JsonlConfig(enabled=False)) is None
    assert validate({"path": "out/e.jsonl"}, JsonlConfig).path == "out/e.jsonl"
    with pytest.raises(ConfigError, match="pth: unknown key"):
        validate({"pth": "x"}, JsonlConfig)


def test_piping_the_daemon_output_line_by_line():
    """A child writing to a pipe: the parent reads each line before the child writes the next."""
    code = ("import sys, time; sys.path.insert(0, 'tests'); from _device_events import make_event; "
            "from edge_affectsr.device.reporting.jsonl import JsonlSink; s = JsonlSink('-')\n"
            "for i in range(3):\n    s.write(make_event(i)); sys.stdin.readline()")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for i in range(3):
            assert json.loads(child.stdout.readline())["frame"] == i  # arrives while the child waits for us
            child.stdin.write("next\n")
            child.stdin.flush()
        assert child.wait(10) == 0
    finally:
        child.kill()
