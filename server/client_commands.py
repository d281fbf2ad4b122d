"""``asc-server health`` and ``asc-server info``: ask a running server, over TLS (and with a
token) when the flags say so. Meant for container healthchecks and operators' scripts.
"""

from __future__ import annotations

import argparse
import json
import sys

import grpc
from google.protobuf.json_format import MessageToDict

from asc.credentials import CredentialFileError, channel_credentials
from server.startup import StartupError


def client_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS (and a token) for health and info; None for plaintext."""
    try:
        return channel_credentials(args.tls_ca, args.tls_cert, args.tls_key, args.token_file)
    except CredentialFileError as e:
        raise StartupError(str(e)) from None


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
