"""Quiet by default: the native libraries' log noise kept off the terminal unless ``-v``.

Why at the file-descriptor level: TensorFlow (imported by mediapipe), XLA, mediapipe's graphs and the
TFLite runtime write from C++ straight to fd 2, mostly before anyone could configure them ("All log
messages before absl::InitializeLog() is called are written to STDERR", cuDNN factories on a CPU
machine, "Created TensorFlow Lite XNNPACK delegate"): about 25 lines on a first ``eval``, none of
them ours. Environment variables silence only part of it (``TF_CPP_MIN_LOG_LEVEL`` covers TensorFlow's
own, not absl's). So, while a command runs, fd 2 is a pipe drained by a thread that keeps the last
lines, and Python's ``sys.stderr`` (our logs, progress bars, warnings, tracebacks) writes to the
real terminal through a duplicate of it. When the command fails with an unexpected exception, the
kept lines are printed, so a native error is never lost where it matters.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import warnings
from types import TracebackType

# Defaults only: a value the user set wins (setdefault). They reach child processes too (onnx2tf's
# log keeps TensorFlow's errors: level 2 drops its info and warning lines only).
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "GLOG_minloglevel": "2"}
QUIET_LOGGERS = ("absl", "tensorflow", "h5py")  # Python-side loggers of the same libraries
KEEP_LINES = 200


def quiet_libraries() -> None:
    """Environment defaults, logger levels and warning filters that keep third-party noise down;
    call before the libraries are imported (their C++ reads the environment once)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated.*")


class NativeStderr:
    """``with NativeStderr():`` fd 2 goes to a pipe (its last :data:`KEEP_LINES` lines kept in
    :attr:`lines`); ``sys.stderr`` keeps writing to the real stderr. Restored on exit; on an
    unexpected exception the kept lines are printed first. Only where ``sys.stderr`` is the
    process's own (under pytest's capture, or a replaced stream, it does nothing)."""

    def __init__(self, keep: int = KEEP_LINES) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self._saved_fd: int | None = None
        self._saved_stream = sys.stderr
        self._reader: threading.Thread | None = None

    @staticmethod
    def usable() -> bool:
        if sys.stderr is not sys.__stderr__ or sys.stderr is None:
            return False
        try:
            return sys.stderr.fileno() == 2
        except (AttributeError, OSError, ValueError):
            return False

    def __enter__(self) -> NativeStderr:
        if not self.usable():
            return self
        sys.stderr.flush()
        self._saved_fd = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._saved_stream = sys.stderr
        sys.stderr = os.fdopen(os.dup(self._saved_fd), "w", buffering=1, encoding=self._saved_stream.encoding,
                               errors="backslashreplace")
        self._reader = threading.Thread(target=self._drain, args=(read_end,), name="native-stderr", daemon=True)
        self._reader.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._saved_fd is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved_fd, 2)  # closes our last reference to the pipe's write end
        os.close(self._saved_fd)
        self._saved_fd = None
        sys.stderr = self._saved_stream  # the duplicate stays open: logging handlers may still hold it
        if self._reader is not None:
            self._reader.join(timeout=2.0)  # a child process may still hold the pipe; don't wait for it
        if kind is not None and not issubclass(kind, (KeyboardInterrupt, SystemExit)) and self.lines:
            print("native library output before the error (hidden without -v):\n" + "\n".join(self.lines),
                  file=sys.stderr)

    def _drain(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as pipe:
            for raw in pipe:
                self.lines.append(raw.decode("utf-8", "backslashreplace").rstrip("\n"))
