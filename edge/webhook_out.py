"""Results as webhooks: each clip summary POSTed as JSON to one or more URLs.

The body is the same JSON object ``--jsonl`` writes and MQTT publishes (``result_id``,
``source``, ``path``, ``fine_label``, ``fine``, ``lossy_probability``...), sent with
``Content-Type: application/json`` and ``Idempotency-Key: <result_id>``, so a receiver can
drop a repeat; with ``--webhook-token-file`` also ``Authorization: Bearer <token>``.

Why a queue and a thread per URL: a receiver that is slow or down must never hold up
classification, nor another receiver. Each URL has a bounded queue (``queue`` results; when
it is full the oldest waiting result is dropped, counted and warned about, so a receiver that
comes back gets the most recent ones). A POST that fails on the network, times out, or gets
408, 425, 429 or a 5xx is retried with exponential backoff and jitter (0.5 s doubling to 30 s,
or the receiver's Retry-After when it says less than a minute) until it is accepted or pushed
out of the queue; any other answer outside 2xx (a 400, a 404: retrying cannot help) drops that
result with a warning. At exit the queues get ``drain_seconds`` to empty.
"""

from __future__ import annotations

import json
import random
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from edge.network_sources import redact
from edge.security import CredentialsError, read_token

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
BACKOFF_START, BACKOFF_FACTOR, BACKOFF_CAP = 0.5, 2.0, 30.0
RETRY_AFTER_CAP = 60.0
EventCallback = Callable[[str], None]


class _Target:
    """One URL: its queue, its worker thread, its counts."""

    def __init__(self, url: str, owner: WebhookSender) -> None:
        self.url = url
        self.shown = redact(url)
        self.owner = owner
        self.queue: deque[dict[str, Any]] = deque()
        self.cond = threading.Condition()
        self.delivered = 0
        self.dropped = 0  # pushed out of a full queue
        self.refused = 0  # answered with a status retrying cannot fix
        self.retries = 0
        self.busy = False  # a POST of the queue's head is under way
        self.closing = False
        self.thread = threading.Thread(target=self._run, name="asc-edge webhook", daemon=True)

    def put(self, record: dict[str, Any]) -> None:
        with self.cond:
            self.queue.append(record)
            if len(self.queue) > self.owner.queue_size:
                index = 1 if self.busy else 0  # the head may be being posted: keep it
                old = self.queue[index]
                del self.queue[index]
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 100 == 0:
                    self.owner.event(
                        f"{self.shown}: queue full ({self.owner.queue_size}); dropped "
                        f"{self.dropped} result(s) so far (latest {old.get('result_id', '?')})"
                    )
            self.cond.notify_all()

    def idle(self) -> bool:
        with self.cond:
            return not self.queue and not self.busy

    def _run(self) -> None:
        failures = 0
        while True:
            with self.cond:
                while not self.queue and not self.closing:
                    self.cond.wait()
                if not self.queue:
                    return
                record = self.queue[0]
                self.busy = True
            outcome, wait, reason = self.owner.post(self.url, record)
            with self.cond:
                self.busy = False
                if outcome != "retry" and self.queue and self.queue[0] is record:
                    self.queue.popleft()
                self.cond.notify_all()
            if outcome == "ok":
                self.delivered += 1
                failures = 0
                continue
            if outcome == "refused":
                self.refused += 1
                self.owner.event(
                    f"{self.shown} refused result {record.get('result_id', '?')}: {reason}; "
                    "not retried"
                )
                continue
            failures += 1
            self.retries += 1
            delay = min(BACKOFF_CAP, BACKOFF_START * BACKOFF_FACTOR ** (failures - 1))
            delay *= random.uniform(0.5, 1.0)
            if wait is not None:
                delay = max(delay, min(wait, RETRY_AFTER_CAP))
            if failures == 1 or failures % 10 == 0:
                self.owner.event(f"{self.shown}: {reason}; retrying in {delay:.1f} s")
            with self.cond:
                deadline = time.monotonic() + delay
                while not self.closing and (left := deadline - time.monotonic()) > 0:
                    self.cond.wait(left)
                if self.closing:
                    return


class WebhookSender:
    """POSTs clip summaries to every URL, each through its own bounded queue and thread."""

    def __init__(
        self,
        urls: Iterable[str],
        *,
        token_file: str | None = None,
        ca: str | None = None,
        timeout: float = 10.0,
        queue_size: int = 1000,
        on_event: EventCallback | None = None,
    ) -> None:
        urls = list(urls)
        for url in urls:
            if urlsplit(url).scheme.lower() not in ("http", "https"):
                raise CredentialsError(f"--webhook {redact(url)}: not an http:// or https:// URL")
        if token_file and not all(urlsplit(u).scheme.lower() == "https" for u in urls):
            raise CredentialsError(
                "--webhook-token-file needs https:// webhooks: a bearer token must not travel "
                "in plaintext"
            )
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.timeout, self.queue_size = timeout, queue_size
        self.on_event = on_event
        self.headers = {"Content-Type": "application/json", "User-Agent": "asc-edge"}
        if token_file:
            token = read_token(token_file, "--webhook-token-file")
            self.headers["Authorization"] = f"Bearer {token}"
        try:
            self.context = ssl.create_default_context(cafile=ca) if ca else None
        except (OSError, ssl.SSLError) as e:
            why = getattr(e, "strerror", None) or e
            raise CredentialsError(f"--webhook-ca {ca}: {why}") from None
        self.targets = [_Target(url, self) for url in urls]

    def event(self, message: str) -> None:
        if self.on_event is not None:
            self.on_event(message)

    def start(self) -> WebhookSender:
        for target in self.targets:
            target.thread.start()
        return self

    def result(self, record: dict[str, Any]) -> None:
        """Queue one clip summary for every URL; returns at once."""
        for target in self.targets:
            target.put(record)

    def post(self, url: str, record: dict[str, Any]) -> tuple[str, float | None, str]:
        """One POST: ("ok" | "retry" | "refused", the receiver's Retry-After, why)."""
        headers = {**self.headers, "Idempotency-Key": str(record.get("result_id", ""))}
        request = urllib.request.Request(
            url, data=json.dumps(record).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as r:
                r.read()
            return "ok", None, ""
        except urllib.error.HTTPError as e:
            reason = f"HTTP {e.code}"
            if e.code in RETRY_STATUS:
                return "retry", _retry_after(e.headers.get("Retry-After")), reason
            return "refused", None, reason
        except (urllib.error.URLError, OSError, ValueError) as e:
            why = getattr(e, "reason", None) or e
            return "retry", None, f"cannot deliver ({why})"

    @property
    def delivered(self) -> int:
        return sum(t.delivered for t in self.targets)

    @property
    def dropped(self) -> int:
        return sum(t.dropped + t.refused for t in self.targets)

    def close(self, drain_seconds: float = 10.0) -> int:
        """Give the queues ``drain_seconds`` to empty, then stop; returns results undelivered."""
        deadline = time.monotonic() + drain_seconds
        while time.monotonic() < deadline and not all(t.idle() for t in self.targets):
            time.sleep(0.05)
        left = 0
        for target in self.targets:
            with target.cond:
                target.closing = True
                left += len(target.queue)
                target.cond.notify_all()
        for target in self.targets:
            target.thread.join(timeout=self.timeout + 1)
        if left:
            self.event(f"{left} result(s) never reached their webhook")
        return left


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is ignored: backoff applies)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
