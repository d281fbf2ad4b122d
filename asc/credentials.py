"""Reading the files a TLS or token flag names, for the server and the edge alike.

Both sides check a credential file the moment its flag is read, before any connection, so that
a wrong path or a key pasted into the certificate's place is reported against the flag that
named it, not as a TLS handshake failure later. Each side turns :class:`CredentialFileError`
into its own error type (the edge's ``CredentialsError``, the server's ``StartupError``); the
message stays the same.

``channel_credentials`` is every gRPC client's TLS and token setup (the edge's commands, the
server's health and info), from the options ``asc.cli_options.add_client_credentials`` adds.
Free of torch; grpc is imported only when channel credentials are built.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc


class CredentialFileError(Exception):
    """A credential file is missing, unreadable, empty, or not PEM where PEM is expected; the
    message names the flag and the file."""


def read_credential(flag: str, path: str | os.PathLike) -> bytes:
    """The file's bytes; an empty file is refused (a certificate or token never is)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise CredentialFileError(f"{flag} {path}: {e.strerror or e}") from e
    if not data.strip():
        raise CredentialFileError(f"{flag} {path}: the file is empty")
    return data


def read_pem(flag: str, path: str | os.PathLike) -> bytes:
    """A certificate, key or CA bundle: the file must hold at least one PEM block."""
    data = read_credential(flag, path)
    if b"-----BEGIN " not in data:
        raise CredentialFileError(f"{flag} {path}: not a PEM file")
    return data


def read_token(path: str | os.PathLike, flag: str = "--token-file") -> str:
    """One bearer token on one line; a file anyone may read is used, with a warning."""
    token = read_credential(flag, path).decode(errors="replace").strip()
    if any(c.isspace() for c in token) or not token.isprintable():
        raise CredentialFileError(f"{flag} {path}: expected one token on one line")
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0
    if mode & stat.S_IROTH:
        print(f"warning: {path} is readable by anyone; chmod 600 it", file=sys.stderr)
    return token


def channel_credentials(
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    token_file: str | None = None,
) -> grpc.ChannelCredentials | None:
    """TLS credentials (None: plaintext). TLS is on when a CA or a client certificate is given;
    without ``tls_ca`` the server is checked against gRPC's default roots. The token is sent as
    ``authorization: Bearer <token>`` call credentials, which gRPC attaches only on TLS."""
    import grpc

    if not (tls_ca or tls_cert or tls_key):
        if token_file:
            raise CredentialFileError(
                "--token-file needs TLS (--tls-ca): a bearer token must not travel in plaintext"
            )
        return None
    if bool(tls_cert) != bool(tls_key):
        raise CredentialFileError("give --tls-cert and --tls-key together")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read_pem("--tls-ca", tls_ca) if tls_ca else None,
        private_key=read_pem("--tls-key", tls_key) if tls_key else None,
        certificate_chain=read_pem("--tls-cert", tls_cert) if tls_cert else None,
    )
    if token_file:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(read_token(token_file))
        )
    return credentials
