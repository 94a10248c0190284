"""Quiet by default (edge_affectsr/quiet.py): native writes to fd 2 are kept off the terminal while
Python's own stderr (logs, progress, tracebacks) still reaches it, and on an unexpected error the
hidden lines are shown. Run in a child process: the test needs the process's real stderr."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge_affectsr.cli import main

CHILD = """
import os, sys, logging
from edge_affectsr.quiet import NativeStderr
with NativeStderr() as quiet:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.write(2, b"W0000 native noise line\\n")  # what C++ libraries do
    logging.getLogger("x").info("our log line")
    print("python stderr line", file=sys.stderr)
    if sys.argv[1] == "fail":
        raise RuntimeError("boom")
logging.getLogger("x").info("after the block")
os.write(2, b"native after the block\\n")
"""


def run_child(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=60)


def test_native_writes_are_hidden_and_python_output_is_not():
    done = run_child("ok")
    assert done.returncode == 0
    assert "native noise" not in done.stderr
    for line in ("our log line", "python stderr line", "after the block", "native after the block"):
        assert line in done.stderr  # fd 2 restored after the block


def test_an_unexpected_error_shows_the_hidden_native_lines():
    done = run_child("fail")
    assert done.returncode == 1
    assert "native library output before the error (hidden without -v):\nW0000 native noise line" in done.stderr
    assert "RuntimeError: boom" in done.stderr


def test_version_and_verbose_after_the_command(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"edge-affectsr {version('edge-affectsr')}"
    # -v is accepted after the command too (argparse would exit 2 on an unknown flag)
    assert main(["sign", "--model", "/no/such/bundle", "--key", "/no/such.key", "-v"]) == 2
    assert "cannot read the signing key /no/such.key" in capsys.readouterr().err
