"""The device's credentials: TLS towards the server, its own certificate, its bearer token.

``channel_credentials`` reads the files once, before any connection, and fails with a
:class:`CredentialsError` naming the flag and file that is missing or unreadable. The token is
sent as ``authorization: Bearer <token>`` call credentials, which gRPC attaches only on a TLS
channel; it is never printed.
"""

from __future__ import annotations

import os
import stat
import sys

import grpc

from asc.credentials import CredentialFileError, read_credential, read_pem
from edge.errors import SourceError


class CredentialsError(SourceError):
    """A credential file is missing, unreadable or not what its flag expects."""


def _read(flag: str, path: str | os.PathLike) -> bytes:
    try:
        return read_credential(flag, path)
    except CredentialFileError as e:
        raise CredentialsError(str(e)) from None


def _pem(flag: str, path: str | os.PathLike) -> bytes:
    try:
        return read_pem(flag, path)
    except CredentialFileError as e:
        raise CredentialsError(str(e)) from None


def read_token(path: str | os.PathLike, flag: str = "--token-file") -> str:
    token = _read(flag, path).decode(errors="replace").strip()
    if any(c.isspace() for c in token) or not token.isprintable():
        raise CredentialsError(f"{flag} {path}: expected one token on one line")
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0
    if mode & stat.S_IROTH:
        print(f"asc-edge: warning: {path} is readable by anyone; chmod 600 it", file=sys.stderr)
    return token


def channel_credentials(
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    token_file: str | None = None,
) -> grpc.ChannelCredentials | None:
    """TLS credentials (None: plaintext). TLS is on when a CA or a client certificate is given;
    without ``tls_ca`` the server is checked against gRPC's default roots."""
    if not (tls_ca or tls_cert or tls_key):
        if token_file:
            raise CredentialsError(
                "--token-file needs TLS (--tls-ca): a bearer token must not travel in plaintext"
            )
        return None
    if bool(tls_cert) != bool(tls_key):
        raise CredentialsError("give --tls-cert and --tls-key together")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_pem("--tls-ca", tls_ca) if tls_ca else None,
        private_key=_pem("--tls-key", tls_key) if tls_key else None,
        certificate_chain=_pem("--tls-cert", tls_cert) if tls_cert else None,
    )
    if token_file:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(read_token(token_file))
        )
    return credentials
