"""``asc-server``: serve scene classification over gRPC, check a server's health, or ask its info.

Every flag of ``serve`` also reads an environment variable (``ASC_PORT`` for ``--port`` and so
on), which is how containers configure it. Exit codes: 0 clean stop, 2 bad flags or a
checkpoint that cannot be loaded (the message names the file and the problem).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

import grpc
from google.protobuf.json_format import MessageToDict

from asc.credentials import CredentialFileError, read_credential, read_pem

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ENSEMBLE = REPO / "models" / "ensemble.safetensors"
DEFAULT_DETECTOR = REPO / "models" / "detector.safetensors"
log = logging.getLogger("asc.server")


def _env(name: str, default):
    return os.environ.get(name, default)


def _help(text: str, env: str, unset: str = "%(default)s") -> str:
    """``TEXT (default: ...) [ENV]``: every flag's help ends with its default and its variable.

    ``unset`` says what the flag's absence means while ``env`` is not set either (e.g. "none,
    plaintext"); once the variable is set, its value is the default shown."""
    return f"{text} (default: {'%(default)s' if os.environ.get(env) else unset}) [{env}]"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asc-server", description=__doc__.splitlines()[0])
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


def build_budgets(args: argparse.Namespace, max_message_bytes: int):
    """The Budgets the flags ask for; StartupError for a value that makes no sense."""
    from server.budgets import MB, Budgets

    for flag in (
        "max_clip_seconds",
        "audio_memory_mb",
        "stream_memory_mb",
        "max_windows_per_clip",
        "max_overlap",
        "classify_max_seconds",
        "classify_calls",
    ):
        if not getattr(args, flag) > 0:
            raise StartupError(f"--{flag.replace('_', '-')} must be positive")
    if args.max_overlap < 1:
        raise StartupError(f"--max-overlap must be at least 1, got {args.max_overlap}")
    if args.cache_mb < 0:
        raise StartupError(f"--cache-mb must not be negative, got {args.cache_mb}")
    if args.classify_rate < 0:
        raise StartupError(f"--classify-rate must not be negative, got {args.classify_rate}")
    return Budgets(
        max_clip_seconds=args.max_clip_seconds,
        max_message_bytes=max_message_bytes,
        cache_bytes=int(args.cache_mb * MB),
        max_windows_per_clip=args.max_windows_per_clip,
        max_overlap=args.max_overlap,
        stream_bytes=int(args.stream_memory_mb * MB),
        audio_bytes=int(args.audio_memory_mb * MB),
        classify_seconds=args.classify_max_seconds,
        classify_calls=args.classify_calls,
        classify_rate=args.classify_rate,
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from server.safe_log import EscapingFilter

    for handler in logging.getLogger().handlers:  # one line per record, whatever it holds
        handler.addFilter(EscapingFilter())
    try:
        return asyncio.run(serve(args))
    except StartupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


class StartupError(Exception):
    """Flags, device or checkpoints that keep the server from starting."""


def _read(flag: str, path: str) -> bytes:
    try:
        return read_credential(flag, path)
    except CredentialFileError as e:
        raise StartupError(str(e)) from e


def _pem(flag: str, path: str) -> bytes:
    try:
        return read_pem(flag, path)
    except CredentialFileError as e:
        raise StartupError(str(e)) from e


def server_credentials(args: argparse.Namespace) -> grpc.ServerCredentials | None:
    if not args.tls_cert and not args.tls_key:
        if args.tls_client_ca:
            raise StartupError("--tls-client-ca needs the server's own --tls-cert and --tls-key")
        return None
    if not (args.tls_cert and args.tls_key):
        raise StartupError("give --tls-cert and --tls-key together")
    pair = (_pem("--tls-key", args.tls_key), _pem("--tls-cert", args.tls_cert))
    ca = _pem("--tls-client-ca", args.tls_client_ca) if args.tls_client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=bool(ca))


