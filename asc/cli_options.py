"""The one convention for the console scripts' flags: every option's help ends with its
default, and, where the tool reads one, its environment variable: ``TEXT (default: ...)
[PREFIX_NAME]``.

Containers and service units configure ``asc-server`` (``ASC_*``) and ``asc-edge``
(``ASC_EDGE_*``) without a command line; ``asc-train`` and ``asc-codec`` are run by hand and
read no variables, but say their defaults the same way. The command line always wins over a
variable. A variable the option cannot take (a yes/no that is neither, a port that is not a
number) is collected in ``problems`` instead of being silently read as "off" or failing with the
flag's name, so the command can refuse to start and name the variable.

Kept free of torch and grpc: the edge imports it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


class EnvOptions:
    """Adds options to one parser, each optionally backed by ``<prefix><NAME>``.

    ``absent`` says what leaving out an option with no default value means (for a yes/no
    option: "off" unless told otherwise); an option with neither is refused when it is added,
    so no flag's help can omit what happens without it."""

    def __init__(self, parser: argparse.ArgumentParser, prefix: str = "") -> None:
        self.parser = parser
        self.prefix = prefix
        self.names: list[tuple[str, str]] = []  # (variable, what it sets)
        self.problems: list[str] = []

    def env(self, name: str) -> str | None:
        return os.environ.get(self.prefix + name)

    def add(
        self, *flags: str, env: str | None = None, absent: str | None = None, **kwargs: Any
    ) -> argparse.Action:
        action = kwargs.get("action")
        needs_default = action not in ("store_true", "help", "version")
        if needs_default and kwargs.get("default") is None and not absent:
            raise ValueError(f"{flags[-1]}: say what leaving it out means (absent=...)")
        value = self.env(env) if env else None
        if action == "store_true":
            if value is not None and value.strip().lower() not in TRUE | FALSE:
                self.problems.append(f"{self.prefix}{env}={value!r} is not a yes/no value")
            kwargs["default"] = value is not None and value.strip().lower() in TRUE
            default = "on" if kwargs["default"] else absent or "off"
        elif action == "append":  # the command reads the variable itself
            default = value.replace("%", "%%") if value else absent
        else:
            default = "%(default)s" if kwargs.get("default") not in (None, "") else absent
            if value is not None:
                kwargs["default"] = self._convert(env, value, kwargs.get("type"))
                default = value.replace("%", "%%") or absent  # as the user wrote it: 4, not 4.0
        default = default or "%(default)s"
        where = f" [{self.prefix}{env}]" if env else ""
        kwargs["help"] = f"{kwargs.get('help', '')} (default: {default}){where}"
        if env:
            self.names.append((self.prefix + env, flags[-1]))
        return self.parser.add_argument(*flags, **kwargs)

    def _convert(self, env: str, value: str, kind: Callable[[str], Any] | None) -> Any:
        """The variable's value as the option's type, converted now so that a bad one is
        reported naming the variable (argparse would name only the flag, which the user never
        typed); the command refuses to start while ``problems`` holds it."""
        if kind is None:
            return value
        try:
            return kind(value)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
            self.problems.append(f"{self.prefix}{env}={value!r}: {e}")
            return None

    def epilog(self) -> str:
        """The variables this parser reads, for the end of its --help."""
        if not self.names:
            return ""
        width = max(len(n) for n, _ in self.names)
        lines = [f"  {n:<{width}}  {h}" for n, h in self.names]
        head = "environment variables (each sets its option; the command line wins):"
        return "\n".join([head, *lines])


def positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type: ``kind`` of the text, refused unless above zero."""

    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def add_client_credentials(opts: EnvOptions, who: str) -> None:
    """The TLS and token options of every gRPC client here (the edge's commands, the server's
    health and info), written once so their names, variables and meaning cannot drift; ``who``
    names the caller in the help ("this device's", "this client's")."""
    opts.add(
        "--tls-ca",
        env="TLS_CA",
        metavar="PEM",
        help="connect with TLS, trusting this CA; needed when the server has --tls-cert",
        absent="none, plaintext",
    )
    opts.add(
        "--tls-cert",
        env="TLS_CERT",
        metavar="PEM",
        help=f"{who} certificate, for a server with --tls-client-ca (mutual TLS)",
        absent="none",
    )
    opts.add("--tls-key", env="TLS_KEY", metavar="PEM", help="its private key", absent="none")
    opts.add(
        "--token-file",
        env="TOKEN_FILE",
        metavar="FILE",
        help=f"file holding {who} bearer token, for a server with --tokens (needs TLS)",
        absent="none, no token sent",
    )
