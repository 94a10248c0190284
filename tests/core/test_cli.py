"""The ``edge-affectsr`` command speaks one dialect (edge_affectsr/cli_args.py): every option's help
gives its default, every ``--help`` ends with examples that parse, ``--set`` reaches every config a
command reads, and the previous release's spellings still work with a one-line warning."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge_affectsr.cli import build_parser, main
from edge_affectsr.cli_args import Renamed
from edge_affectsr.models import resolve_model

CLI = [sys.executable, "-m", "edge_affectsr.cli"]
ROOT = Path(__file__).resolve().parents[2]


def commands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def example_argv(line: str) -> list[str]:
    """An example line as argv: no ``edge-affectsr``, no ``# comment``, no ``> redirect``."""
    words = shlex.split(line.split("#")[0].split(">")[0])
    assert words[0] == "edge-affectsr", line
    return words[1:]


def test_every_option_states_its_default_and_every_command_shows_examples():
    missing = []
    for name, parser in commands().items():
        assert "\nExamples:\n  edge-affectsr " + name in parser.format_help(), name
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            assert action.help, f"{name} {action.option_strings[0]} has no help"
            if all(action.default is not v for v in (None, False, argparse.SUPPRESS)) and "default" not in action.help:
                missing.append(f"{name} {action.option_strings[0]} (default {action.default!r})")
    assert not missing, "help without its default: " + ", ".join(missing)


def test_the_examples_parse_in_the_new_dialect(capsys):
    parser = build_parser()
    for name, sub in commands().items():
        lines = sub.epilog.splitlines()[1:]
        assert lines, name
        for line in lines:
            args = parser.parse_args(example_argv(line.strip()))
            assert args.command == name, line
    assert "deprecated" not in capsys.readouterr().err


def test_old_spellings_are_hidden_from_help():
    renamed = 0
    for name, parser in commands().items():
        shown = parser.format_help()
        for action in parser._actions:
            if isinstance(action, Renamed):
                renamed += 1
                spellings = action.option_strings or [f"[{action.metavar}]", f"  {action.metavar} "]
                assert not [s for s in spellings if s in shown], (name, spellings)
    assert renamed == 16  # every old spelling in RENAMED below, and upscale's OUT_DIR


# (argv in the old spelling, the attribute it lands in, its value, the warning's new spelling)
RENAMED = [
    (["run", "--bundle", "b"], "model", "b", "--bundle is deprecated; use --model"),
    (["process", "--bundle", "b", "--source", "builtin"], "model", "b", "--bundle is deprecated; use --model"),
    (["bench", "--bundle", "b"], "model", "b", "--bundle is deprecated; use --model"),
    (["bench", "--video", "v.mp4"], "source", Path("v.mp4"), "--video is deprecated; use --source"),
    (["camera-eval", "--data", "d", "--bundle", "b"], "model", "b", "--bundle is deprecated; use --model"),
    (["camera-eval", "--data", "d", "--faces", "7"], "limit", 7, "--faces is deprecated; use --limit"),
    (["crowd-bench", "--bundle", "b"], "model", "b", "--bundle is deprecated; use --model"),
    (["crowd-bench", "--faces", "3"], "people", 3, "--faces is deprecated; use --people"),
    (["convert", "s.pt", "--data", "d", "--out", "o"], "model", "s.pt", "the positional CHECKPOINT is deprecated; use --model CHECKPOINT"),
    (["convert", "--model", "s", "--calib", "d", "--out", "o"], "data", Path("d"), "--calib is deprecated; use --data"),
    (["convert", "--model", "s", "--data", "d", "--out", "o", "--verify-faces", "9"], "limit", 9,
     "--verify-faces is deprecated; use --limit"),
    (["flash", "b", "--to", "/t"], "model", "b", "the positional BUNDLE is deprecated; use --model BUNDLE"),
    (["selftest", "b"], "model", "b", "the positional BUNDLE is deprecated; use --model BUNDLE"),
    (["sign", "b", "--key", "k"], "model", "b", "the positional BUNDLE is deprecated; use --model BUNDLE"),
    (["upscale", "lr", "--out", "sr"], "source", Path("lr"), "the positional IN_DIR is deprecated; use --source IN_DIR"),
]