def build_access(args: argparse.Namespace, metrics):
    """The AccessControl the flags ask for (allow-all without any of them)."""
    from server.access import AccessControl, DeviceAccess, RateLimiter, TokenFile

    proxies = frozenset(p.strip() for p in args.trusted_proxies.split(",") if p.strip())
    if proxies and not args.tls_client_ca:
        raise StartupError(
            "--trusted-proxies needs --tls-client-ca (proxies are known by certificate)"
        )
    for flag in ("rate_limit_kbps", "rate_limit_packets"):
        if getattr(args, flag) < 0:
            raise StartupError(f"--{flag.replace('_', '-')} must not be negative")
    if args.rate_limit_burst <= 0:
        raise StartupError(f"--rate-limit-burst must be positive, got {args.rate_limit_burst}")
    tokens = None
    if args.tokens:
        try:
            tokens = TokenFile(args.tokens)
        except OSError as e:
            raise StartupError(f"--tokens {args.tokens}: {e.strerror or e}") from e
        except ValueError as e:
            raise StartupError(f"--tokens {e}") from e
        if not (args.tls_cert or args.tls_key):
            log.warning("--tokens without TLS: tokens cross the network in plaintext")
    limiter = RateLimiter(args.rate_limit_kbps, args.rate_limit_packets, args.rate_limit_burst)
    if tokens is None and not args.tls_client_ca and not limiter.enabled:
        return AccessControl()
    return DeviceAccess(tokens, bool(args.tls_client_ca), proxies, limiter, metrics)


