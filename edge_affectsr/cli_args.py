"""The arguments the sub-commands share, so the CLI speaks one dialect.

``--model`` chooses a model (a shipped name, a checkpoint, an .onnx/.tflite file or a bundle folder),
``--source`` is what a command processes (frames, images, video), ``--data`` a face dataset (training,
evaluation, calibration), ``--out`` where results go; ``--limit/--stride/--offset`` draw a subset of
faces from a folder; ``--set KEY=VALUE`` overrides a config value. Old spellings stay for one release:
:func:`add_renamed` keeps them working, hidden from ``--help``, with a one-line warning naming the new
spelling. Light imports only: ``--help`` must stay fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import Any

MODEL_KINDS = "a shipped name (e.g. bundle-x4), a checkpoint .pt, an .onnx/.tflite file or a bundle folder"


class Renamed(argparse.Action):
    """An old spelling, an option or a positional, kept for one release: stores its value into the
    new option's dest (so ``run()`` sees one name) and says on stderr which spelling replaces it."""

    def __init__(self, option_strings: list[str], dest: str, new: argparse.Action, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if values is None:  # a positional not given: argparse calls its action with the default
            return
        flag = self.new.option_strings[-1]
        old = option_string or f"the positional {self.metavar}"
        hint = flag if option_string else f"{flag} {self.metavar}"
        print(f"warning: {old} is deprecated; use {hint}", file=sys.stderr, flush=True)
        setattr(namespace, self.new.dest, values)


def add_renamed(p: argparse.ArgumentParser, new: str, old: str, *, required: bool = False,
                **kwargs: Any) -> argparse.Action:
    """Add option ``new`` (``kwargs`` as for ``add_argument``) and its old spelling ``old``: an option
    (``--bundle``) or, without dashes, a positional's metavar (``BUNDLE``). The two form a mutually
    exclusive group, so giving both is argparse's clean usage error, and ``required`` applies to the
    pair (a required option may still come from the old positional). Returns the new action."""
    group = p.add_mutually_exclusive_group(required=required)
    action = group.add_argument(new, **kwargs)
    hidden = dict(action=Renamed, new=action, type=action.type, help=argparse.SUPPRESS)
    if old.startswith("-"):
        group.add_argument(old, metavar=action.metavar, default=argparse.SUPPRESS, **hidden)
    else:  # a positional's dest is its name: keep it apart from the new option's
        group.add_argument(f"renamed_{action.dest}", nargs="?", metavar=old, **hidden)
    return action


def add_model(p: argparse.ArgumentParser, help: str, old: str | None = None, **kwargs: Any) -> argparse.Action:
    """``--model`` (``help`` says what kind and the default), with ``old`` as its former spelling."""
    if old is None:
        return p.add_argument("--model", help=help, **kwargs)
    return add_renamed(p, "--model", old, help=help, **kwargs)


def add_subset(p: argparse.ArgumentParser, what: str, limit: int | None = None, stride: int = 1,
               limit_alias: str | None = None) -> None:
    """``--limit N --stride K --offset M``: which faces of a folder (sorted by path) a command uses:
    every K-th from the M-th, at most N of them. ``limit_alias`` is --limit's former spelling."""
    limit_help = f"use at most N {what} (after --stride/--offset; default: {limit if limit is not None else 'all'})"
    kwargs = dict(type=int, default=limit, metavar="N", help=limit_help)
    if limit_alias:
        add_renamed(p, "--limit", limit_alias, **kwargs)
    else:
        p.add_argument("--limit", **kwargs)
    p.add_argument("--stride", type=int, default=stride, metavar="K",
                   help=f"use every K-th of the {what} in path order (default: {stride})")
    p.add_argument("--offset", type=int, default=0, metavar="M",
                   help=f"start at the M-th of the {what} (default: 0; another offset below --stride gives a disjoint set)")


def check_subset(args: argparse.Namespace, min_limit: int = 1) -> None:
    """UserError unless --limit/--stride/--offset make sense (before any work)."""
    from edge_affectsr.errors import UserError  # noqa: PLC0415

    if args.limit is not None and args.limit < min_limit:
        raise UserError(f"--limit must be at least {min_limit}")
    if args.stride < 1 or args.offset < 0:
        raise UserError("--stride must be at least 1 and --offset at least 0")


def add_set(p: argparse.ArgumentParser, config: str, example: str) -> None:
    """``--set KEY=VALUE`` (repeatable) for a command that reads ``config``."""
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override one {config} value: a dotted key and a YAML value (e.g. --set {example}); "
                        "repeatable; an unknown key or a bad value is an error naming it (default: none)")


def set_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--set`` items as dotted keys -> values (ConfigError for one that is not KEY=VALUE)."""
    from edge_affectsr.config import parse_set  # noqa: PLC0415

    return parse_set(args.set)


def epilog(examples: Iterable[str]) -> str:
    """The ``Examples:`` section every command's ``--help`` ends with."""
    return "Examples:\n" + "\n".join(f"  {line}" for line in examples)
