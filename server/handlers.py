"""Registering the service with request parsing that cannot fail the call with the wrong status.

The generated ``add_SceneClassifierServicer_to_server`` parses requests with ``FromString``;
a message that does not parse (invalid UTF-8 in a string field, a truncated message) then
raises inside gRPC, before any handler runs, and the client sees INTERNAL or UNKNOWN while the
server logs a traceback: a client fault reported as a server fault. Here each request type is
parsed by ``tolerant``, which turns such bytes into an ``Undecodable`` the handlers answer with
INVALID_ARGUMENT. Method names, types and reflection are unchanged: it is the same service.
"""

from __future__ import annotations

import grpc
from google.protobuf.message import DecodeError

from proto import scene_classifier_pb2 as pb
from server.errors import StreamError
from server.safe_log import shown

SERVICE = pb.DESCRIPTOR.services_by_name["SceneClassifier"].full_name


class Undecodable:
    """Bytes that did not parse as the request type; ``error()`` is the status to end with."""

    def __init__(self, type_name: str, reason: Exception):
        self.type_name, self.reason = type_name, reason

    def error(self) -> StreamError:
        return StreamError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request does not parse as {self.type_name} (string fields must be valid "
            f"UTF-8): {shown(str(self.reason), 200)}",
        )


def tolerant(message_type):
    """A request deserializer that returns ``Undecodable`` instead of raising."""
    name = message_type.DESCRIPTOR.full_name

    def parse(data: bytes):
        try:
            return message_type.FromString(data)
        except (DecodeError, ValueError) as e:
            return Undecodable(name, e)

    return parse


def add_service(servicer, server: grpc.aio.Server) -> None:
    handlers = {
        "StreamScenes": grpc.stream_stream_rpc_method_handler(
            servicer.StreamScenes,
            request_deserializer=tolerant(pb.StreamRequest),
            response_serializer=pb.SceneResult.SerializeToString,
        ),
        "ClassifyClip": grpc.unary_unary_rpc_method_handler(
            servicer.ClassifyClip,
            request_deserializer=tolerant(pb.ClipRequest),
            response_serializer=pb.ClipResult.SerializeToString,
        ),
        "GetInfo": grpc.unary_unary_rpc_method_handler(
            servicer.GetInfo,
            request_deserializer=tolerant(pb.InfoRequest),
            response_serializer=pb.InfoResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
