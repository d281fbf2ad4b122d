"""Reading the files a TLS or token flag names, for the server and the edge alike.

Both sides check a credential file the moment its flag is read, before any connection, so that
a wrong path or a key pasted into the certificate's place is reported against the flag that
named it, not as a TLS handshake failure later. Each side turns :class:`CredentialFileError`
into its own error type (the edge's ``CredentialsError``, the server's ``StartupError``); the
message stays the same.

Free of torch and grpc: the edge imports it.
"""

from __future__ import annotations

import os
from pathlib import Path


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
