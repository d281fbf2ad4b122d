"""``asc-server serve``: assemble the gRPC server from what startup built, listen, announce the
ports on one JSON line, and on SIGTERM drain the streams before stopping.

Imported only when ``serve`` runs (it loads torch through the service), never by ``health``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from proto import scene_classifier_pb2 as pb
from server.access import AccessControl
from server.budgets import Budgets, memory_budget
from server.handlers import add_service
from server.metrics import ServerMetrics
from server.service import Models, SceneService
from server.startup import (
    StartupError,
    build_access,
    build_budgets,
    load_models,
    server_credentials,
)

log = logging.getLogger("asc.server")


@dataclass
class Built:
    """What the flags asked for, checked and loaded, before anything listens."""

    limit: int  # largest message, bytes (--max-message-mb)
    budgets: Budgets
    metrics: ServerMetrics
    credentials: grpc.ServerCredentials | None
    access: AccessControl
    models: Models


@dataclass
class Running:
    """The listening parts that shutdown must stop, in order."""

    server: grpc.aio.Server
    service: SceneService
    health: health_aio.HealthServicer
    httpd: WSGIServer  # Prometheus /metrics


async def serve(args: argparse.Namespace) -> int:
    built = build(args)
    httpd = start_metrics_http(args, built.metrics)
    server = grpc_server(built.limit)
    service = SceneService(
        built.models,
        built.metrics,
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        max_streams=args.max_streams,
        decode_workers=args.decode_workers,
        limits=built.budgets,
        access=built.access,
    )
    add_service(service, server)  # the generated registration, with tolerant request parsing
    health, service_name = add_health_and_reflection(server)
    port = listen(server, args, built.credentials, httpd)
    await server.start()
    service.start()
    running = Running(server, service, health, httpd)
    await announce(args, built, running, port, service_name)
    await wait_for_signal()
    await drain_and_stop(running, args.drain_seconds)
    return 0


def build(args: argparse.Namespace) -> Built:
    """Flags and files are checked before the slow part, loading the models."""
    if args.max_batch < 1:
        raise StartupError(f"--max-batch must be at least 1, got {args.max_batch}")
    if args.max_delay_ms < 0:
        raise StartupError(f"--max-delay-ms must not be negative, got {args.max_delay_ms}")
    if args.passes < 0:
        raise StartupError(
            f"--passes must not be negative (0: the device's default), got {args.passes}"
        )
    limit = int(args.max_message_mb * 1024 * 1024)
    budgets = build_budgets(args, limit)
    metrics = ServerMetrics()
    credentials = server_credentials(args)
    access = build_access(args, metrics)
    models = load_models(args)
    for runner in (models.scene, models.detector):
        if runner is not None:
            metrics.model_info.labels(runner.checkpoint.kind).info(
                {
                    "model_id": runner.model_id,
                    "version": runner.version,
                    "path": str(runner.path),
                    "runtime": runner.runtime.name,
                }
            )
            log.info("%s runs on %s", runner.checkpoint.kind, runner.runtime.note)
    return Built(limit, budgets, metrics, credentials, access, models)


def start_metrics_http(args: argparse.Namespace, metrics: ServerMetrics) -> WSGIServer:
    try:
        httpd, _ = start_http_server(args.metrics_port, addr=args.host, registry=metrics.registry)
    except OSError as e:
        raise StartupError(f"--metrics-port {args.metrics_port}: {e}") from e
    return httpd


def grpc_server(limit: int) -> grpc.aio.Server:
    # gRPC core refuses anything above its own limit before a handler sees it (no status the
    # client can read, no metric), so core's ceiling sits above ours and the service answers
    # messages between the two with RESOURCE_EXHAUSTED and counts them.
    ceiling = limit + max(limit, 8 << 20)
    return grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", ceiling),
            ("grpc.max_send_message_length", limit),
        ]
    )


def add_health_and_reflection(server: grpc.aio.Server) -> tuple[health_aio.HealthServicer, str]:
    """The standard health service, and reflection for grpcurl; returns the health servicer
    and SceneClassifier's full service name (whose health is set too)."""
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
    return health, service_name


def listen(
    server: grpc.aio.Server,
    args: argparse.Namespace,
    credentials: grpc.ServerCredentials | None,
    httpd: WSGIServer,
) -> int:
    """The port gRPC bound (``--port 0`` picks one).

    The health service (and reflection) share the port and its TLS or mutual TLS, but need no
    token: a healthcheck names no device. Everything of SceneClassifier passes ``access``."""
    address = f"{args.host}:{args.port}"
    try:
        if credentials is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, credentials)
    except RuntimeError as e:
        httpd.shutdown()
        raise StartupError(f"--port {args.port}: cannot listen on {args.host}: {e}") from e


async def announce(
    args: argparse.Namespace, built: Built, running: Running, port: int, service_name: str
) -> None:
    """Health says SERVING, then one JSON line on stdout (tests and scripts read the ports
    from it) and the memory budget in the log."""
    models, service, httpd = built.models, running.service, running.httpd
    idle = _rss_mb()
    parts = memory_budget(service.budgets, service.decode_workers, models.scene.rate)
    for name in ("", service_name):
        await running.health.set(name, health_pb2.HealthCheckResponse.SERVING)
    ready = {
        "event": "listening",
        "port": port,
        "metrics_port": httpd.server_port,
        "device": str(models.scene.device),
        "runtime": models.scene.runtime.name,
        "ensemble": models.scene.model_id,
        "detector": models.detector.model_id if models.detector else None,
        "tls": built.credentials is not None,
        "client_certificates": bool(args.tls_client_ca),
        "tokens": bool(args.tokens),
        "min_clip_seconds": service.budgets.min_clip_seconds,
        "idle_rss_mb": round(idle, 1),
        "memory_budget_mb": round(idle + sum(parts.values()), 1),
        "memory_budget_parts_mb": {name: round(mb, 1) for name, mb in parts.items()},
    }
    print(json.dumps(ready), flush=True)
    log.info("serving on %s:%d, metrics on :%d", args.host, port, httpd.server_port)
    log.info(
        "memory budget: %.0f MB idle + %s = %.0f MB (gRPC's transport buffers on top)",
        idle,
        " + ".join(f"{name} {mb:.0f}" for name, mb in parts.items()),
        idle + sum(parts.values()),
    )


async def wait_for_signal() -> None:
    """Until SIGTERM (an orchestrator stopping the container) or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def drain_and_stop(running: Running, drain_seconds: float) -> None:
    """Health turns NOT_SERVING so balancers move on, open streams get ``drain_seconds`` to
    receive their last results, then the server, the batchers and the metrics stop."""
    service = running.service
    log.info("stopping: draining streams (up to %.0f s)", drain_seconds)
    await running.health.enter_graceful_shutdown()
    service.begin_drain()
    try:
        await asyncio.wait_for(service.wait_idle(), drain_seconds)
    except TimeoutError:
        log.warning("drain timed out with %d streams open; cancelling them", service.active)
    await running.server.stop(grace=min(5.0, drain_seconds))
    await service.close()
    running.httpd.shutdown()
    log.info("stopped")


def _rss_mb() -> float:
    """This process's resident memory (Linux; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
