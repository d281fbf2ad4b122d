"""The flags of ``asc-server``'s commands, grouped by concern: listening, models, batching,
budgets, logging and security for ``serve``; the server to ask and its credentials for
``health`` and ``info``; the tokens file for ``add-device``.

Every flag of ``serve`` also reads an environment variable (``ASC_PORT`` for ``--port`` and so
on), which is how containers configure it; the command line wins.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ENSEMBLE = REPO / "models" / "ensemble.safetensors"
DEFAULT_DETECTOR = REPO / "models" / "detector.safetensors"
DESCRIPTION = (
    "``asc-server``: serve scene classification over gRPC, check a server's health, or ask its "
    "info."
)


def _env(name: str, default):
    return os.environ.get(name, default)


def _help(text: str, env: str, unset: str = "%(default)s") -> str:
    """``TEXT (default: ...) [ENV]``: every flag's help ends with its default and its variable.

    ``unset`` says what the flag's absence means while ``env`` is not set either (e.g. "none,
    plaintext"); once the variable is set, its value is the default shown."""
    return f"{text} (default: {'%(default)s' if os.environ.get(env) else unset}) [{env}]"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asc-server", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the gRPC scene classifier with Prometheus metrics",
        description="Run the scene classifier. Each flag's environment variable is in brackets; "
        "the command line wins.",
    )
    serve.add_argument(
        "--host",
        default=_env("ASC_HOST", "0.0.0.0"),
        help=_help("address to listen on; 127.0.0.1 accepts local clients only", "ASC_HOST"),
    )
    serve.add_argument(
        "--port",
        type=int,
        default=int(_env("ASC_PORT", 50051)),
        help=_help("gRPC port; 0 picks a free one", "ASC_PORT"),
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("ASC_METRICS_PORT", 9100)),
        help=_help("Prometheus /metrics port; 0 picks a free one", "ASC_METRICS_PORT"),
    )
    serve.add_argument(
        "--ensemble",
        type=Path,
        default=Path(_env("ASC_ENSEMBLE", DEFAULT_ENSEMBLE)),
        help=_help(
            "scene ensemble checkpoint to serve, e.g. one from asc-train fit-ensemble",
            "ASC_ENSEMBLE",
        ),
    )
    serve.add_argument(
        "--detector",
        default=_env("ASC_DETECTOR", str(DEFAULT_DETECTOR)),
        help=_help(
            "lossy-detector checkpoint, or 'none' to serve without lossy detection",
            "ASC_DETECTOR",
        ),
    )
    serve.add_argument(
        "--device",
        default=_env("ASC_DEVICE", "auto"),
        help=_help(
            "torch device: auto (the first GPU if there is one, else the CPU), cpu, cuda or cuda:N",
            "ASC_DEVICE",
        ),
    )
    serve.add_argument(
        "--max-batch",
        type=int,
        default=int(_env("ASC_MAX_BATCH", 64)),
        help=_help(
            "most windows per forward pass; larger batches raise throughput under load, 1 is "
            "one pass per window",
            "ASC_MAX_BATCH",
        ),
    )
    serve.add_argument(
        "--max-delay-ms",
        type=float,
        default=float(_env("ASC_MAX_DELAY_MS", 10)),
        help=_help(
            "longest a window waits for its batch to fill; lower it for latency, raise it for "
            "fuller batches",
            "ASC_MAX_DELAY_MS",
        ),
    )
    serve.add_argument(
        "--max-streams",
        type=int,
        default=int(_env("ASC_MAX_STREAMS", 0)),
        help=_help(
            "concurrent streams accepted, to bound memory and latency; 0 is no limit",
            "ASC_MAX_STREAMS",
        ),
    )
    serve.add_argument(
        "--max-clip-seconds",
        type=float,
        default=float(_env("ASC_MAX_CLIP_SECONDS", 600)),
        help=_help(
            "a clip longer than this without end_of_clip ends its stream (bounds the audio "
            "one stream can hold)",
            "ASC_MAX_CLIP_SECONDS",
        ),
    )
    serve.add_argument(
        "--max-message-mb",
        type=float,
        default=float(_env("ASC_MAX_MESSAGE_MB", 16)),
        help=_help(
            "largest gRPC message accepted; raise it to ClassifyClip larger files",
            "ASC_MAX_MESSAGE_MB",
        ),
    )
    serve.add_argument(
        "--drain-seconds",
        type=float,
        default=float(_env("ASC_DRAIN_SECONDS", 30)),
        help=_help(
            "on SIGTERM, how long streams get to receive their last results before the server "
            "stops",
            "ASC_DRAIN_SECONDS",
        ),
    )
    serve.add_argument(
        "--decode-workers",
        type=int,
        default=int(_env("ASC_DECODE_WORKERS", 4)),
        help=_help(
            "threads decoding payloads off the event loop; raise it when decoding many streams "
            "is the bottleneck",
            "ASC_DECODE_WORKERS",
        ),
    )
    _budget_flags(serve)
    serve.add_argument(
        "--log-level",
        default=_env("ASC_LOG_LEVEL", "INFO"),
        help=_help("DEBUG, INFO, WARNING or ERROR", "ASC_LOG_LEVEL"),
    )
    _security_flags(serve)

    health = sub.add_parser(
        "health", help="exit 0 when a server's gRPC health service says SERVING, else 1"
    )
    health.add_argument(
        "--server",
        default=_env("ASC_SERVER", "localhost:50051"),
        help=_help("the server to ask, HOST:PORT", "ASC_SERVER"),
    )
    health.add_argument(
        "--timeout",
        type=float,
        default=3.0,
        help="seconds to wait for the answer before exiting 1 (default: %(default)s)",
    )
    _client_flags(health)
    info = sub.add_parser("info", help="print a server's codecs, models and versions as JSON")
    info.add_argument(
        "--server",
        default=_env("ASC_SERVER", "localhost:50051"),
        help=_help("the server to ask, HOST:PORT", "ASC_SERVER"),
    )
    info.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the answer before failing (default: %(default)s)",
    )
    _client_flags(info)

    add = sub.add_parser(
        "add-device",
        help="add a device to a tokens file and print its new bearer token once",
        description="Append DEVICE_ID and the SHA-256 of a new random token to the tokens file "
        "(created with mode 0600). The token itself is printed once (or written to --token-out, "
        "mode 0600) and kept nowhere else. Revoke it by deleting its line; a running server "
        "reads the file again when it changes.",
    )
    add.add_argument(
        "device_id",
        metavar="DEVICE_ID",
        help="the device's id (1-64 letters, digits, '.', '_' or '-'), as its edge sends it "
        "with --device-id",
    )
    add.add_argument(
        "--tokens",
        required=True,
        type=Path,
        help="the server's tokens file (serve --tokens); created when missing (required)",
    )
    add.add_argument(
        "--token-out",
        type=Path,
        help="write the token to this new file (never overwritten) instead of stdout, e.g. "
        "straight into the device's provisioning (default: none, print it on stdout)",
    )
    return parser


