"""``asc-server``: serve scene classification over gRPC, check a server's health, or ask its info.

Every flag of ``serve`` also reads an environment variable (``ASC_PORT`` for ``--port`` and so
on), which is how containers configure it. Exit codes: 0 clean stop, 2 bad flags or a
checkpoint that cannot be loaded (the message names the file and the problem).

The commands live by concern: flags in ``server.flags``, what ``serve`` builds from them in
``server.startup``, the running server in ``server.app``, ``health`` and ``info`` in
``server.client_commands``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from server import access
from server.client_commands import check_health, client_credentials, print_info
from server.flags import build_parser, build_parser_with_options
from server.safe_log import EscapingFilter
from server.startup import StartupError

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    parser, options = build_parser_with_options()
    args = parser.parse_args(argv)
    opts = options.get(args.command)
    if opts is not None and opts.problems:  # a variable no flag would accept: refuse, naming it
        opts.parser.error("; ".join(opts.problems))
    if args.command == "add-device":
        return add_device(args)
    if args.command in ("health", "info"):
        try:
            credentials = client_credentials(args)
        except StartupError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if args.command == "health":
            return check_health(args.server, args.timeout, credentials)
        return print_info(args.server, args.timeout, credentials)
    return run_serve(args)


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:  # one line per record, whatever it holds
        handler.addFilter(EscapingFilter())
    from server.app import serve  # torch and the service load here, never for health or info

    try:
        return asyncio.run(serve(args))
    except StartupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def add_device(args: argparse.Namespace) -> int:
    """Append a device to the tokens file; its token is shown once and kept nowhere else."""
    try:
        access.check_device_id(args.device_id)
        if args.token_out is not None and args.token_out.exists():
            raise ValueError(f"--token-out {args.token_out} exists; not overwriting a token")
        token = access.add_device(args.tokens, args.device_id)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.token_out is None:
        print(token)
        print(
            f"added {args.device_id} to {args.tokens}; the token above is shown only once",
            file=sys.stderr,
        )
        return 0
    fd = os.open(args.token_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    print(
        f"added {args.device_id} to {args.tokens}; its token is in {args.token_out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
