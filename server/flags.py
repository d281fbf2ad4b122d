"""The flags of ``asc-server``'s commands, grouped by concern: listening, models, batching,
budgets, logging and security for ``serve``; the server to ask and its credentials for
``health`` and ``info``; the tokens file for ``add-device``.

Every flag of ``serve`` (and the server and credentials of ``health`` and ``info``) also reads
an ``ASC_*`` environment variable, which is how containers configure it; the command line wins.
The flags follow the project's one convention (``asc.cli_options``). Values are checked where
they are used (``server.startup``), whose messages name the flag to fix.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asc.cli_options import EnvOptions, add_client_credentials

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ENSEMBLE = REPO / "models" / "ensemble.safetensors"
DEFAULT_DETECTOR = REPO / "models" / "detector.safetensors"
ENV_PREFIX = "ASC_"
DESCRIPTION = (
    "``asc-server``: serve scene classification over gRPC, check a server's health, or ask its "
    "info."
)
# Variables whose blank value has always meant "not set" here: a credential left empty, or a
# rate limit left empty (no limit, the burst's default), as templated deployments write them.
BLANK_IS_UNSET = frozenset(
    {
        "TLS_CERT",
        "TLS_KEY",
        "TLS_CLIENT_CA",
        "TLS_CA",
        "TOKENS",
        "TOKEN_FILE",
        "RATE_LIMIT_KBPS",
        "RATE_LIMIT_PACKETS",
        "RATE_LIMIT_BURST",
    }
)


class EpilogFormatter(argparse.HelpFormatter):
    """Wraps descriptions to the terminal as usual, but keeps text with line breaks (the
    epilog's table of variables) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class ServerOptions(EnvOptions):
    """``EnvOptions`` with the server's ``ASC_`` prefix, its blank-is-unset variables, and
    argument groups that share one list of variables (for the epilog) and of problems."""

    def __init__(self, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        super().__init__(parser, ENV_PREFIX)  # type: ignore[arg-type]

    def env(self, name: str) -> str | None:
        value = super().env(name)
        return None if value == "" and name in BLANK_IS_UNSET else value

    def group(self, title: str, description: str) -> ServerOptions:
        """Options under their own heading in the same --help."""
        part = ServerOptions(self.parser.add_argument_group(title, description))
        part.names, part.problems = self.names, self.problems
        return part


def build_parser() -> argparse.ArgumentParser:
    """The parser alone, for those who only read or print it."""
    return build_parser_with_options()[0]


def build_parser_with_options() -> tuple[argparse.ArgumentParser, dict[str, EnvOptions]]:
    """The parser, and per subcommand the options whose variables it read (their
    ``problems`` are values the command must refuse to start with)."""
    parser = argparse.ArgumentParser(prog="asc-server", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    options = {
        "serve": _serve_command(sub),
        "health": _health_command(sub),
        "info": _info_command(sub),
    }
    _add_device_command(sub)
    for name, opts in options.items():
        sub.choices[name].epilog = opts.epilog()
    return parser, options


def _serve_command(sub: argparse._SubParsersAction) -> EnvOptions:
    serve = sub.add_parser(
        "serve",
        help="run the gRPC scene classifier with Prometheus metrics",
        description="Run the scene classifier. Each flag's environment variable is in brackets; "
        "the command line wins.",
        formatter_class=EpilogFormatter,
    )
    opts = ServerOptions(serve)
    _listen_flags(opts)
    _model_flags(opts)
    _stream_flags(opts)
    _budget_flags(opts)
    opts.add("--log-level", env="LOG_LEVEL", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    _security_flags(opts)
    return opts


def _listen_flags(opts: EnvOptions) -> None:
    opts.add(
        "--host",
        env="HOST",
        default="0.0.0.0",
        help="address to listen on; 127.0.0.1 accepts local clients only",
    )
    opts.add("--port", env="PORT", type=int, default=50051, help="gRPC port; 0 picks a free one")
    opts.add(
        "--metrics-port",
        env="METRICS_PORT",
        type=int,
        default=9100,
        help="Prometheus /metrics port; 0 picks a free one",
    )


def _model_flags(opts: EnvOptions) -> None:
    opts.add(
        "--ensemble",
        env="ENSEMBLE",
        type=Path,
        default=DEFAULT_ENSEMBLE,
        help="scene ensemble checkpoint to serve, e.g. one from asc-train fit-ensemble",
    )
    opts.add(
        "--detector",
        env="DETECTOR",
        default=str(DEFAULT_DETECTOR),
        help="lossy-detector checkpoint, or 'none' to serve without lossy detection",
    )
    opts.add(
        "--device",
        env="DEVICE",
        default="auto",
        help="torch device: auto (the first GPU if there is one, else the CPU), cpu, cuda or "
        "cuda:N",
    )
    opts.add(
        "--runtime",
        env="RUNTIME",
        choices=("auto", "eager", "onnxruntime", "openvino"),
        default="auto",
        help="where the models' forward passes run, each checked against PyTorch at start: "
        "auto (on a CPU, each model's fastest measured runtime: OpenVINO for the scene "
        "ensemble, in bfloat16 where the CPU has it, ONNX Runtime for the detector; eager "
        "PyTorch on a GPU), eager, onnxruntime or openvino",
    )
    opts.add(
        "--passes",
        env="PASSES",
        type=int,
        default=0,
        help="forward passes that may run at once; 0: 2 on a CPU, 1 on a GPU (docs/performance.md)",
    )


def _stream_flags(opts: EnvOptions) -> None:
    """Batching, concurrency, message size and shutdown: how streams share the server."""
    opts.add(
        "--max-batch",
        env="MAX_BATCH",
        type=int,
        default=64,
        help="most windows per forward pass; larger batches raise throughput under load, 1 is "
        "one pass per window",
    )
    opts.add(
        "--max-delay-ms",
        env="MAX_DELAY_MS",
        type=float,
        default=10.0,
        help="longest a window waits for its batch to fill (never while every open stream has "
        "a window waiting); lower it for latency, raise it for fuller batches",
    )
    opts.add(
        "--max-streams",
        env="MAX_STREAMS",
        type=int,
        default=0,
        help="concurrent streams accepted, to bound memory and latency; 0 is no limit",
    )
    opts.add(
        "--max-clip-seconds",
        env="MAX_CLIP_SECONDS",
        type=float,
        default=600.0,
        help="a clip longer than this without end_of_clip ends its stream (bounds the audio "
        "one stream can hold)",
    )
    opts.add(
        "--max-message-mb",
        env="MAX_MESSAGE_MB",
        type=float,
        default=16.0,
        help="largest gRPC message accepted; raise it to ClassifyClip larger files",
    )
    opts.add(
        "--drain-seconds",
        env="DRAIN_SECONDS",
        type=float,
        default=30.0,
        help="on SIGTERM, how long streams get to receive their last results before the server "
        "stops",
    )
    opts.add(
        "--decode-workers",
        env="DECODE_WORKERS",
        type=int,
        default=0,
        help="threads decoding payloads off the event loop; 0: half the CPU cores, at least 1 "
        "(more threads than that cost more CPU per clip on a busy server, docs/performance.md)",
    )


def _budget_flags(serve: ServerOptions) -> None:
    opts = serve.group(
        "budgets",
        "what one request or stream may cost; a request over a budget gets RESOURCE_EXHAUSTED "
        "or INVALID_ARGUMENT naming the flag to raise (README: Budgets)",
    )
    _memory_budget_flags(opts)
    _classify_budget_flags(opts)
    opts.add(
        "--cache-mb",
        env="CACHE_MB",
        type=float,
        default=64.0,
        help="memory of finished clips' results, which answers a device resending the same "
        "clip without classifying it again",
    )
    opts.add(
        "--grid-cpu-share",
        env="GRID_CPU_SHARE",
        type=float,
        default=0.25,
        help="the most of one core the detector's frame-grid tests (which find the codecs' "
        "frames) may take while windows wait or run, 0 to 1 (on an idle server they run at "
        "full speed); under load they take it from the windows' latency; 0 turns them off "
        "(the detector's network alone)",
    )


def _memory_budget_flags(opts: EnvOptions) -> None:
    opts.add(
        "--audio-memory-mb",
        env="AUDIO_MEMORY_MB",
        type=float,
        default=2048.0,
        help="decoded audio all open streams may hold together; each stream reserves what its "
        "settings need when it starts (about 9 MB for 10 s windows at 44.1 kHz) and a "
        "stream that does not fit is refused",
    )
    opts.add(
        "--stream-memory-mb",
        env="STREAM_MEMORY_MB",
        type=float,
        default=64.0,
        help="the most audio memory one stream's settings may need (window length and sample "
        "rate set it); larger settings are refused",
    )
    opts.add(
        "--max-windows-per-clip",
        env="MAX_WINDOWS_PER_CLIP",
        type=int,
        default=1000,
        help="windows one clip (streamed or ClassifyClip) may be cut into",
    )
    opts.add(
        "--max-overlap",
        env="MAX_OVERLAP",
        type=float,
        default=10.0,
        help="largest window / hop: how many times each second of audio may be classified",
    )


def _classify_budget_flags(opts: EnvOptions) -> None:
    opts.add(
        "--classify-max-seconds",
        env="CLASSIFY_MAX_SECONDS",
        type=float,
        default=120.0,
        help="the longest audio one ClassifyClip file may decode to",
    )
    opts.add(
        "--classify-rate",
        env="CLASSIFY_RATE",
        type=float,
        default=20.0,
        help="seconds of audio one stream (or ClassifyClip caller) may have classified per "
        "second, sustained, after a burst of 120 s; past it its windows wait (a real-time "
        "stream with 10 s windows uses 1); 0 is no limit",
    )
    opts.add(
        "--classify-calls",
        env="CLASSIFY_CALLS",
        type=int,
        default=2,
        help="ClassifyClip calls decoded and classified at once; others wait their turn",
    )


def _security_flags(serve: ServerOptions) -> None:
    opts = serve.group(
        "security", "TLS, mutual TLS, device tokens and per-device rate limits (README: Security)"
    )
    _tls_flags(opts)
    _rate_limit_flags(opts)


def _tls_flags(opts: EnvOptions) -> None:
    opts.add(
        "--tls-cert",
        env="TLS_CERT",
        metavar="PEM",
        help="server certificate chain, PEM; with --tls-key the server speaks TLS",
        absent="none, plaintext",
    )
    opts.add(
        "--tls-key",
        env="TLS_KEY",
        metavar="PEM",
        help="its private key, PEM",
        absent="none, plaintext",
    )
    opts.add(
        "--tls-client-ca",
        env="TLS_CLIENT_CA",
        metavar="PEM",
        help="mutual TLS: require client certificates signed by this CA; a certificate's CN is "
        "its device id",
        absent="none, no client certificate asked for",
    )
    opts.add(
        "--trusted-proxies",
        env="TRUSTED_PROXIES",
        metavar="CN,...",
        default="",
        help="comma-separated client-certificate CNs of proxies (Envoy) whose "
        "x-forwarded-client-cert names the device's certificate",
        absent="none",
    )
    opts.add(
        "--tokens",
        env="TOKENS",
        metavar="FILE",
        help="require 'authorization: Bearer <token>' found in this file of 'DEVICE_ID "
        "sha256:<hex>' lines (asc-server add-device)",
        absent="none, no token asked for",
    )


def _rate_limit_flags(opts: EnvOptions) -> None:
    opts.add(
        "--rate-limit-kbps",
        env="RATE_LIMIT_KBPS",
        metavar="KBPS",
        type=float,
        default=0.0,
        help="per device: payload kbit/s; 0 is no limit",
    )
    opts.add(
        "--rate-limit-packets",
        env="RATE_LIMIT_PACKETS",
        metavar="N",
        type=float,
        default=0.0,
        help="per device: packets (and ClassifyClip calls) per second; 0 is no limit",
    )
    opts.add(
        "--rate-limit-burst",
        env="RATE_LIMIT_BURST",
        metavar="SECONDS",
        type=float,
        default=10.0,
        help="seconds of either rate a device may send at once, e.g. to catch up after a reconnect",
    )


def _health_command(sub: argparse._SubParsersAction) -> EnvOptions:
    health = sub.add_parser(
        "health",
        help="exit 0 when a server's gRPC health service says SERVING, else 1",
        formatter_class=EpilogFormatter,
    )
    opts = ServerOptions(health)
    _server_flag(opts)
    opts.add(
        "--timeout",
        type=float,
        default=3.0,
        help="seconds to wait for the answer before exiting 1",
    )
    # Read from serve's own ASC_TLS_CERT and ASC_TLS_KEY (plus ASC_TLS_CA), so a container's
    # healthcheck needs no flags of its own.
    add_client_credentials(opts, "this client's")
    return opts


def _info_command(sub: argparse._SubParsersAction) -> EnvOptions:
    info = sub.add_parser(
        "info",
        help="print a server's codecs, models and versions as JSON",
        formatter_class=EpilogFormatter,
    )
    opts = ServerOptions(info)
    _server_flag(opts)
    opts.add(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the answer before failing",
    )
    add_client_credentials(opts, "this client's")
    return opts


def _server_flag(opts: EnvOptions) -> None:
    opts.add(
        "--server",
        env="SERVER",
        default="localhost:50051",
        help="the server to ask, HOST:PORT",
    )


def _add_device_command(sub: argparse._SubParsersAction) -> None:
    """Run by hand on the server's host, so none of its flags reads a variable."""
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
