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

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ENSEMBLE = REPO / "models" / "ensemble.safetensors"
DEFAULT_DETECTOR = REPO / "models" / "detector.safetensors"
log = logging.getLogger("asc.server")


def _env(name: str, default):
    return os.environ.get(name, default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asc-server", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the gRPC scene classifier with Prometheus metrics",
        description="Run the scene classifier. Each flag's environment variable is in brackets.",
    )
    serve.add_argument("--host", default=_env("ASC_HOST", "0.0.0.0"), help="[ASC_HOST]")
    serve.add_argument(
        "--port",
        type=int,
        default=int(_env("ASC_PORT", 50051)),
        help="gRPC port; 0 picks one [ASC_PORT]",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("ASC_METRICS_PORT", 9100)),
        help="Prometheus /metrics port; 0 picks one [ASC_METRICS_PORT]",
    )
    serve.add_argument(
        "--ensemble",
        type=Path,
        default=Path(_env("ASC_ENSEMBLE", DEFAULT_ENSEMBLE)),
        help="scene ensemble checkpoint [ASC_ENSEMBLE]",
    )
    serve.add_argument(
        "--detector",
        default=_env("ASC_DETECTOR", str(DEFAULT_DETECTOR)),
        help="lossy-detector checkpoint, or 'none' [ASC_DETECTOR]",
    )
    serve.add_argument(
        "--device",
        default=_env("ASC_DEVICE", "auto"),
        help="auto, cpu, cuda or cuda:N [ASC_DEVICE]",
    )
    serve.add_argument(
        "--max-batch",
        type=int,
        default=int(_env("ASC_MAX_BATCH", 64)),
        help="most windows per forward pass; 1 is one pass per window [ASC_MAX_BATCH]",
    )
    serve.add_argument(
        "--max-delay-ms",
        type=float,
        default=float(_env("ASC_MAX_DELAY_MS", 10)),
        help="longest a window waits for its batch to fill [ASC_MAX_DELAY_MS]",
    )
    serve.add_argument(
        "--max-streams",
        type=int,
        default=int(_env("ASC_MAX_STREAMS", 0)),
        help="concurrent streams accepted; 0 is no limit [ASC_MAX_STREAMS]",
    )
    serve.add_argument(
        "--max-clip-seconds",
        type=float,
        default=float(_env("ASC_MAX_CLIP_SECONDS", 600)),
        help="a clip longer than this without end_of_clip ends its stream [ASC_MAX_CLIP_SECONDS]",
    )
    serve.add_argument(
        "--max-message-mb",
        type=float,
        default=float(_env("ASC_MAX_MESSAGE_MB", 16)),
        help="largest gRPC message accepted (ClassifyClip files) [ASC_MAX_MESSAGE_MB]",
    )
    serve.add_argument(
        "--drain-seconds",
        type=float,
        default=float(_env("ASC_DRAIN_SECONDS", 30)),
        help="on SIGTERM, how long streams get to receive their last results [ASC_DRAIN_SECONDS]",
    )
    serve.add_argument(
        "--decode-workers",
        type=int,
        default=int(_env("ASC_DECODE_WORKERS", 4)),
        help="threads decoding payloads off the event loop [ASC_DECODE_WORKERS]",
    )
    serve.add_argument("--log-level", default=_env("ASC_LOG_LEVEL", "INFO"), help="[ASC_LOG_LEVEL]")

    health = sub.add_parser(
        "health", help="exit 0 when a server's gRPC health service says SERVING, else 1"
    )
    health.add_argument("--server", default=_env("ASC_SERVER", "localhost:50051"))
    health.add_argument("--timeout", type=float, default=3.0)
    info = sub.add_parser("info", help="print a server's codecs, models and versions as JSON")
    info.add_argument("--server", default=_env("ASC_SERVER", "localhost:50051"))
    info.add_argument("--timeout", type=float, default=10.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "health":
        return check_health(args.server, args.timeout)
    if args.command == "info":
        return print_info(args.server, args.timeout)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return asyncio.run(serve(args))
    except StartupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


class StartupError(Exception):
    """Flags, device or checkpoints that keep the server from starting."""


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
    from proto import scene_classifier_pb2_grpc as pbg
    from server.metrics import ServerMetrics
    from server.service import SceneService
    from server.session import Limits

    if args.max_batch < 1:
        raise StartupError(f"--max-batch must be at least 1, got {args.max_batch}")
    if args.max_delay_ms < 0:
        raise StartupError(f"--max-delay-ms must not be negative, got {args.max_delay_ms}")
    models = load_models(args)
    metrics = ServerMetrics()
    for runner in (models.scene, models.detector):
        if runner is not None:
            metrics.model_info.labels(runner.checkpoint.kind).info(
                {"model_id": runner.model_id, "version": runner.version, "path": str(runner.path)}
            )
    try:
        httpd, _ = start_http_server(args.metrics_port, addr=args.host, registry=metrics.registry)
    except OSError as e:
        raise StartupError(f"--metrics-port {args.metrics_port}: {e}") from e
    limit = int(args.max_message_mb * 1024 * 1024)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
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
        limits=Limits(max_clip_seconds=args.max_clip_seconds),
    )
    pbg.add_SceneClassifierServicer_to_server(service, server)
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
    try:
        port = server.add_insecure_port(f"{args.host}:{args.port}")
    except RuntimeError as e:
        httpd.shutdown()
        raise StartupError(f"--port {args.port}: cannot listen on {args.host}: {e}") from e
    await server.start()
    service.start()
    for name in ("", service_name):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    ready = {
        "event": "listening",
        "port": port,
        "metrics_port": httpd.server_port,
        "device": str(models.scene.device),
        "ensemble": models.scene.model_id,
        "detector": models.detector.model_id if models.detector else None,
    }
    print(json.dumps(ready), flush=True)  # tests and scripts read the ports from this line
    log.info("serving on %s:%d, metrics on :%d", args.host, port, httpd.server_port)

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


def check_health(target: str, timeout: float) -> int:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
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


def print_info(target: str, timeout: float) -> int:
    from proto import scene_classifier_pb2 as pb
    from proto import scene_classifier_pb2_grpc as pbg

    with grpc.insecure_channel(target) as channel:
        try:
            reply = pbg.SceneClassifierStub(channel).GetInfo(pb.InfoRequest(), timeout=timeout)
        except grpc.RpcError as e:
            print(f"error: {target}: {e.code().name}: {e.details()}", file=sys.stderr)
            return 2
    print(json.dumps(MessageToDict(reply, preserving_proto_field_name=True), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