def client_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS (and a token) for health and info; None for plaintext."""
    if not (args.tls_ca or args.tls_cert or args.tls_key):
        if args.token_file:
            raise StartupError(
                "--token-file needs TLS (--tls-ca): a token must not travel in plaintext"
            )
        return None
    if bool(args.tls_cert) != bool(args.tls_key):
        raise StartupError("give --tls-cert and --tls-key together")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_pem("--tls-ca", args.tls_ca) if args.tls_ca else None,
        private_key=_pem("--tls-key", args.tls_key) if args.tls_key else None,
        certificate_chain=_pem("--tls-cert", args.tls_cert) if args.tls_cert else None,
    )
    if args.token_file:
        token = _read("--token-file", args.token_file).decode().strip()
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    return credentials


def add_device(args: argparse.Namespace) -> int:
    from server import access

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


def load_models(args: argparse.Namespace):
    from asc.checkpoint import CheckpointError
    from server.inference import DetectorRunner, SceneRunner, pick_device
    from server.service import Models

    try:
        device = pick_device(args.device)
    except (ValueError, RuntimeError) as e:
        raise StartupError(f"--device {args.device}: {e}") from e
    try:
        scene = SceneRunner(args.ensemble, device)
        detector = None
        if str(args.detector).lower() not in ("", "none", "off"):
            detector = DetectorRunner(args.detector, device)
    except CheckpointError as e:
        raise StartupError(str(e)) from e
    return Models(scene, detector)


async def serve(args: argparse.Namespace) -> int:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_health.v1.health import aio as health_aio
    from grpc_reflection.v1alpha import reflection
    from prometheus_client import start_http_server

    from proto import scene_classifier_pb2 as pb
    from server.handlers import add_service
    from server.metrics import ServerMetrics
    from server.service import SceneService

    if args.max_batch < 1:
        raise StartupError(f"--max-batch must be at least 1, got {args.max_batch}")
    if args.max_delay_ms < 0:
        raise StartupError(f"--max-delay-ms must not be negative, got {args.max_delay_ms}")
    limit = int(args.max_message_mb * 1024 * 1024)
    budgets = build_budgets(args, limit)
    metrics = ServerMetrics()
    credentials = server_credentials(args)  # flags and files checked before the slow part
    access = build_access(args, metrics)
    models = load_models(args)
    for runner in (models.scene, models.detector):
        if runner is not None:
            metrics.model_info.labels(runner.checkpoint.kind).info(
                {"model_id": runner.model_id, "version": runner.version, "path": str(runner.path)}
            )
    try:
        httpd, _ = start_http_server(args.metrics_port, addr=args.host, registry=metrics.registry)
    except OSError as e:
        raise StartupError(f"--metrics-port {args.metrics_port}: {e}") from e
    # gRPC core refuses anything above its own limit before a handler sees it (no status the
    # client can read, no metric), so core's ceiling sits above ours and the service answers
    # messages between the two with RESOURCE_EXHAUSTED and counts them.
    ceiling = limit + max(limit, 8 << 20)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", ceiling),
            ("grpc.max_send_message_length", limit),
        ]
    )
    service = SceneService(
        models,
        metrics,
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        max_streams=args.max_streams,
        decode_workers=args.decode_workers,
        limits=budgets,
        access=access,
    )
    add_service(service, server)  # the generated registration, with tolerant request parsing
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    service_name = pb.DESCRIPTOR.services_by_name["SceneClassifier"].full_name
    reflection.enable_server_reflection(
        [
            service_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    # The health service (and reflection) share the port and its TLS or mutual TLS, but need no
    # token: a healthcheck names no device. Everything of SceneClassifier passes `access`.
    address = f"{args.host}:{args.port}"
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as e:
        httpd.shutdown()
        raise StartupError(f"--port {args.port}: cannot listen on {args.host}: {e}") from e
    await server.start()
    service.start()
    from server.budgets import memory_budget

    idle = _rss_mb()
    parts = memory_budget(service.budgets, args.decode_workers, models.scene.rate)
    for name in ("", service_name):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    ready = {
        "event": "listening",
        "port": port,
        "metrics_port": httpd.server_port,
        "device": str(models.scene.device),
        "ensemble": models.scene.model_id,
        "detector": models.detector.model_id if models.detector else None,
        "tls": credentials is not None,
        "client_certificates": bool(args.tls_client_ca),
        "tokens": bool(args.tokens),
        "min_clip_seconds": service.budgets.min_clip_seconds,
        "idle_rss_mb": round(idle, 1),
        "memory_budget_mb": round(idle + sum(parts.values()), 1),
        "memory_budget_parts_mb": {name: round(mb, 1) for name, mb in parts.items()},
    }
    print(json.dumps(ready), flush=True)  # tests and scripts read the ports from this line
    log.info("serving on %s:%d, metrics on :%d", args.host, port, httpd.server_port)
    log.info(
        "memory budget: %.0f MB idle + %s = %.0f MB (gRPC's transport buffers on top)",
        idle,
        " + ".join(f"{name} {mb:.0f}" for name, mb in parts.items()),
        idle + sum(parts.values()),
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: draining streams (up to %.0f s)", args.drain_seconds)
    await health.enter_graceful_shutdown()
    service.begin_drain()
    try:
        await asyncio.wait_for(service.wait_idle(), args.drain_seconds)
    except TimeoutError:
        log.warning("drain timed out with %d streams open; cancelling them", service.active)
    await server.stop(grace=min(5.0, args.drain_seconds))
    await service.close()
    httpd.shutdown()
    log.info("stopped")
    return 0


def _rss_mb() -> float:
    """This process's resident memory (Linux; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _channel(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
    if credentials is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, credentials)


def check_health(
    target: str, timeout: float, credentials: grpc.ChannelCredentials | None = None
) -> int:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with _channel(target, credentials) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError as e:
            print(f"{target}: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{target}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def print_info(
    target: str, timeout: float, credentials: grpc.ChannelCredentials | None = None
) -> int:
    from proto import scene_classifier_pb2 as pb
    from proto import scene_classifier_pb2_grpc as pbg

    with _channel(target, credentials) as channel:
        try:
            reply = pbg.SceneClassifierStub(channel).GetInfo(pb.InfoRequest(), timeout=timeout)
        except grpc.RpcError as e:
            print(f"error: {target}: {e.code().name}: {e.details()}", file=sys.stderr)
            return 2
    print(json.dumps(MessageToDict(reply, preserving_proto_field_name=True), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
