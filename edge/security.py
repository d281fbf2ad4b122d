"""The device's credentials: TLS towards the server, its own certificate, its bearer token.

``channel_credentials`` reads the files once, before any connection, and fails with a
:class:`CredentialsError` naming the flag and file that is missing or unreadable. The token is
sent as ``authorization: Bearer <token>`` call credentials, which gRPC attaches only on a TLS
channel; it is never printed.
"""

from __future__ import annotations

import os

import grpc

from asc import credentials as shared
from asc.credentials import CredentialFileError
from edge.errors import SourceError


class CredentialsError(SourceError):
    """A credential file is missing, unreadable or not what its flag expects."""


def read_token(path: str | os.PathLike, flag: str = "--token-file") -> str:
    try:
        return shared.read_token(path, flag)
    except CredentialFileError as e:
        raise CredentialsError(str(e)) from None


def channel_credentials(
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    token_file: str | None = None,
) -> grpc.ChannelCredentials | None:
    """``asc.credentials.channel_credentials``, its errors as the edge's."""
    try:
        return shared.channel_credentials(tls_ca, tls_cert, tls_key, token_file)
    except CredentialFileError as e:
        raise CredentialsError(str(e)) from None
