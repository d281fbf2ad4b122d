"""Every flag of every console script says what it does and shows its default in --help.

The convention: each help text ends with ``(default: ...)`` (``%(default)s`` where there is a
value; "off" or "none, ..." saying what absence means where there is none) or with
``(required)``; options backed by an environment variable then name it in brackets.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPTS = {
    "asc-codec": "asc.codecs.cli",
    "asc-train": "training.cli",
    "asc-server": "server.cli",
    "asc-edge": "edge.cli",
}
# One subcommand per script, run through the installed console script.
HELP_COMMANDS = {
    "asc-codec": ["roundtrip", "--help"],
    "asc-train": ["synth", "--help"],
    "asc-server": ["serve", "--help"],
    "asc-edge": ["stream", "--help"],
}


@pytest.fixture(autouse=True)
def no_asc_environment(monkeypatch):
    """Defaults are read from ASC_* variables when the parsers are built; start from none."""
    for name in list(os.environ):
        if name.startswith("ASC_"):
            monkeypatch.delenv(name)


def build(module: str) -> argparse.ArgumentParser:
    built = importlib.import_module(module).build_parser()
    return built[0] if isinstance(built, tuple) else built  # asc-edge also returns its options


def walk(
    parser: argparse.ArgumentParser, path: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The parser and every subcommand's, however deeply nested."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{path} {name}")


def expanded_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The action's help as --help prints it (%(default)s and friends filled in), unwrapped."""
    return parser._get_formatter()._expand_help(action)


def absent_is_possible(action: argparse.Action) -> bool:
    if action.option_strings:
        return not action.required
    return action.nargs in ("?", "*")


def help_problems(parser: argparse.ArgumentParser, path: str) -> list[str]:
    problems = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.metavar or action.dest
        where = f"{path} {name}"
        if isinstance(action, argparse._SubParsersAction):
            described = {choice.dest: choice.help for choice in action._choices_actions}
            for command in action.choices:
                if not (described.get(command) or "").strip():
                    problems.append(f"{path} {command}: the subcommand has no help")
            continue
        if not action.help or action.help == argparse.SUPPRESS or not action.help.strip():
            problems.append(f"{where}: no help")
            continue
        text = expanded_help(parser, action)
        if action.option_strings and action.required:
            if "(required)" not in text:
                problems.append(f"{where}: required, but its help does not say so: {text!r}")
            continue
        if not absent_is_possible(action):
            continue
        if "(default: " not in text:
            problems.append(f"{where}: its help does not give its default: {text!r}")
            continue
        default = action.default
        if default not in (None, False, "", argparse.SUPPRESS):
            shown = text[text.index("(default: ") :]
            if str(default) not in shown:
                problems.append(f"{where}: default {default!r} is not in its help: {text!r}")
    return problems


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_has_help_with_its_default(script):
    problems = []
    for path, parser in walk(build(SCRIPTS[script]), script):
        parser.format_help()  # a stray % in any help text fails here
        problems += help_problems(parser, path)
    assert not problems, "\n".join(problems)


def test_the_check_finds_a_flag_without_help_or_default():
    parser = argparse.ArgumentParser(prog="x")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("quiet")  # no help for the subcommand
    p = sub.add_parser("run", help="run")
    p.add_argument("--silent", type=int, default=3)
    p.add_argument("--hidden", type=int, default=5, help="a number")
    p.add_argument("--flag", action="store_true", help="a switch")
    p.add_argument("--needed", required=True, help="a value")
    p.add_argument("thing", help="")
    p.add_argument("--ok", type=int, default=7, help="a number (default: %(default)s)")
    p.add_argument("--off", action="store_true", help="a switch (default: off)")
    problems = [problem for path, q in walk(parser, "x") for problem in help_problems(q, path)]
    assert [p.split(":")[0] for p in problems] == [
        "x quiet",
        "x run --silent",
        "x run --hidden",
        "x run --flag",
        "x run --needed",
        "x run thing",
    ]


def test_the_servers_and_edges_flags_name_their_environment_variables():
    server = build("server.cli")
    serve = server._subparsers._group_actions[0].choices["serve"]
    edge = build("edge.cli")
    commands = [("ASC_", serve)] + [
        ("ASC_EDGE_", sub) for sub in edge._subparsers._group_actions[0].choices.values()
    ]
    for prefix, parser in commands:
        for action in parser._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                assert f"[{prefix}" in action.help, (parser.prog, action.option_strings)


def test_a_default_from_the_environment_is_the_one_shown(monkeypatch):
    monkeypatch.setenv("ASC_PORT", "6001")
    monkeypatch.setenv("ASC_TLS_CERT", "/etc/asc/server.pem")
    monkeypatch.setenv("ASC_EDGE_REALTIME", "yes")
    monkeypatch.setenv("ASC_EDGE_CLIP_SECONDS", "4")
    server = build("server.cli")._subparsers._group_actions[0].choices["serve"]
    text = " ".join(server.format_help().split())  # unwrapped
    assert "(default: 6001) [ASC_PORT]" in text
    assert "(default: /etc/asc/server.pem) [ASC_TLS_CERT]" in text
    edge = build("edge.cli")._subparsers._group_actions[0].choices["stream"]
    text = " ".join(edge.format_help().split())
    assert "(default: on) [ASC_EDGE_REALTIME]" in text
    assert "(default: 4) [ASC_EDGE_CLIP_SECONDS]" in text


def test_help_through_the_installed_console_scripts():
    bin_dir = Path(sys.executable).parent
    missing = [s for s in HELP_COMMANDS if not (bin_dir / s).exists()]
    if missing:
        pytest.skip(f"console scripts not installed next to {sys.executable}: {missing}")
    runs = {
        script: subprocess.Popen(
            [str(bin_dir / script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("ASC_")},
        )
        for script, args in HELP_COMMANDS.items()
    }
    for script, run in runs.items():
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, f"{script}: {err}"
        assert out.startswith(f"usage: {script} {HELP_COMMANDS[script][0]}"), out
        assert "(default: " in out, out
