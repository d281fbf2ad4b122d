"""What ``asc-server serve`` builds from its flags before it listens: budgets, TLS credentials,
access control and the models. Each refuses a value that makes no sense with a
:class:`StartupError` naming the flag, and everything cheap is checked before the models load.

Torch and the service are imported inside ``load_models``, so that ``health`` and ``info``,
which share the credential helpers, start fast.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

import grpc

from asc.credentials import CredentialFileError, read_pem
from server.access import AccessControl, DeviceAccess, RateLimiter, TokenFile
from server.budgets import MB, Budgets

if TYPE_CHECKING:
    from server.metrics import ServerMetrics
    from server.service import Models

log = logging.getLogger("asc.server")


class StartupError(Exception):
    """Flags, device or checkpoints that keep the server from starting."""


def pem_bytes(flag: str, path: str) -> bytes:
    """A certificate, key or CA file, which must be PEM."""
    try:
        return read_pem(flag, path)
    except CredentialFileError as e:
        raise StartupError(str(e)) from e


def server_credentials(args: argparse.Namespace) -> grpc.ServerCredentials | None:
    """TLS, or mutual TLS with --tls-client-ca; None for plaintext."""
    if not args.tls_cert and not args.tls_key:
        if args.tls_client_ca:
            raise StartupError("--tls-client-ca needs the server's own --tls-cert and --tls-key")
        return None
    if not (args.tls_cert and args.tls_key):
        raise StartupError("give --tls-cert and --tls-key together")
    pair = (pem_bytes("--tls-key", args.tls_key), pem_bytes("--tls-cert", args.tls_cert))
    ca = pem_bytes("--tls-client-ca", args.tls_client_ca) if args.tls_client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=bool(ca))


def build_access(args: argparse.Namespace, metrics: ServerMetrics) -> AccessControl:
    """The AccessControl the flags ask for (allow-all without any of them)."""
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


def build_budgets(args: argparse.Namespace, max_message_bytes: int) -> Budgets:
    """The Budgets the flags ask for; StartupError for a value that makes no sense."""
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
    if not 0 <= args.grid_cpu_share <= 1:
        raise StartupError(f"--grid-cpu-share must be within 0 to 1, got {args.grid_cpu_share}")
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
        grid_cpu_share=args.grid_cpu_share,
    )


def default_passes(device) -> int:
    """Two forward passes at once on a CPU, one on a GPU. On the 2-core machine two passes
    (each on all cores) delivered 1.11x the clips per second of one under 32 streams, over six
    alternated rounds (docs/performance.md): one pass leaves the cores idle while it is between
    its front end and its network, or waiting for the event loop."""
    return 2 if device.type == "cpu" else 1


def load_models(args: argparse.Namespace) -> Models:
    """The ensemble (and detector) on the device the flags name; the slow part of starting."""
    from asc.checkpoint import CheckpointError
    from asc.runtimes import RuntimeChoiceError
    from server.inference import DetectorRunner, SceneRunner, pick_device
    from server.service import Models

    try:
        device = pick_device(args.device)
    except (ValueError, RuntimeError) as e:
        raise StartupError(f"--device {args.device}: {e}") from e
    runtime = getattr(args, "runtime", "auto")
    passes = getattr(args, "passes", 0) or default_passes(device)
    try:
        scene = SceneRunner(args.ensemble, device, runtime, passes)
        detector = None
        if str(args.detector).lower() not in ("", "none", "off"):
            detector = DetectorRunner(args.detector, device, runtime, passes)
    except CheckpointError as e:
        raise StartupError(str(e)) from e
    except RuntimeChoiceError as e:
        raise StartupError(f"--runtime {runtime}: {e}") from e
    return Models(scene, detector)
