"""The one flag convention (asc/cli_options.py): variables as defaults, the command line
winning, and a bad variable refused by name rather than read as something else."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from asc.cli_options import EnvOptions, positive


def options(
    monkeypatch: pytest.MonkeyPatch, **env: str
) -> tuple[argparse.ArgumentParser, EnvOptions]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    parser = argparse.ArgumentParser()
    opts = EnvOptions(parser, "T_")
    opts.add("--port", env="PORT", type=positive(int), default=50051, help="port")
    opts.add("--loud", env="LOUD", action="store_true", help="louder")
    opts.add("--name", absent="none", help="no variable")
    return parser, opts


def test_a_variable_sets_the_default_and_the_command_line_wins(monkeypatch) -> None:
    parser, opts = options(monkeypatch, T_PORT="7000", T_LOUD="yes")
    assert not opts.problems
    assert parser.parse_args([]).port == 7000
    assert parser.parse_args([]).loud is True
    assert parser.parse_args(["--port", "8000"]).port == 8000


def test_help_gives_the_default_and_the_variable(monkeypatch) -> None:
    parser, _ = options(monkeypatch)
    text = " ".join(parser.format_help().split())
    assert "port (default: 50051) [T_PORT]" in text
    assert "louder (default: off) [T_LOUD]" in text
    assert "no variable (default: none)" in text


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"T_PORT": "abc"}, "T_PORT='abc'"),
        ({"T_PORT": "-1"}, "T_PORT='-1'"),
        ({"T_LOUD": "maybe"}, "T_LOUD='maybe'"),
    ],
)
def test_a_bad_variable_is_a_problem_that_names_it(monkeypatch, env, named) -> None:
    _, opts = options(monkeypatch, **env)
    assert len(opts.problems) == 1 and named in opts.problems[0]


def test_an_option_must_say_what_leaving_it_out_means() -> None:
    opts = EnvOptions(argparse.ArgumentParser())
    with pytest.raises(ValueError, match="absent"):
        opts.add("--thing", help="a thing")


@pytest.mark.parametrize(
    ("command", "variable"),
    [
        ("server.cli serve", "ASC_PORT=abc"),
        ("edge.cli stream --codec pcm16 x.wav", "ASC_EDGE_RATE=0"),
    ],
)
def test_the_servers_and_the_edges_refuse_a_bad_variable_by_name(command, variable) -> None:
    name, value = variable.split("=")
    done = subprocess.run(
        [sys.executable, "-m", *command.split()],
        env={"PATH": "/usr/bin:/bin", name: value},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert f"{name}={value!r}" in done.stderr
