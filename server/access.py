"""Who may use the server: the hook every call passes through.

``AccessControl`` lets everyone in; the security layer replaces it with a subclass that checks
credentials (TLS client certificates, bearer tokens), binds each device to its own id and
limits its rate. The service calls these three methods and nothing else about access.
"""

from __future__ import annotations

import grpc


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
