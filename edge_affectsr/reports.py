"""Writing result files (tables, JSON) so that a crash or Ctrl-C never leaves half a file behind.

Core module: standard library only; every stage's report-writing commands share it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edge_affectsr.errors import UserError


def check_output(path: Path | None, what: str, folder: bool = False) -> None:
    """A UserError now, before any work, when ``path`` cannot become the output file (``folder``: the
    output folder) ``what`` names: it is a folder (a file), a file stands where one of its parent
    folders must be, or the nearest existing parent is not writable. Why: a command that computes for
    an hour must not lose its results to a typo in an output path. None: nothing to check."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise UserError(f"{what} {path} is {'a file' if folder else 'a folder'}; give a {'folder' if folder else 'file'} path")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: cannot write into {parent} (permission denied)")


def write_text(path: Path, text: str) -> None:
    """``text`` into ``path`` (parent folders created) through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2))
