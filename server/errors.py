"""The one exception that ends a stream or a call with a status, and its message bound."""

from __future__ import annotations

import grpc

from server.safe_log import status_message


class StreamError(Exception):
    """Ends one stream (or call) with ``code``; the message names the problem for the client.

    The message is cut to under 1 KB here, whatever built it: it travels in HTTP/2 trailers,
    where a long one would reach the client as RESOURCE_EXHAUSTED instead of this status.
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        message = status_message(message)
        super().__init__(message)
        self.code, self.message = code, message


def detached(error: BaseException) -> BaseException:
    """``error`` without its traceback and chained exceptions, to be kept or passed on.

    A traceback holds every frame it passed through, and their locals: the request (a 16 MB
    file, a 1 MB clip id) and the audio decoded from it. Kept in a reference cycle, as gRPC's
    aborts make them, those frames wait for the garbage collector's rare full passes, so a
    stream of bad requests would hold their bytes long after answering them.
    """
    error.__traceback__ = None
    error.__context__ = None
    error.__cause__ = None
    return error
