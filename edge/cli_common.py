"""What ``asc-edge``'s parser and its commands share: the variable prefix, the exit codes, the
one error line, and the gRPC credentials the options name.

Apart from edge/cli.py so that a command module (edge/stream_command.py) can use them without
importing the parser that imports it.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

ENV_PREFIX = "ASC_EDGE_"
EXIT_ERROR, EXIT_INTERRUPTED = 2, 130


def error(message: str) -> int:
    print(f"asc-edge: error: {message}", file=sys.stderr, flush=True)
    return EXIT_ERROR


def credentials_from(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS and token credentials from --tls-* and --token-file; their files are read here, so a
    missing one fails before any connection (grpc is imported only when a command runs)."""
    from edge.security import channel_credentials

    return channel_credentials(args.tls_ca, args.tls_cert, args.tls_key, args.token_file)