def _budget_flags(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group(
        "budgets",
        "what one request or stream may cost; a request over a budget gets RESOURCE_EXHAUSTED "
        "or INVALID_ARGUMENT naming the flag to raise (README: Budgets)",
    )
    group.add_argument(
        "--audio-memory-mb",
        type=float,
        default=float(_env("ASC_AUDIO_MEMORY_MB", 2048)),
        help=_help(
            "decoded audio all open streams may hold together; each stream reserves what its "
            "settings need when it starts (about 9 MB for 10 s windows at 44.1 kHz) and a "
            "stream that does not fit is refused",
            "ASC_AUDIO_MEMORY_MB",
        ),
    )
    group.add_argument(
        "--stream-memory-mb",
        type=float,
        default=float(_env("ASC_STREAM_MEMORY_MB", 64)),
        help=_help(
            "the most audio memory one stream's settings may need (window length and sample "
            "rate set it); larger settings are refused",
            "ASC_STREAM_MEMORY_MB",
        ),
    )
    group.add_argument(
        "--max-windows-per-clip",
        type=int,
        default=int(_env("ASC_MAX_WINDOWS_PER_CLIP", 1000)),
        help=_help(
            "windows one clip (streamed or ClassifyClip) may be cut into",
            "ASC_MAX_WINDOWS_PER_CLIP",
        ),
    )
    group.add_argument(
        "--max-overlap",
        type=float,
        default=float(_env("ASC_MAX_OVERLAP", 10)),
        help=_help(
            "largest window / hop: how many times each second of audio may be classified",
            "ASC_MAX_OVERLAP",
        ),
    )
    group.add_argument(
        "--classify-max-seconds",
        type=float,
        default=float(_env("ASC_CLASSIFY_MAX_SECONDS", 120)),
        help=_help(
            "the longest audio one ClassifyClip file may decode to", "ASC_CLASSIFY_MAX_SECONDS"
        ),
    )
    group.add_argument(
        "--classify-rate",
        type=float,
        default=float(_env("ASC_CLASSIFY_RATE", 20)),
        help=_help(
            "seconds of audio one stream (or ClassifyClip caller) may have classified per "
            "second, sustained, after a burst of 120 s; past it its windows wait (a real-time "
            "stream with 10 s windows uses 1); 0 is no limit",
            "ASC_CLASSIFY_RATE",
        ),
    )
    group.add_argument(
        "--classify-calls",
        type=int,
        default=int(_env("ASC_CLASSIFY_CALLS", 2)),
        help=_help(
            "ClassifyClip calls decoded and classified at once; others wait their turn",
            "ASC_CLASSIFY_CALLS",
        ),
    )
    group.add_argument(
        "--cache-mb",
        type=float,
        default=float(_env("ASC_CACHE_MB", 64)),
        help=_help(
            "memory of finished clips' results, which answers a device resending the same "
            "clip without classifying it again",
            "ASC_CACHE_MB",
        ),
    )


def _security_flags(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group(
        "security", "TLS, mutual TLS, device tokens and per-device rate limits (README: Security)"
    )
    group.add_argument(
        "--tls-cert",
        metavar="PEM",
        default=_env("ASC_TLS_CERT", None) or None,
        help=_help(
            "server certificate chain, PEM; with --tls-key the server speaks TLS",
            "ASC_TLS_CERT",
            "none, plaintext",
        ),
    )
    group.add_argument(
        "--tls-key",
        metavar="PEM",
        default=_env("ASC_TLS_KEY", None) or None,
        help=_help("its private key, PEM", "ASC_TLS_KEY", "none, plaintext"),
    )
    group.add_argument(
        "--tls-client-ca",
        metavar="PEM",
        default=_env("ASC_TLS_CLIENT_CA", None) or None,
        help=_help(
            "mutual TLS: require client certificates signed by this CA; a certificate's CN is "
            "its device id",
            "ASC_TLS_CLIENT_CA",
            "none, no client certificate asked for",
        ),
    )
    group.add_argument(
        "--trusted-proxies",
        metavar="CN,...",
        default=_env("ASC_TRUSTED_PROXIES", ""),
        help=_help(
            "comma-separated client-certificate CNs of proxies (Envoy) whose "
            "x-forwarded-client-cert names the device's certificate",
            "ASC_TRUSTED_PROXIES",
            "none",
        ),
    )
    group.add_argument(
        "--tokens",
        metavar="FILE",
        default=_env("ASC_TOKENS", None) or None,
        help=_help(
            "require 'authorization: Bearer <token>' found in this file of 'DEVICE_ID "
            "sha256:<hex>' lines (asc-server add-device)",
            "ASC_TOKENS",
            "none, no token asked for",
        ),
    )
    group.add_argument(
        "--rate-limit-kbps",
        metavar="KBPS",
        type=float,
        default=float(_env("ASC_RATE_LIMIT_KBPS", 0) or 0),
        help=_help("per device: payload kbit/s; 0 is no limit", "ASC_RATE_LIMIT_KBPS"),
    )
    group.add_argument(
        "--rate-limit-packets",
        metavar="N",
        type=float,
        default=float(_env("ASC_RATE_LIMIT_PACKETS", 0) or 0),
        help=_help(
            "per device: packets (and ClassifyClip calls) per second; 0 is no limit",
            "ASC_RATE_LIMIT_PACKETS",
        ),
    )
    group.add_argument(
        "--rate-limit-burst",
        metavar="SECONDS",
        type=float,
        default=float(_env("ASC_RATE_LIMIT_BURST", 10) or 10),
        help=_help(
            "seconds of either rate a device may send at once, e.g. to catch up after a reconnect",
            "ASC_RATE_LIMIT_BURST",
        ),
    )


def _client_flags(command: argparse.ArgumentParser) -> None:
    """TLS and token flags of health and info; with ``serve``'s environment (ASC_TLS_CERT and
    ASC_TLS_KEY) plus ASC_TLS_CA, a container's healthcheck needs no flags of its own."""
    command.add_argument(
        "--tls-ca",
        metavar="PEM",
        default=_env("ASC_TLS_CA", None) or None,
        help=_help(
            "connect with TLS, trusting this CA; needed when the server has --tls-cert",
            "ASC_TLS_CA",
            "none, plaintext",
        ),
    )
    command.add_argument(
        "--tls-cert",
        metavar="PEM",
        default=_env("ASC_TLS_CERT", None) or None,
        help=_help(
            "client certificate, for a server with --tls-client-ca (mutual TLS)",
            "ASC_TLS_CERT",
            "none",
        ),
    )
    command.add_argument(
        "--tls-key",
        metavar="PEM",
        default=_env("ASC_TLS_KEY", None) or None,
        help=_help("its private key", "ASC_TLS_KEY", "none"),
    )
    command.add_argument(
        "--token-file",
        metavar="FILE",
        default=_env("ASC_TOKEN_FILE", None) or None,
        help=_help(
            "send the bearer token in this file, for a server with --tokens (needs TLS)",
            "ASC_TOKEN_FILE",
            "none, no token sent",
        ),
    )