@pytest.mark.parametrize("argv,dest,value,warning", RENAMED, ids=[" ".join(r[0][:2]) for r in RENAMED])
def test_an_old_spelling_lands_in_the_new_name_with_one_warning(capsys, argv, dest, value, warning):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    assert capsys.readouterr().err == f"warning: {warning}\n"


def test_both_old_positionals_of_upscale(capsys):
    args = build_parser().parse_args(["upscale", "lr", "sr", "--model", "bicubic"])
    assert (args.source, args.out, args.model) == (Path("lr"), Path("sr"), "bicubic")
    assert capsys.readouterr().err.count("is deprecated") == 2


@pytest.mark.parametrize("argv,words", [
    (["run", "--bundle", "a", "--model", "b"], "argument --model: not allowed with argument --bundle"),
    (["selftest", "--model", "a", "b"], "not allowed with argument --model"),
    (["convert", "--model", "a", "--calib", "d", "--data", "d", "--out", "o"], "not allowed with argument --calib"),
    (["selftest"], "--model is required"),
    (["convert", "--model", "a", "--out", "o"], "--data is required"),
    (["crowd-bench", "--seeds", "0,1", "--seed", "2"], "argument --seed: not allowed with argument --seeds"),
])
def test_old_and_new_spelling_together_or_neither_is_a_usage_error(capsys, argv, words):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and words in err and "Traceback" not in err


def print_config(capsys, *argv: str) -> dict:
    assert main(["run", *argv, "--print-config"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_set_overrides_the_device_config_and_flags_override_set(capsys):
    config = print_config(capsys, "--set", "detector.score_threshold=0.6", "--set", "interpreter.delegate_order=[cpu]")
    assert config["detector"]["score_threshold"] == 0.6 and config["interpreter"]["delegate_order"] == ["cpu"]
    config = print_config(capsys, "--set", "bundle.path=from-set", "--model", "from-flag")
    assert config["bundle"]["path"] == "from-flag"
    assert print_config(capsys, "--bundle", "old")["bundle"]["path"] == "old"


@pytest.mark.parametrize("argv,words", [
    (["run", "--set", "detector.nope=1", "--print-config"], "detector.nope: unknown key"),
    (["run", "--set", "detector.score_threshold=high", "--print-config"], "detector.score_threshold"),
    (["run", "--set", "detector", "--print-config"], "expected KEY=VALUE"),
    (["process", "--source", "builtin", "--set", "nope.x=1"], "nope: unknown key"),
    (["bench", "--set", "nope.x=1"], "nope: unknown key"),
    (["crowd-bench", "--set", "detector.max_faces=many"], "detector.max_faces"),
])
def test_a_bad_set_is_one_clean_error_before_any_work(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and "Traceback" not in err


def test_selftest_old_positional_and_set_on_the_shipped_bundle(tmp_path: Path):
    bundle = str(resolve_model("bundle-x4"))
    old = subprocess.run([*CLI, "selftest", bundle, "--set", "interpreter.delegate_order=[cpu]"], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert old.returncode == 0 and old.stdout.startswith("ok: bundle-x4") and " on cpu " in old.stdout, old.stderr
    assert old.stderr.splitlines()[0] == "warning: the positional BUNDLE is deprecated; use --model BUNDLE"
    bad = subprocess.run([*CLI, "selftest", "--model", "bundle-x4", "--set", "interpreter.nope=1"], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert bad.returncode == 1 and bad.stdout.startswith("FAIL: ") and "interpreter.nope: unknown key" in bad.stdout
    assert bad.stdout.count("\n") == 1 and "deprecated" not in bad.stderr


def test_bench_with_the_old_video_flag_still_runs(tmp_path: Path):
    from edge_affectsr.device.service.bench import write_builtin_video

    clip = write_builtin_video(tmp_path / "clip.avi", frames=20)
    done = subprocess.run([*CLI, "bench", "--video", str(clip), "--seconds", "1", "--threads", "1",
                           "--json", str(tmp_path / "b.json")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.splitlines()[0] == "warning: --video is deprecated; use --source"
    assert "| threads | fps |" in done.stdout and (tmp_path / "b.json").is_file()
