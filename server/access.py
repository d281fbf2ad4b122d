"""Who may use the server: the hook every call passes through.

``AccessControl`` lets everyone in. ``DeviceAccess`` checks credentials — the client
certificate's common name under mutual TLS, a bearer token looked up in a file of token hashes,
or both, which must then name the same device — binds each caller to its own device id and
limits each device's rate. The service calls these three methods and nothing else about access.

A token is never logged, never put in a metric label and never echoed in a status message;
only its SHA-256 is kept, and lookups compare digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from server.errors import StreamError
from server.safe_log import LogLimiter, shown

log = logging.getLogger("asc.server.access")

DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
HASH_PREFIX = "sha256:"
_HASH = re.compile(r"sha256:[0-9a-f]{64}")
# Envoy's x-forwarded-client-cert (forward_client_cert_details: SANITIZE_SET, subject: true).
FORWARDED_CERT = "x-forwarded-client-cert"
_SUBJECT = re.compile(r'Subject="((?:[^"\\]|\\.)*)"')
_CN = re.compile(r"(?:^|,)\s*CN=((?:[^,\\]|\\.)+)")


class AccessControl:
    def authenticate(self, context: grpc.aio.ServicerContext) -> str | None:
        """The caller's device identity, or None when the server does not check identities.

        Raises ``StreamError(UNAUTHENTICATED, ...)`` for missing or wrong credentials.
        """
        return None

    def authorize(self, identity: str | None, device_id: str) -> None:
        """Raises ``StreamError(PERMISSION_DENIED, ...)`` when ``identity`` may not act as
        ``device_id`` (a device using another device's id)."""

    def admit(self, device_id: str, payload_bytes: int) -> None:
        """Called per packet or clip; raises ``StreamError(RESOURCE_EXHAUSTED, ...)`` past the
        device's rate limit."""


# -- tokens ------------------------------------------------------------------------------------


def new_token() -> str:
    """A fresh bearer token: 256 random bits, URL-safe base64."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def check_device_id(device_id: str) -> str:
    if not DEVICE_ID.fullmatch(device_id):
        raise ValueError(
            f"device id {shown(device_id)}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return device_id


def parse_tokens(path: Path) -> list[tuple[str, bytes]]:
    """``DEVICE_ID sha256:<hex>`` per line (``#`` starts a comment; a device may have several
    lines, which is how a token is rotated). Errors name the line, never quote it: a plain
    token pasted by mistake must not end up in a log."""
    entries = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not DEVICE_ID.fullmatch(parts[0]) or not _HASH.fullmatch(parts[1]):
            raise ValueError(
                f"{path}:{number}: expected 'DEVICE_ID sha256:<64 hex digits>' "
                "(asc-server add-device writes such lines)"
            )
        entries.append((parts[0], parts[1].encode()))
    return entries


class TokenFile:
    """The server-side file of device ids and token hashes, read again whenever it changes, so
    ``asc-server add-device`` and deleting a line (revoking a token) need no restart."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self.entries: list[tuple[str, bytes]] = []
        self._refresh(strict=True)

    def _refresh(self, strict: bool = False) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self._stamp:
                return
            self.entries = parse_tokens(self.path)
            self._stamp = stamp
            log.info("tokens: %d device token(s) from %s", len(self.entries), self.path)
        except (OSError, ValueError) as e:
            if strict:
                raise
            # A file half-written by an editor: keep the last good list, say so once.
            if self._stamp is not None:
                log.warning("tokens: keeping the previous list; %s", e)
                self._stamp = None

    def device_of(self, token: str) -> str | None:
        """The device this token belongs to. Every entry is compared, in constant time each, so
        the time taken says nothing about which entry (or how much of a digest) matched."""
        self._refresh()
        digest = hash_token(token).encode()
        found = None
        for device, expected in self.entries:
            if hmac.compare_digest(digest, expected) and found is None:
                found = device
        return found


def add_device(tokens: Path, device_id: str) -> str:
    """Append a new token hash for ``device_id`` to ``tokens`` (created 0600) and return the
    plain token, which exists nowhere else afterwards."""
    check_device_id(device_id)
    if tokens.exists():
        parse_tokens(tokens)  # refuse to append to a file the server would refuse
    token = new_token()
    fd = os.open(tokens, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(f"{device_id} {hash_token(token)}\n")
    return token


# -- rate limits -------------------------------------------------------------------------------


@dataclass
class _Bucket:
    bits: float
    packets: float
    updated: float


class RateLimiter:
    """A token bucket per device for payload kbit/s and packets/s (0: no limit on that one).

    Each bucket holds ``burst_seconds`` of its rate and starts full. A message is admitted while
    the bit bucket is above zero and may take it below (so one message larger than the bucket,
    a whole file to ClassifyClip, still passes, and the average rate still holds); a packet
    needs one whole packet token. Called on the event loop only.
    """

    MAX_IDLE_BUCKETS = 10000

    def __init__(
        self, kbps: float = 0, packets: float = 0, burst_seconds: float = 10.0, clock=None
    ):
        self.bits_per_s = kbps * 1000.0
        self.packets_per_s = float(packets)
        self.burst = burst_seconds
        self.clock = clock or time.monotonic
        self.buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.bits_per_s > 0 or self.packets_per_s > 0

    def describe(self) -> str:
        parts = []
        if self.bits_per_s:
            parts.append(f"{self.bits_per_s / 1000:g} kbit/s")
        if self.packets_per_s:
            parts.append(f"{self.packets_per_s:g} packets/s")
        return " and ".join(parts) + f" (bursts of {self.burst:g} s)"

    def admit(self, device: str, payload_bytes: int) -> bool:
        now = self.clock()
        bucket = self.buckets.get(device)
        if bucket is None:
            if len(self.buckets) >= self.MAX_IDLE_BUCKETS:
                self._forget_full(now)
            bucket = self.buckets[device] = _Bucket(
                self.bits_per_s * self.burst, self.packets_per_s * self.burst, now
            )
        elapsed, bucket.updated = now - bucket.updated, now
        bucket.bits = min(self.bits_per_s * self.burst, bucket.bits + elapsed * self.bits_per_s)
        bucket.packets = min(
            self.packets_per_s * self.burst, bucket.packets + elapsed * self.packets_per_s
        )
        if self.bits_per_s and bucket.bits <= 0:
            return False
        if self.packets_per_s and bucket.packets < 1:
            return False
        bucket.bits -= 8 * payload_bytes
        bucket.packets -= 1
        return True

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: forgetting them changes nothing."""
        for device, b in list(self.buckets.items()):
            idle = now - b.updated
            if (
                not self.bits_per_s
                or b.bits + idle * self.bits_per_s >= self.bits_per_s * self.burst
            ) and (
                not self.packets_per_s
                or b.packets + idle * self.packets_per_s >= self.packets_per_s * self.burst
            ):
                del self.buckets[device]


# -- the checks --------------------------------------------------------------------------------


def _metadata(context: grpc.aio.ServicerContext, key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        k, v = item
        if k == key:
            return v if isinstance(v, str) else None
    return None


def bearer_token(context: grpc.aio.ServicerContext) -> str | None:
    value = _metadata(context, "authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def peer_common_name(context: grpc.aio.ServicerContext) -> str | None:
    """The verified client certificate's CN (gRPC checked the chain during the handshake)."""
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode(errors="replace") if names else None


def forwarded_common_name(context: grpc.aio.ServicerContext) -> str | None:
    """The CN in a trusted proxy's x-forwarded-client-cert header (its one element's Subject)."""
    value = _metadata(context, FORWARDED_CERT)
    if not value or "," in _SUBJECT.sub("", value):  # more than one element: a chain of proxies
        return None
    subject = _SUBJECT.search(value)
    cn = _CN.search(subject.group(1).replace('\\"', '"')) if subject else None
    return cn.group(1).strip() if cn else None


class DeviceAccess(AccessControl):
    """Only known devices: see the module docstring.

    ``client_certs``: the port requires client certificates, whose CN is the device id.
    ``trusted_proxies``: certificate CNs of proxies (Envoy) that terminate the device's TLS and
    forward its certificate's subject in x-forwarded-client-cert; only they may speak for
    another certificate. ``tokens``: require a bearer token from this file.
    """

    def __init__(
        self,
        tokens: TokenFile | None = None,
        client_certs: bool = False,
        trusted_proxies: frozenset[str] = frozenset(),
        limiter: RateLimiter | None = None,
        metrics=None,
    ):
        self.tokens, self.client_certs = tokens, client_certs
        self.trusted_proxies = trusted_proxies
        self.limiter = limiter if limiter is not None and limiter.enabled else None
        self.metrics = metrics
        self._log_limit = LogLimiter(burst=10, interval=60.0)

    def _deny(self, code: grpc.StatusCode, reason: str, message: str, peer: str = "") -> None:
        if self.metrics is not None:
            self.metrics.access_denied.labels(reason).inc()
        if self._log_limit.allow(f"access denied ({reason})", log):
            where = f" to {shown(peer)}" if peer else ""
            log.warning("access denied (%s)%s: %s", reason, where, message)
        raise StreamError(code, message)

    def authenticate(self, context: grpc.aio.ServicerContext) -> str | None:
        unauthenticated = grpc.StatusCode.UNAUTHENTICATED
        peer = context.peer() or ""
        cert_device = None
        if self.client_certs:
            cert_device = peer_common_name(context)
            if cert_device is None:
                self._deny(unauthenticated, "no_certificate", "no client certificate", peer)
            if cert_device in self.trusted_proxies:
                proxy, cert_device = cert_device, forwarded_common_name(context)
                if cert_device is None:
                    self._deny(
                        unauthenticated,
                        "no_certificate",
                        f"proxy {shown(proxy)} forwarded no client certificate subject",
                        peer,
                    )
        token_device = None
        if self.tokens is not None:
            token = bearer_token(context)
            if token is None:
                self._deny(
                    unauthenticated,
                    "no_token",
                    "missing bearer token: send the metadata 'authorization: Bearer <token>'",
                    peer,
                )
            token_device = self.tokens.device_of(token)
            if token_device is None:
                self._deny(unauthenticated, "bad_token", "unknown or revoked token", peer)
        if cert_device is not None and token_device is not None and cert_device != token_device:
            self._deny(
                grpc.StatusCode.PERMISSION_DENIED,
                "mismatch",
                f"the client certificate is device {shown(cert_device)} but the token belongs to "
                "another device",
                peer,
            )
        return cert_device or token_device

    def authorize(self, identity: str | None, device_id: str) -> None:
        if identity is not None and device_id != identity:
            self._deny(
                grpc.StatusCode.PERMISSION_DENIED,
                "wrong_device",
                f"authenticated as device {shown(identity)}, which may not stream as "
                f"{shown(device_id)}",
            )

    def admit(self, device_id: str, payload_bytes: int) -> None:
        if self.limiter is not None and not self.limiter.admit(device_id, payload_bytes):
            self._deny(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "rate_limited",
                f"device {shown(device_id)} is over its rate limit of {self.limiter.describe()}; "
                "slow down and retry later",
            )
