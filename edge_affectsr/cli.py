"""The ``edge-affectsr`` command.

Sub-commands are contributed by the stages through the ``edge_affectsr.commands`` entry-point
group (see pyproject.toml), so the core never imports a stage. A command is a class with ``help``,
``add_arguments(parser)``, ``run(args) -> int`` and ``examples`` (command lines shown under
``Examples:`` in its ``--help``); its module must import only light things at the top, so ``--help``
stays fast and works without the stage's extras installed. The shared spellings (``--model``,
``--source``, ``--data``, subset flags, ``--set``, renamed old flags) live in :mod:`edge_affectsr.cli_args`.

Quiet by default: third-party native log noise (TensorFlow, absl, TFLite) is kept off the terminal
unless ``-v`` (:mod:`edge_affectsr.quiet`); ``-v`` / ``--verbose`` works before or after the command.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
from contextlib import nullcontext
from importlib.metadata import PackageNotFoundError, entry_points, version

from edge_affectsr.cli_args import epilog
from edge_affectsr.errors import UserError
from edge_affectsr.quiet import NativeStderr, quiet_libraries

VERBOSE_HELP = "debug logging, and the native libraries' own output (TensorFlow, absl, TFLite)"


def _missing_extra(name: str, err: Exception):
    class Missing:
        help = f"(unavailable: {err})"

        def add_arguments(self, parser: argparse.ArgumentParser) -> None:
            parser.add_argument("rest", nargs=argparse.REMAINDER)

        def run(self, args: argparse.Namespace) -> int:
            raise UserError(f"'{name}' needs a dependency that is not installed ({err}); "
                            "install the matching extra, e.g. pip install -e '.[distill]'")

    return Missing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-affectsr",
        description="Emotion-aware face super-resolution for edge devices (AffectSRNet).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    # the same flag after the command (``eval ... -v``); SUPPRESS keeps a -v given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for ep in sorted(entry_points(group="edge_affectsr.commands"), key=lambda e: e.name):
        try:
            cls = ep.load()
        except ImportError as e:
            cls = _missing_extra(ep.name, e)
        cmd = cls()
        p = sub.add_parser(ep.name, help=cmd.help, description=inspect.cleandoc(cls.__doc__ or cmd.help),
                           epilog=epilog(cmd.examples) if hasattr(cmd, "examples") else None,
                           formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common])
        cmd.add_arguments(p)
        p.set_defaults(_command=cmd)
    return parser


def package_version() -> str:
    try:
        return version("edge-affectsr")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        quiet_libraries()
    with nullcontext() if args.verbose else NativeStderr():
        logging.basicConfig(  # inside: its handler writes to the terminal, not to the native pipe
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
        )
        try:
            return int(args._command.run(args) or 0)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
