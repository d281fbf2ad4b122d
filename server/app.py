"""``asc-server serve``: assemble the gRPC server from what startup built, listen, announce the
ports on one JSON line, and on SIGTERM drain the streams before stopping.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from pathlib import Path

import grpc

from server.startup import (
    StartupError,
    build_access,
    build_budgets,
    load_models,
    server_credentials,
)

log = logging.getLogger("asc.server")


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
